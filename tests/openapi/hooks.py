"""Loaded by schemathesis (SCHEMATHESIS_HOOKS, set by services/api/tests/api/schemathesis.rs).

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state, so two
threads converting ASTs at once (schemathesis runs `--workers 2`; hypothesis parses lambdas'
source to describe strategies) can trip `SystemError: AST constructor recursion depth mismatch`
(python/cpython#106905), which schemathesis reports as a failed operation. The API is not
involved; serialising `ast.parse` removes the race.
"""

import ast
import threading

_parse = ast.parse
_parsing = threading.Lock()


def _serialised_parse(*args, **kwargs):
    with _parsing:
        return _parse(*args, **kwargs)


ast.parse = _serialised_parse
