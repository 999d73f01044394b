# switchyard: the two commands a user needs are `make demo` and `make test`.
# Both install what is missing (apt-get) and build first. Run as root: they create
# network namespaces and TAP devices (and remove them again).

CARGO ?= cargo

.PHONY: all build build-debug deps demo test lint unit bench clean

all: build

deps:
	@scripts/deps.sh

build:
	$(CARGO) build --release --workspace --bins

build-debug:
	$(CARGO) build --workspace --bins

demo: deps build
	@scripts/demo.sh

# Every test: unit tests, the simulator, and the root integration tests in namespaces
# (marked #[ignore] so a plain `cargo test` without root skips them), then a smoke run of
# the benchmark harness (one short scenario; it asserts that the harness works, no speed).
test: deps lint build-debug
	$(CARGO) test --workspace -- --include-ignored
	$(CARGO) run -p bench -- --smoke --bin-dir target/debug

# Only the tests that need no root.
unit:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every comparison scenario (switchyard, bridge, veth, OVS when installed, overlay, kernel
# VXLAN), the 100-namespace scale test and 16 pairs at once on switchd and on a bridge;
# bench itself installs sockperf and the chart's font when missing. Three interleaved
# rounds: the table shows medians, the ratios their median and range. Results:
# bench/results/<timestamp>.json and .png.
bench: deps build
	$(CARGO) run --release -p bench -- --rounds 3 all scale pairs

clean:
	$(CARGO) clean
