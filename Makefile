# switchyard: the two commands a user needs are `make demo` and `make test`.
# Both install what is missing (apt-get) and build first. Run as root: they create
# network namespaces and TAP devices (and remove them again).

CARGO ?= cargo

.PHONY: all build build-debug deps demo demo-docker test lint unit bench clean fuzz fuzz-smoke fuzz-deps

all: build

deps:
	@scripts/deps.sh

build:
	$(CARGO) build --release --workspace --bins

build-debug:
	$(CARGO) build --workspace --bins

demo: deps build
	@scripts/demo.sh

# switchyard under a real Docker engine: dockerd, switchd and switchyard-docker in
# namespaces of their own, a Docker network, a published port, names, an nsutil namespace
# on the same network (docs/docker.md). Removes it all again.
demo-docker: deps build
	@scripts/demo-docker.sh

# Every test: unit tests, the simulator, and the root integration tests in namespaces
# (marked #[ignore] so a plain `cargo test` without root skips them), then a smoke run of
# the benchmark harness (one short scenario; it asserts that the harness works, no speed).
test: deps lint build-debug
	$(CARGO) test --workspace -- --include-ignored
	$(CARGO) run -p bench -- --smoke --bin-dir target/debug
	$(MAKE) fuzz-smoke

# Only the tests that need no root.
unit:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Fuzzing (switch/fuzz, docs/security.md#fuzzing): cargo-fuzz on the stable toolchain
# (RUSTC_BOOTSTRAP=1 lets it use the sanitizer flags), one build for every target, in
# switch/fuzz/target. `make fuzz` runs each target FUZZ_SECONDS; what it finds new is
# added to switch/fuzz/corpus/TARGET (not kept in git), crashes go to
# switch/fuzz/artifacts/TARGET. `make fuzz-smoke` (the end of `make test`) runs each a few
# seconds from a scratch copy of its committed seeds (crashes found included), so the
# targets keep building and the bugs they found stay fixed.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 3
FUZZ_TARGETS := wire_views datapath vxlan router control_json cni_config state_file dns cluster
CARGO_FUZZ_VERSION := 0.13.2
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
FUZZ_DIR := switch/fuzz
FUZZ_FLAGS := -timeout=10 -print_final_stats=1

fuzz-deps:
	@command -v c++ >/dev/null || { echo "fuzz: libFuzzer needs a C++ compiler (apt-get install g++)" >&2; exit 1; }
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION)
	$(FUZZ) build --fuzz-dir $(FUZZ_DIR)

fuzz: fuzz-deps
	@failed=; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ) run --fuzz-dir $(FUZZ_DIR) $$t -- -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) || failed="$$failed $$t"; \
	done; \
	[ -z "$$failed" ] || { echo "fuzz: crashed:$$failed (inputs in $(FUZZ_DIR)/artifacts/)" >&2; exit 1; }

fuzz-smoke: fuzz-deps
	@for t in $(FUZZ_TARGETS); do \
	  dir=$(FUZZ_DIR)/target/smoke/$$t; rm -rf $$dir && mkdir -p $$dir; \
	  cp $(FUZZ_DIR)/corpus/$$t/seed-* $$dir/; \
	  if $(FUZZ) run --fuzz-dir $(FUZZ_DIR) $$t $$dir \
	      -- -max_total_time=$(FUZZ_SMOKE_SECONDS) $(FUZZ_FLAGS) >$$dir.log 2>&1; then \
	    echo "fuzz-smoke: $$t: $$(grep -E '^Done' $$dir.log)"; \
	  else \
	    tail -n 60 $$dir.log; echo "fuzz-smoke: $$t failed (log: $$dir.log)" >&2; exit 1; \
	  fi; \
	done

# Every comparison scenario (switchyard, bridge, veth, OVS when installed, overlay, kernel
# VXLAN), the 100-namespace scale test and 16 pairs at once on switchd and on a bridge;
# bench itself installs sockperf and the chart's font when missing. Three interleaved
# rounds: the table shows medians, the ratios their median and range. Results:
# bench/results/<timestamp>.json and .png.
bench: deps build
	$(CARGO) run --release -p bench -- --rounds 3 all scale pairs

clean:
	$(CARGO) clean
