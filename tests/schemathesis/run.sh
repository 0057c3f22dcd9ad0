#!/usr/bin/env bash
# Schema fuzzing: starts `khoa demo` on a free port and runs schemathesis against its
# /openapi.json: no 5xx, and every answer's status, content type and body as documented.
#
#   tests/schemathesis/run.sh            # builds the release binary
#   KHOA_BIN=target/debug/khoa tests/schemathesis/run.sh
#
# SCHEMATHESIS_MAX_EXAMPLES (default 50) bounds the test cases per operation; the venv is
# kept in target/ and reused while its version matches.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

SCHEMATHESIS_VERSION=4.32.5
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-50}
venv=${SCHEMATHESIS_VENV:-$root/target/schemathesis-venv}

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Kept from the environment of `khoa demo` below: it refuses KHOA_* variables that are not
# configuration keys.
export -n KHOA_BIN 2>/dev/null || true
if [ -z "${KHOA_BIN:-}" ]; then
  cargo build --release -q -p khoa-server --bin khoa
  KHOA_BIN=$root/target/release/khoa
fi

work=$(mktemp -d)
"$KHOA_BIN" demo --listen 127.0.0.1:0 --data "$work/data" >"$work/demo.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The demo writes demo.json (its address and public demo credentials) once it has bound.
for _ in $(seq 300); do
  [ -s "$work/data/demo.json" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/demo.log"; exit 1; }
  sleep 0.1
done
demo() { python3 -c "import json,sys; d=json.load(open('$work/data/demo.json')); print(eval(sys.argv[1]))" "$1"; }
base=$(demo 'd["base_url"]')
for _ in $(seq 100); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

export KHOA_CLIENT_ID KHOA_CLIENT_SECRET KHOA_BANKHUB_ID KHOA_BANKHUB_SECRET \
  KHOA_VIETQR_USER KHOA_VIETQR_PASSWORD KHOA_BEARER
KHOA_CLIENT_ID=$(demo 'd["oauth2"]["confidential"]["client_id"]')
KHOA_CLIENT_SECRET=$(demo 'd["oauth2"]["confidential"]["client_secret"]')
KHOA_BANKHUB_ID=$(demo 'd["bankhub"]["client_id"]')
KHOA_BANKHUB_SECRET=$(demo 'd["bankhub"]["client_secret"]')
KHOA_VIETQR_USER=$(demo 'd["vietqr"]["username"]')
KHOA_VIETQR_PASSWORD=$(demo 'd["vietqr"]["password"]')
KHOA_BEARER=$(curl -fsS -u "$KHOA_CLIENT_ID:$KHOA_CLIENT_SECRET" \
  -d grant_type=client_credentials "$base$(demo 'd["oauth2"]["path"]')" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# Run from the temp dir: hypothesis keeps its files in the working directory.
cd "$work"
status=0
"$venv/bin/schemathesis" --no-color --config-file "$root/tests/schemathesis/schemathesis.toml" \
  run "$base/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "$max_examples" \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --workers 1 \
  --generation-database none \
  --phases examples,coverage,fuzzing \
  || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- khoa demo log (last 50 lines) ---"
  tail -n 50 "$work/demo.log"
fi
exit "$status"
