#!/usr/bin/env bash
# Runs every test of Jet, in this order:
#   1. Rust unit and integration tests (cargo test --release --workspace),
#   2. the release `jet` binary,
#   3. real Kafka clients (kcat, confluent-kafka, kafka-python, aiokafka) against that binary,
#   4. the quick benchmark suite (when the jet-bench suite command exists).
# One release profile serves tests and binary, so RocksDB and librdkafka compile once.
# Prerequisites: see README.md (clang, libclang-dev, kcat; pip install -r compat-tests/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jet-target}"

step() { printf '\n=== %s  [%s]\n' "$*" "$(date +%H:%M:%S)"; }

step "cargo test --release --workspace"
cargo test --release --workspace

step "cargo build --release -p jet"
cargo build --release -p jet
export JET_BIN="$CARGO_TARGET_DIR/release/jet"

step "compat tests: real clients against $JET_BIN"
# pytest exits 5 when it collects no test; under `set -e` that fails the run, as it should.
python3 -m pytest -v compat-tests

# --- bench quick suite (owned by the bench engineer) ---------------------------------------------
# Runs when the jet-bench binary has a `suite` command; it fails the run on any count or order error.
if cargo run --release -q -p jet-bench -- suite --help >/dev/null 2>&1; then
    step "bench quick suite"
    cargo run --release -p jet-bench -- suite --quick
fi
# --- end bench quick suite -----------------------------------------------------------------------

step "all tests passed"
