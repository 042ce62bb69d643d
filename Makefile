# ppodok — the two commands a newcomer needs: `make run` and `make test`.
CARGO ?= cargo

.PHONY: run test node-deps bench fmt lint check clean-test-dbs

## Start the API on embedded defaults (SQLite file in ./data, in-process stores, dev login on).
run:
	$(CARGO) run -p ppodok-api

## Unit tests plus HTTP-level scenarios on SQLite and on MariaDB + Redis (127.0.0.1:3306 / :6379).
test:
	$(CARGO) test --workspace --no-fail-fast

## Benchmarks (release build): calendar cold start (SQLite; MariaDB + Redis) and STOMP fan-out.
bench:
	$(CARGO) bench -p ppodok-api --bench calendar_cold_start
	$(CARGO) bench -p ppodok-api --bench stomp_fanout

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Drop databases left behind by interrupted test runs.
clean-test-dbs:
	mariadb -uroot -h127.0.0.1 -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'ppodok\_t\_%'" \
	  | while read db; do mariadb -uroot -h127.0.0.1 -e "DROP DATABASE \`$$db\`"; done
