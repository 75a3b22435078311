#!/usr/bin/env bash
# Runs every test of Jet, in this order:
#   1. Rust unit and integration tests (cargo test --release --workspace),
#   2. the release `jet` binary,
#   3. real Kafka clients (kcat, confluent-kafka, kafka-python, aiokafka) against that binary,
#      including the Docker cluster suite (compat-tests/test_compose_cluster.py: the image built
#      from that binary, deploy/docker-compose.yml's 3 nodes, kill / partition / rolling restart),
#   4. the quick benchmark suite (when the jet-bench suite command exists).
# One release profile and one feature set serve tests and binaries, so every crate compiles once:
# `cargo test --workspace` builds the `jet` and `jet-bench` binaries too (their packages have
# integration tests), and they are used from the target dir as they are. (A later
# `cargo build -p jet` would resolve features for jet alone and compile the workspace a second
# time, which doubles the target dir's size; a CI run once died of a full disk that way.)
# Prerequisites: see README.md (clang, libclang-dev, kcat; pip install -r compat-tests/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jet-target}"

step() { printf '\n=== %s  [%s]\n' "$*" "$(date +%H:%M:%S)"; }

work="$(mktemp -d)"
bench_jet=""
cleanup() {
    if [ -n "$bench_jet" ]; then kill -9 "$bench_jet" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

disk() { df -h "$CARGO_TARGET_DIR" /tmp 2>/dev/null | awk 'NR>1 {print "disk: " $6 " " $4 " free of " $2}' | sort -u; }

step "cargo test --release --workspace"
disk
# pipefail: a failed build or test fails the run, not tee.
cargo test --release --workspace 2>&1 | tee "$work/cargo-test.log"
export JET_BIN="$CARGO_TARGET_DIR/release/jet"
bench_bin="$CARGO_TARGET_DIR/release/jet-bench"
for b in "$JET_BIN" "$bench_bin"; do
    # Built by the step above; stale only if it failed to link, which fails the step.
    [ -x "$b" ] || { echo "test.sh: cargo test did not leave $b"; exit 1; }
done
disk

step "compat tests: real clients against $JET_BIN"
# pytest exits 5 when it collects no test; under `set -e` that fails the run, as it should.
python3 -m pytest -v compat-tests --junitxml "$work/pytest.xml"
disk

# --- bench quick suite (owned by the bench engineer) ---------------------------------------------
# Runs when the jet-bench binary has a `suite` command: a fresh jet on a free port and a temp data
# dir, the quick suite against it (it fails on any count or order error), then a clean stop.
if "$bench_bin" suite --help >/dev/null 2>&1; then
    step "bench quick suite"
    bench_dir="$work/bench"
    mkdir -p "$bench_dir"
    bench_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    "$JET_BIN" --listen "127.0.0.1:$bench_port" --http-listen off --data-dir "$bench_dir/data" \
        >"$bench_dir/jet.log" 2>&1 &
    bench_jet=$!
    for _ in $(seq 1 300); do  # up to 30 s for the port
        if (exec 3<>"/dev/tcp/127.0.0.1/$bench_port") 2>/dev/null; then break; fi
        kill -0 "$bench_jet" 2>/dev/null || { cat "$bench_dir/jet.log"; exit 1; }
        sleep 0.1
    done
    "$bench_bin" suite --quick --brokers "127.0.0.1:$bench_port" \
        --broker-pid "$bench_jet" --out "$bench_dir/out" \
        || { tail -50 "$bench_dir/jet.log"; exit 1; }
    kill -TERM "$bench_jet"
    wait "$bench_jet" || { echo "jet did not exit 0 on SIGTERM after the bench"; exit 1; }
    bench_jet=""
fi
# --- end bench quick suite -----------------------------------------------------------------------

step "all tests passed"
# One plain closing line for whoever reads the end of the log: cargo's and pytest's counts added.
python3 - "$work" <<'PY'
import re, sys, xml.etree.ElementTree as ET
work = sys.argv[1]
log = open(f"{work}/cargo-test.log", errors="replace").read()
results = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", log)
cargo_passed = sum(int(p) for p, _ in results)
cargo_failed = sum(int(f) for _, f in results)
root = ET.parse(f"{work}/pytest.xml").getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
tests, failures, errors, skipped = (
    int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")
)
py_passed = tests - failures - errors - skipped
print(f"cargo: {cargo_passed} passed, {cargo_failed} failed")
print(f"compat: {py_passed} passed, {failures + errors} failed, {skipped} skipped")
print(
    f"total: {cargo_passed + py_passed} passed, {cargo_failed + failures + errors} failed, "
    f"{skipped} skipped"
)
PY
