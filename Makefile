# ppodok — the two commands a newcomer needs: `make run` and `make test`.
CARGO ?= cargo

.PHONY: run run-api run-sfu test test-web web-e2e web web-test-deps node-deps sfu-browser-deps openapi-deps bench fmt lint check clean-test-dbs

## Start the whole system on embedded defaults: the API (:8080, SQLite file in ./data, in-process
## stores, dev login on, the web client at http://127.0.0.1:8080/) and the SFU (:7880), whose
## webhooks credit attendance on the API. Ctrl-C stops both.
run: web
	$(CARGO) build -p ppodok-api -p ppodok-sfu
	PPODOK_SFU__WEBHOOK__URLS=$${PPODOK_SFU__WEBHOOK__URLS-http://127.0.0.1:8080/api/v1/internal/sfu/webhook} ./target/debug/ppodok-sfu & sfu=$$!; trap 'kill $$sfu 2>/dev/null; wait $$sfu' EXIT INT TERM; ./target/debug/ppodok-api

## The API alone.
run-api:
	$(CARGO) run -p ppodok-api

## Start the SFU (LiveKit-compatible signalling on :7880, dev API key/secret from its defaults).
run-sfu:
	$(CARGO) run -p ppodok-sfu

## The web client (web/): `npm ci` when the lock file changes, a production build into web/dist
## (served by the API at /) when a source changes.
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json
web: web/dist/index.html
web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && npm run build
web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	npm ci --prefix web --no-audit --no-fund

## The web client's acceptance tests: puppeteer-core + axe-core (tests/web), Debian's Chromium.
web-test-deps: tests/web/node_modules/.package-lock.json
tests/web/node_modules/.package-lock.json: tests/web/package.json tests/web/package-lock.json
	PUPPETEER_SKIP_DOWNLOAD=1 npm ci --prefix tests/web --no-audit --no-fund

## Two members in two browser contexts drive the built client against the real ppodok-api and
## ppodok-sfu binaries (calendar, study room, token refresh); screenshots of every screen at
## desktop and phone width land in tests/web/artifacts/ with axe-core's findings (axe.json).
test-web: web web-test-deps
	$(CARGO) build -p ppodok-api -p ppodok-sfu
	$(MAKE) --no-print-directory web-e2e

## The browser run alone, on the binaries in target/debug. `make test` calls it after its cargo
## test steps, which built both binaries (cargo builds a package's binaries for its integration
## tests); a `cargo build` there would rebuild the dependencies without dev-dependency features.
web-e2e:
	node --test --test-concurrency=1 tests/web/e2e.test.mjs

## The SFU's browser tests drive the official livekit-client with puppeteer-core in Debian's
## headless Chromium (apt-get install chromium-headless-shell); npm never downloads a browser.
sfu-browser-deps: tests/sfu-browser/node_modules/.package-lock.json
tests/sfu-browser/node_modules/.package-lock.json: tests/sfu-browser/package.json tests/sfu-browser/package-lock.json
	npm ci --prefix tests/sfu-browser --no-audit --no-fund

## Unit tests, HTTP/STOMP scenarios on SQLite and on MariaDB + Redis (127.0.0.1:3306 / :6379)
## (STOMP also with @stomp/stompjs inside headless Chromium), schemathesis against the binary's
## OpenAPI document, the SFU against livekit-client in headless Chromium, the old client's video
## flow through nginx rendered from deploy/routes.toml, and the scale-out topology (2 API replicas
## and 2 SFU nodes behind that nginx, one node killed).
## The SFU's tests run one at a time: each drives two or three Chromium pages encoding video, and
## two such tests at once on a 2-core machine starve the encoders (frame freezes that are not the SFU's).
## The deploy kit's checks run next: they start the API and SFU binaries the two steps before
## built (promtool, docker-compose from Debian; no Docker engine needed). The web client's
## browser run comes last, on the same binaries.
test: node-deps sfu-browser-deps openapi-deps web web-test-deps
	$(CARGO) test --workspace --no-fail-fast --exclude ppodok-sfu --exclude ppodok-deploy-kit
	$(CARGO) test -p ppodok-sfu --no-fail-fast -- --test-threads=1
	$(CARGO) test -p ppodok-deploy-kit --no-fail-fast
	$(MAKE) --no-print-directory web-e2e

## The STOMP client the API tests drive (@stomp/stompjs, pinned by package-lock.json).
node-deps: tests/stomp/node_modules/.package-lock.json

tests/stomp/node_modules/.package-lock.json: tests/stomp/package-lock.json
	npm ci --prefix tests/stomp --no-audit --no-fund

## schemathesis for the OpenAPI test (services/api/tests/api/schemathesis.rs): PyPI, every
## package pinned in tests/openapi/requirements.txt, in a venv (python3 -m venv).
openapi-deps: tests/openapi/.venv/.installed

tests/openapi/.venv/.installed: tests/openapi/requirements.txt
	python3 -m venv tests/openapi/.venv
	tests/openapi/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/openapi/requirements.txt
	touch $@

## Benchmarks (release build): calendar cold start (SQLite; MariaDB + Redis), the authenticated
## read path against /health (wrk from Debian), STOMP fan-out, and the SFU against Janus VideoRoom
## (Debian's `janus`, skipped with a message when it is not installed) in both room shapes.
bench:
	$(CARGO) bench -p ppodok-api --bench calendar_cold_start
	$(CARGO) bench -p ppodok-api --bench api_hot_path
	$(CARGO) bench -p ppodok-api --bench stomp_fanout
	$(CARGO) bench -p ppodok-sfu --bench sfu_load
	SFU_LOAD_ROOMS=8 SFU_LOAD_PUBLISHERS=4 SFU_LOAD_SUBSCRIBERS=16 $(CARGO) bench -p ppodok-sfu --bench sfu_load

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Drop databases left behind by interrupted test runs.
clean-test-dbs:
	mariadb -uroot -h127.0.0.1 -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'ppodok\_t\_%'" \
	  | while read db; do mariadb -uroot -h127.0.0.1 -e "DROP DATABASE \`$$db\`"; done
