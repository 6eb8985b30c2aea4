# The two commands of the README. Both work on a fresh machine: they install what they need.
SHELL := /bin/bash
CARGO ?= cargo
DEV_DIR := .imgate/dev

.PHONY: demo test deps build lint clean sdk-routes bench fuzz

## deps: toolchain pieces the build and tests need (idempotent).
deps:
	@command -v cargo >/dev/null || { echo "cargo is required (rustup.rs)"; exit 1; }
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@# Go's encoding/json is the oracle of the compat surface's differential test (OpenIM is Go).
	@command -v go >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq golang-go >/dev/null; }
	@# Tools we did not write must read the dev admin key (host/tests/dev_command.rs): OpenSSL, Node, Python's cryptography.
	@command -v openssl >/dev/null && command -v node >/dev/null && command -v python3 >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openssl nodejs python3 >/dev/null; }
	@python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install --user --quiet cryptography 2>/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-cryptography >/dev/null; }
	@# The unmodified OpenIM JavaScript SDK runs through imgate (tests/e2e/tests/suite/openim_sdk.rs): Node, npm,
	@# and the packages pinned in tests/sdk-node/package-lock.json (reinstalled when the lock file is newer).
	@command -v node >/dev/null && command -v npm >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; }
	@[ tests/sdk-node/node_modules/.package-lock.json -nt tests/sdk-node/package-lock.json ] || \
	  npm ci --prefix tests/sdk-node --no-audit --no-fund --loglevel=error >/dev/null

	@# The fleet tests start real redis-server processes (tests/e2e/src/redis_server.rs); the isolation test
	@# builds network namespaces with iproute2's `ip` (host/tests/isolation.rs).
	@command -v redis-server >/dev/null && { command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; } || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server iproute2 >/dev/null; }
	@# The clock-step test runs the gateway under libfaketime (host/tests/clock_step.rs, attacks.md E20).
	@[ -f /usr/lib/$$(uname -m)-linux-gnu/faketime/libfaketime.so.1 ] || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq faketime >/dev/null; }

	@# The plugins in other languages (plugins/content-filter-js, plugins/group-join-policy-py) and their toolchains:
	@# componentize-js from the npm registry (pinned by package-lock.json), componentize-py from PyPI (requirements.txt).
	@[ plugins/content-filter-js/node_modules/.package-lock.json -nt plugins/content-filter-js/package-lock.json ] || \
	  npm ci --prefix plugins/content-filter-js --no-audit --no-fund --loglevel=error >/dev/null
	@[ plugins/group-join-policy-py/.venv/bin/componentize-py -nt plugins/group-join-policy-py/requirements.txt ] || { \
	  python3 -m venv plugins/group-join-policy-py/.venv && \
	  plugins/group-join-policy-py/.venv/bin/pip install --quiet -r plugins/group-join-policy-py/requirements.txt; }

build: deps
	$(CARGO) build --locked -p host -p e2e --bins

## demo: runs `imgate dev` (embedded OpenIM emulator + gateway, with the content-filter example plugin)
## and a scripted tour against it.
demo: build
	cd plugins && $(CARGO) build --release --locked --target wasm32-wasip2
	@mkdir -p $(DEV_DIR); rm -f $(DEV_DIR)/env.json
	@echo "starting imgate dev (logs: $(DEV_DIR)/imgate.log)"
	@set -e; \
	./target/debug/imgate dev --dir $(DEV_DIR) --example-plugins plugins/target/wasm32-wasip2/release > $(DEV_DIR)/dev.out 2> $(DEV_DIR)/imgate.log & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid 2>/dev/null || true' EXIT; \
	for i in $$(seq 1 300); do [ -f $(DEV_DIR)/env.json ] && break; kill -0 $$pid 2>/dev/null || { cat $(DEV_DIR)/imgate.log; exit 1; }; sleep 0.1; done; \
	[ -f $(DEV_DIR)/env.json ] || { echo "imgate dev did not become ready"; exit 1; }; \
	echo "env.json:"; cat $(DEV_DIR)/env.json; echo; \
	./target/debug/tour $(DEV_DIR)/env.json

## test: every test of the workspace (unit, emulator, integration, CLI, the Go differential test of the compat
## surface; the e2e suites build the Wasm plugins of plugins/ and tests/hostile-plugins/ for wasm32-wasip2),
## then the example plugins' own unit tests, then `deploy/validate` (the deployment recipes), then `make bench-smoke`.
test: deps
	@# A production imgate links no emulator: the release gateway builds without the `emulator` feature.
	$(CARGO) build --release --locked -p host --no-default-features
	$(CARGO) test --locked --workspace
	$(CARGO) test --locked --manifest-path plugins/Cargo.toml
	@# The deployment recipes (deploy/): schemas, isolation invariants, check-config of their imgate.toml.
	deploy/validate target/debug/imgate
	@# The benchmark harness in its 2-second smoke mode (no timing checked): it cannot rot.
	$(MAKE) bench-smoke

