# ppodok — the two commands a newcomer needs: `make run` and `make test`.
CARGO ?= cargo

.PHONY: run run-api run-sfu test node-deps sfu-browser-deps bench fmt lint check clean-test-dbs

## Start the whole system on embedded defaults: the API (:8080, SQLite file in ./data, in-process
## stores, dev login on) and the SFU (:7880), whose webhooks credit attendance on the API.
## Ctrl-C stops both.
run:
	$(CARGO) build -p ppodok-api -p ppodok-sfu
	PPODOK_SFU__WEBHOOK__URLS=$${PPODOK_SFU__WEBHOOK__URLS-http://127.0.0.1:8080/api/v1/internal/sfu/webhook} ./target/debug/ppodok-sfu & sfu=$$!; trap 'kill $$sfu 2>/dev/null; wait $$sfu' EXIT INT TERM; ./target/debug/ppodok-api

## The API alone.
run-api:
	$(CARGO) run -p ppodok-api

## Start the SFU (LiveKit-compatible signalling on :7880, dev API key/secret from its defaults).
run-sfu:
	$(CARGO) run -p ppodok-sfu

## The SFU's browser tests drive the official livekit-client with puppeteer-core in Debian's
## headless Chromium (apt-get install chromium-headless-shell); npm never downloads a browser.
sfu-browser-deps: tests/sfu-browser/node_modules/.package-lock.json
tests/sfu-browser/node_modules/.package-lock.json: tests/sfu-browser/package.json tests/sfu-browser/package-lock.json
	npm ci --prefix tests/sfu-browser --no-audit --no-fund

## Unit tests, HTTP/STOMP scenarios on SQLite and on MariaDB + Redis (127.0.0.1:3306 / :6379),
## and the SFU against livekit-client in headless Chromium.
## The SFU's tests run one at a time: each drives two or three Chromium pages encoding video, and
## two such tests at once on a 2-core machine starve the encoders (frame freezes that are not the SFU's).
## The deploy kit's checks run last: they start the API and SFU binaries the two steps before
## built (promtool, docker-compose from Debian; no Docker engine needed).
test: node-deps sfu-browser-deps
	$(CARGO) test --workspace --no-fail-fast --exclude ppodok-sfu --exclude ppodok-deploy-kit
	$(CARGO) test -p ppodok-sfu --no-fail-fast -- --test-threads=1
	$(CARGO) test -p ppodok-deploy-kit --no-fail-fast

## The STOMP client the API tests drive (@stomp/stompjs, pinned by package-lock.json).
node-deps: tests/stomp/node_modules/.package-lock.json

tests/stomp/node_modules/.package-lock.json: tests/stomp/package-lock.json
	npm ci --prefix tests/stomp --no-audit --no-fund

## Benchmarks (release build): calendar cold start (SQLite; MariaDB + Redis) and STOMP fan-out.
bench:
	$(CARGO) bench -p ppodok-api --bench calendar_cold_start
	$(CARGO) bench -p ppodok-api --bench stomp_fanout
	$(CARGO) bench -p ppodok-sfu --bench sfu_load

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Drop databases left behind by interrupted test runs.
clean-test-dbs:
	mariadb -uroot -h127.0.0.1 -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'ppodok\_t\_%'" \
	  | while read db; do mariadb -uroot -h127.0.0.1 -e "DROP DATABASE \`$$db\`"; done
