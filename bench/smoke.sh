#!/usr/bin/env bash
# A few seconds of every khoa-bench scenario against a real `khoa demo`, asserting only that
# each one ran and got no error: keeps the load generator and bench/run.sh's set-up working
# (issue 6 allows this in CI; the figures themselves are bench/run.sh's, never asserted).
#
#   bench/smoke.sh            # debug binaries (built if need be), a temporary data directory
#
# Needs: cargo, curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
cd "$ROOT"
cargo build -q -p khoa-server -p khoa-bench
KHOA=$ROOT/target/debug/khoa
BENCH=$ROOT/target/debug/khoa-bench

PORT=$(free_port 18280 18379)
BASE=http://127.0.0.1:$PORT
DATA=$(mktemp -d "${TMPDIR:-/tmp}/khoa-smoke.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
    rm -rf "$DATA"
}
trap cleanup EXIT

start() {
    "$KHOA" demo --listen "127.0.0.1:$PORT" --data "$DATA" >>"$DATA/server.log" 2>&1 &
    PID=$!
    for _ in $(seq 600); do
        curl -sf -o /dev/null --max-time 1 "$BASE/healthz" && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.05
    done
    cat "$DATA/server.log" >&2
    echo "bench/smoke.sh: khoa demo did not come up" >&2
    exit 1
}

# The demo seeds no opaque confidential client; the CLI adds the one bench/run.sh uses.
start
kill -TERM "$PID"; wait "$PID" || true
register_bench_opaque "$KHOA" "$DATA"
start

failed=0
# scenario, requests: the password-hashing ones are kept short (Argon2id per request).
for entry in healthz:40 client-credentials-jwt:40 client-credentials-opaque:40 \
    protected-resource-jwt:40 protected-resource-opaque:40 introspect:40 bankhub:40 vietqr:40 \
    refresh:40 partner-refresh:40 password:4 derivative:4 partner-login:4; do
    scenario=${entry%:*}
    requests=${entry#*:}
    out=$DATA/$scenario.json
    if ! "$BENCH" --target "$BASE" --scenario "$scenario" --duration 60 --warmup 0 \
        --max-requests "$requests" --concurrency 2 --demo-json "$DATA/demo.json" --json \
        >"$out" 2>"$DATA/$scenario.err"; then
        echo "FAIL $scenario: khoa-bench exited with an error: $(cat "$DATA/$scenario.err")" >&2
        failed=1
        continue
    fi
    # Zero errors and at least one success, or the scenario did not exercise anything.
    if ! python3 - "$out" "$scenario" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok, errors = r["total"]["ok"], r["errors"]
print(f"{sys.argv[2]}: {r['total']['requests']} requests, {ok} ok, {errors} errors, status {r['status']}")
sys.exit(0 if errors == 0 and ok > 0 else 1)
PY
    then
        echo "FAIL $scenario" >&2
        failed=1
    fi
done
exit "$failed"
