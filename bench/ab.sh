#!/usr/bin/env bash
# Interleaved A/B of two `khoa` binaries on one scenario: the way to judge a change of a few
# tens of per cent on this VM, whose speed drifts by ±30 % within minutes (README,
# Performance). Each round runs A then B, each on a fresh `khoa demo` data directory (with the
# opaque client bench/run.sh registers), the server pinned to CPU 0 and khoa-bench to CPU 1;
# a drift hits both halves of a round alike, so compare within rounds.
#
#   bench/ab.sh OLD_KHOA NEW_KHOA SCENARIO [ROUNDS]
#   DURATION=5 CONCURRENCY=32 bench/ab.sh /tmp/old/khoa target/release/khoa refresh 3
#
# Build OLD_KHOA from another commit into its own target directory, for instance
#   git worktree add /tmp/old <commit> && CARGO_TARGET_DIR=/tmp/old/target \
#       cargo build --release -p khoa-server --manifest-path /tmp/old/Cargo.toml
# Prints one line per run: round, label, ok/s, p50 and p99 in ms, errors. Needs curl, jq,
# taskset; uses this checkout's release khoa-bench (built if missing).
set -euo pipefail

[ $# -ge 3 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
OLD=$1 NEW=$2 SCENARIO=$3 ROUNDS=${4:-3}
DURATION=${DURATION:-5}
CONCURRENCY=${CONCURRENCY:-32}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for tool in curl jq taskset; do
    command -v "$tool" >/dev/null || { echo "bench/ab.sh: $tool is required" >&2; exit 1; }
done
for khoa in "$OLD" "$NEW"; do
    [ -x "$khoa" ] || { echo "bench/ab.sh: $khoa is not an executable" >&2; exit 1; }
done
BENCH=$ROOT/target/release/khoa-bench
[ -x "$BENCH" ] || cargo build --release -p khoa-bench --manifest-path "$ROOT/Cargo.toml" >&2
PORT=${PORT:-$(free_port 18280 18379)}
BASE=http://127.0.0.1:$PORT
PID=
WORK=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
    if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
start() { # start KHOA: khoa demo on $WORK, pinned, until /healthz answers
    taskset -c 0 "$1" demo --listen "127.0.0.1:$PORT" --data "$WORK" >>"$WORK/server.log" 2>&1 &
    PID=$!
    until curl -sf -o /dev/null --max-time 2 "$BASE/healthz"; do
        kill -0 "$PID" 2>/dev/null || { echo "bench/ab.sh: khoa demo exited" >&2; exit 1; }
        sleep 0.1
    done
}
stop() { kill -TERM "$PID"; wait "$PID" || true; PID=; }

for round in $(seq 1 "$ROUNDS"); do
    for side in A B; do
        khoa=$OLD
        [ "$side" = B ] && khoa=$NEW
        WORK=$(mktemp -d "${TMPDIR:-/tmp}/khoa-ab.XXXXXX")
        start "$khoa" # seeds the demo
        stop
        register_bench_opaque "$khoa" "$WORK"
        start "$khoa"
        taskset -c 1 "$BENCH" --target "$BASE" --scenario "$SCENARIO" --duration "$DURATION" \
            --warmup 1 --concurrency "$CONCURRENCY" --demo-json "$WORK/demo.json" --json \
            >"$WORK/out.json" 2>/dev/null
        jq -r --arg r "$round" --arg s "$side" \
            '"\($r) \($s) \(.ok_rps | round) ok/s  p50 \(.latency_us.p50 / 1000) ms  p99 \(.latency_us.p99 / 1000) ms  errors \(.errors)"' \
            "$WORK/out.json"
        stop
        rm -rf "$WORK"
        WORK=
    done
done
