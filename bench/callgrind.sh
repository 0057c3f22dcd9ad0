#!/usr/bin/env bash
# Instructions per request in the server, counted by valgrind's callgrind: a figure that does
# not drift with the VM's speed the way requests/s do (±30 % between runs here), for judging a
# change worth a few per cent. User-space instructions only: the kernel's share (TCP, the WAL's
# pwrite and fsync) is not counted, and SHA-2 runs its portable code under valgrind, so it
# weighs more than on the real CPU. Compare builds, not absolute figures.
#
#   bench/callgrind.sh [SCENARIO…]        # default: healthz client-credentials-jwt
#                                         #   client-credentials-opaque refresh
#   N=4000 KEEP=1 bench/callgrind.sh refresh
#
# Builds the release binaries, seeds a fresh demo database (plus the opaque client the
# opaque scenario needs), starts `khoa demo` under callgrind, warms up with 300 requests,
# zeroes the counters, sends N requests (default 2000) over 8 connections, dumps the counters
# and divides. KEEP=1 keeps the callgrind output for `callgrind_annotate --inclusive=yes`.
# Rotation scenarios log their clients in again before the measured requests: their Argon2
# hashes are counted, and reported apart (`argon2`) so that `Ir/req` excludes them.
# Needs: valgrind, curl, jq.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
N=${N:-2000}
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(healthz client-credentials-jwt client-credentials-opaque refresh)
for tool in cargo curl jq valgrind callgrind_control callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "bench/callgrind.sh: $tool is required" >&2; exit 1; }
done
cd "$ROOT"
cargo build --release -p khoa-server -p khoa-bench >&2
KHOA=$ROOT/target/release/khoa
BENCH=$ROOT/target/release/khoa-bench
PORT=${PORT:-$(free_port 18180 18279)}
BASE=http://127.0.0.1:$PORT
PID=
WORK=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
    if [ -n "$WORK" ] && [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
wait_up() {
    until curl -sf -o /dev/null --max-time 2 "$BASE/healthz"; do
        kill -0 "$PID" 2>/dev/null || { echo "khoa demo exited" >&2; exit 1; }
        sleep 0.2
    done
}
load() { # load SCENARIO COUNT
    "$BENCH" --target "$BASE" --scenario "$1" --duration 600 --warmup 0 --max-requests "$2" \
        --concurrency 8 --demo-json "$WORK/demo.json" --json
}

for scenario in "${SCENARIOS[@]}"; do
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/khoa-callgrind.XXXXXX")
    "$KHOA" demo --listen "127.0.0.1:$PORT" --data "$WORK" >"$WORK/seed.log" 2>&1 &
    PID=$!
    wait_up
    kill -TERM "$PID"; wait "$PID" || true
    register_bench_opaque "$KHOA" "$WORK"
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" \
        "$KHOA" demo --listen "127.0.0.1:$PORT" --data "$WORK" >"$WORK/server.log" 2>&1 &
    PID=$!
    wait_up
    load "$scenario" 300 >/dev/null
    sleep 0.5
    callgrind_control -z "$PID" >/dev/null
    load "$scenario" "$N" >"$WORK/load.json"
    sleep 0.5
    callgrind_control -d "$PID" >/dev/null
    sleep 0.5
    kill -TERM "$PID"; wait "$PID" || true
    PID=
    requests=$(jq .total.requests "$WORK/load.json")
    errors=$(jq .errors "$WORK/load.json")
    # The dump made after zeroing is the largest of the `.1` parts.
    dump=$(ls -S "$WORK"/callgrind.out.*.* | head -1)
    ir=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
    argon2=$(callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null |
        awk '/argon2::Argon2::hash_password_into_with_memory/ && !n++ {gsub(",", "", $1); print $1}' || true)
    argon2=${argon2:-0}
    echo "$scenario: $requests requests, $errors errors, $(((ir - argon2) / requests)) Ir/req (argon2 apart: $((argon2 / requests)) Ir/req)"
    if [ -n "${KEEP:-}" ]; then echo "  kept $dump" >&2; fi
done
