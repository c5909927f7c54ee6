# Parley developer entry points. `make test` is what CI runs (through .ci/run).
CARGO  ?= cargo
CONFIG ?=

.PHONY: all run models doctor test setup fmt lint bench

all: test

# The VAD model on first use (pinned, checksummed; see scripts/run.sh when offline), the
# release build, then serve on the defaults (or on CONFIG=path/to/parley.toml).
run:
	CARGO=$(CARGO) ./scripts/run.sh $(if $(CONFIG),--config $(CONFIG))

# ONNX Runtime and the Silero VAD model into .cache/models (what `parley serve` loads).
models:
	./scripts/fetch_models.sh --runtime

# Every dependency the configuration needs, one verdict a line (exit 1 when one is missing).
doctor:
	$(CARGO) build --release --bin parley
	./target/release/parley doctor $(if $(CONFIG),--config $(CONFIG))

# Install missing system packages and fixtures, then run every test of the workspace: doc
# tests, then unit, integration (the real binary with sipp) and bench targets, with
# --no-fail-fast so one failure does not hide the others. scripts/test.sh ends with the total
# over all test binaries: "tests: N passed, M failed".
test: setup
	CARGO=$(CARGO) ./scripts/test.sh

setup:
	./scripts/setup.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every criterion bench of the workspace, release build: media/benches/ (the media engine's
# per-frame work) and benches/ (SIP, SDP, transactions, billing leases, one agent turn end to
# end). A plain `cargo bench` selects only the root package; `--bench '*'` keeps to the bench
# targets (without it --workspace also builds every unit-test harness in release).
# Results and how to read them: docs/benchmarks.md.
bench:
	$(CARGO) bench --workspace --bench '*'

# PESQ of the receive path under 0-10 % loss and 30 ms jitter (zero-fill, repeat, Parley's
# concealment): on the sample speech it rewrites its section of docs/benchmarks.md; with
# WAV=path/to/speech.wav it scores that file. Both write target/audio-quality.json.
.PHONY: audio-quality
audio-quality:
	python3 scripts/audio_quality.py $(if $(WAV),--wav $(WAV))
