# Parley developer entry points. `make test` is what CI runs (through .ci/run).
CARGO  ?= cargo
CONFIG ?=

.PHONY: all run test setup fmt lint bench

all: test

# Release build, then serve on the defaults (or on CONFIG=path/to/parley.toml).
run:
	$(CARGO) build --release
	./target/release/parley serve $(if $(CONFIG),--config $(CONFIG))

# Install missing system packages and fixtures, then run every test of the workspace (unit,
# integration with the real binary and sipp, benches compiled in test mode), then the doc
# tests (--all-targets does not run them). --no-fail-fast: every test binary runs, so one
# failure does not hide the others.
test: setup
	$(CARGO) test --workspace --all-targets --no-fail-fast
	$(CARGO) test --workspace --doc

setup:
	./scripts/setup.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) bench