## bench: criterion benchmarks (handshake vs raw X25519, signed-request verification, plugin call fresh vs reused
## instance, the route engine per request without the OpenIM call), then dudect's constant-time check of the
## signed-request MAC compare (host/benches/ct_mac.rs; fails on a leak), then plugin swap times (file written -> new version served; small and > 5 MB plugin, cold and cached),
## then the "nothing lost" soak (tests/e2e/benches/soak.rs: 5 minutes, SOAK_SECONDS to change, of sends through /v1 and /openim
## while OpenIM hangs, restarts, fails and slows down; counts in target/bench/soak.md; fails if a send is lost, doubled or unaudited),
## then imgate-bench (tests/bench): the OpenIM emulator direct, nginx proxy_pass, imgate /openim, imgate /v1 + plugins,
## imgate /openim + plugins, imgate /v1 signed on the in-memory store and on the Redis store (a redis-server it starts),
## interleaved over 3 rounds (about 9 minutes), with the Redis store's req/s ÷ the memory store's and its Redis round
## trips per signed request (imgate_store_round_trips_total over 1000 sequential requests), then the WebSocket relay (10 000 relayed idle
## connections held, clamped to the open-file limit: imgate's memory per connection and the time to open them; a 1003
## send relayed vs direct to the emulator's msg gateway, with and without a plugin, 3 rounds: under a minute;
## `imgate-bench --only ws` runs this part alone), and the instructions per request of the gateway's core paths under
## valgrind; report in target/bench/report.md (+ .json, latency.svg).
bench: deps
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx >/dev/null; }
	@command -v valgrind >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	$(CARGO) build --release --locked -p host -p openim-emu -p imgate-bench
	cd plugins && $(CARGO) build --release --locked --target wasm32-wasip2
	$(CARGO) bench --locked -p host --bench auth --bench plugins --bench engine
	@mkdir -p target/bench
	@# R11: dudect's t-test on the signed-request MAC check (exits 1 if verify looks leaky or the control is not seen).
	set -o pipefail; $(CARGO) bench --locked -p host --bench ct_mac | tee target/bench/ct_mac.txt
	set -o pipefail; $(CARGO) bench --locked -p e2e --bench reload | tee target/bench/reload.txt
	$(CARGO) bench --locked -p e2e --bench languages
	$(CARGO) bench --locked -p e2e --bench soak
	./target/release/imgate-bench --instructions --imgate target/release/imgate --emu target/release/openim-emu \
	  --nginx "$$(command -v nginx || echo /usr/sbin/nginx)" --out target/bench/instructions
	./target/release/imgate-bench --imgate target/release/imgate --emu target/release/openim-emu \
	  --nginx "$$(command -v nginx || echo /usr/sbin/nginx)" --out target/bench \
	  --include "Plugin swap times (cargo bench -p e2e --bench reload)=target/bench/reload.txt" \
	  --include "Instructions per request (valgrind callgrind; imgate-bench --instructions)=target/bench/instructions/instructions.md" \
	  --include "Plugins by language (cargo bench -p e2e --bench languages)=target/bench/languages.md" \
	  --include "Nothing lost: sends with faults injected (cargo bench -p e2e --bench soak)=target/bench/soak.md" \
	  --include "Constant-time MAC check (cargo bench -p host --bench ct_mac)=target/bench/ct_mac.txt"

## bench-smoke: the same harness in a few seconds with debug builds (one round, concurrency 16, 0.15 s per case; the
## WebSocket section with 20 idle connections and 50 sends per case), report in target/bench-smoke/; fails if a case has
## no successful answer or any wrong answer (no timing check).
.PHONY: bench-smoke
bench-smoke: deps
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx >/dev/null; }
	$(CARGO) build --locked -p host -p openim-emu -p imgate-bench
	cd plugins && $(CARGO) build --release --locked --target wasm32-wasip2
	./target/debug/imgate-bench --smoke --imgate target/debug/imgate --emu target/debug/openim-emu \
	  --nginx "$$(command -v nginx || echo /usr/sbin/nginx)" --out target/bench-smoke

## fuzz: every fuzz target of fuzz/ (cargo-fuzz + libFuzzer, nightly; docs/fuzzing.md) for FUZZ_SECONDS each
## (default 60), from the committed seeds (fuzz/seeds/) and the working corpus (fuzz/corpus/, not committed); prints
## execs/s, corpus size and crashes per target and fails on any crash (reproducer in fuzz/artifacts/<target>/).
## Not part of `make test`. Installs the nightly toolchain and cargo-fuzz if they are missing.
FUZZ_SECONDS ?= 60
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --version 0.13.2 --locked
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path plugins/Cargo.toml --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path tests/hostile-plugins/Cargo.toml --target wasm32-wasip2 -- -D warnings
	# The fuzz targets (own workspace and lock), checked on stable: a host API change that breaks
	# them fails here, not only in `make fuzz`.
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --all --check
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf .imgate

## sdk-routes: refresh the list of HTTP routes the @openim/client-sdk npm package calls.
sdk-routes:
	@d=$$(mktemp -d) && cd $$d && npm pack --silent @openim/client-sdk >/dev/null && tar xzf *.tgz && \
	v=$$(node -p "require('./package/package.json').version") && \
	{ echo "# HTTP routes called by the npm package @openim/client-sdk $$v (lib/index.js), one per line."; \
	  echo "# Regenerate: make sdk-routes"; \
	  grep -rhoE "['\"\`]/(user|msg|group|friend|conversation|auth|third|object|jssdk|statistics)/[a-zA-Z_/]+['\"\`]" package/lib/index.js | tr -d "\"'\`" | sort -u; } \
	  > $(CURDIR)/tests/e2e/fixtures/openim_client_sdk_routes.txt
