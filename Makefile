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

# Installing (docs/operations.md#install) copies what `make build` built, from BUILD_DIR,
# into $(DESTDIR)$(PREFIX). It builds only when a binary is missing, so that
# `make build && sudo make install` never compiles as root; `BUILD_DIR=target/debug` takes
# the debug build instead (the install test does, as `make test` builds no release). The
# daemons go in sbin with man pages in section 8, the tools in bin with section 1; the
# CNI plugin also where runtimes look for plugins, outside PREFIX as they expect. Man
# pages and completions come from each binary's own clap definitions (a hidden
# `--generate-man DIR`, which every binary has; `swctl completion SHELL`), written to a scratch directory first
# so that their modes do not depend on the caller's umask.
PREFIX ?= /usr/local
DESTDIR ?=
BUILD_DIR ?= target/release
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
CNI_BIN_DIR ?= /opt/cni/bin
BASH_COMPLETION_DIR ?= $(PREFIX)/share/bash-completion/completions
ZSH_COMPLETION_DIR ?= $(PREFIX)/share/zsh/site-functions
FISH_COMPLETION_DIR ?= $(PREFIX)/share/fish/vendor_completions.d
DAEMONS := switchd switchyard-docker
TOOLS := swctl nsutil switchyard-cni
# The binaries with subcommands, and so man pages per subcommand and completions.
COMMANDS := swctl nsutil
UNITS := switchd.service switchyard-docker.service
# A Debian package (`make deb`): dpkg-deb over a `make install PREFIX=/usr` tree
# (scripts/deb.sh), into DEB_DIR.
DEB_DIR ?= target/debian

.PHONY: install uninstall deb

install:
	@missing=; for b in $(DAEMONS) $(TOOLS); do [ -x $(BUILD_DIR)/$$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$(BUILD_DIR)" = target/release ]; then $(MAKE) build; \
	  else echo "install: $(BUILD_DIR) lacks$$missing; build them first" >&2; exit 1; fi; \
	fi
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(CNI_BIN_DIR) \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(BASH_COMPLETION_DIR) $(DESTDIR)$(ZSH_COMPLETION_DIR) $(DESTDIR)$(FISH_COMPLETION_DIR)
	install -m 755 $(addprefix $(BUILD_DIR)/,$(TOOLS)) $(DESTDIR)$(BINDIR)/
	install -m 755 $(addprefix $(BUILD_DIR)/,$(DAEMONS)) $(DESTDIR)$(SBINDIR)/
	install -m 755 $(BUILD_DIR)/switchyard-cni $(DESTDIR)$(CNI_BIN_DIR)/
	@set -e; scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	mkdir "$$scratch/man"; \
	for b in $(DAEMONS) $(TOOLS); do $(BUILD_DIR)/$$b --generate-man "$$scratch/man"; done; \
	for b in $(COMMANDS); do \
	  $(BUILD_DIR)/$$b completion bash >"$$scratch/$$b.bash"; \
	  $(BUILD_DIR)/$$b completion zsh >"$$scratch/_$$b"; \
	  $(BUILD_DIR)/$$b completion fish >"$$scratch/$$b.fish"; \
	  install -m 644 "$$scratch/$$b.bash" $(DESTDIR)$(BASH_COMPLETION_DIR)/$$b; \
	  install -m 644 "$$scratch/_$$b" $(DESTDIR)$(ZSH_COMPLETION_DIR)/_$$b; \
	  install -m 644 "$$scratch/$$b.fish" $(DESTDIR)$(FISH_COMPLETION_DIR)/$$b.fish; \
	done; \
	install -m 644 "$$scratch"/man/*.1 $(DESTDIR)$(MANDIR)/man1/; \
	install -m 644 "$$scratch"/man/*.8 $(DESTDIR)$(MANDIR)/man8/; \
	for u in $(UNITS); do \
	  sed 's|^ExecStart=/usr/local/sbin/|ExecStart=$(SBINDIR)/|' dist/$$u >"$$scratch/$$u"; \
	  install -m 644 "$$scratch/$$u" $(DESTDIR)$(UNITDIR)/$$u; \
	done; \
	echo "install: installed under $(DESTDIR)$(PREFIX) (and $(DESTDIR)$(CNI_BIN_DIR)/switchyard-cni)"

# Removes what `make install` put there (same PREFIX and DESTDIR); the state directory
# and /etc/default files stay.
uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(TOOLS)) $(addprefix $(DESTDIR)$(SBINDIR)/,$(DAEMONS)) \
	  $(DESTDIR)$(CNI_BIN_DIR)/switchyard-cni $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS)) \
	  $(foreach d,$(DAEMONS),$(DESTDIR)$(MANDIR)/man8/$(d).8) \
	  $(foreach t,$(TOOLS),$(DESTDIR)$(MANDIR)/man1/$(t).1) \
	  $(foreach c,$(COMMANDS),$(DESTDIR)$(MANDIR)/man1/$(c)-*.1 \
	    $(DESTDIR)$(BASH_COMPLETION_DIR)/$(c) $(DESTDIR)$(ZSH_COMPLETION_DIR)/_$(c) \
	    $(DESTDIR)$(FISH_COMPLETION_DIR)/$(c).fish)

deb:
	@BUILD_DIR=$(BUILD_DIR) DEB_DIR=$(DEB_DIR) MAKE=$(MAKE) scripts/deb.sh

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
FUZZ_TARGETS := wire_views datapath vxlan router control_json cni_config state_file dns cluster inspect
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
