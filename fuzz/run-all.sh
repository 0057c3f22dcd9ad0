#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECS seconds (default 600), JOBS at a time
# (default 2), on the committed corpus; new inputs land in corpus/<target>/ (minimise with
# `cargo fuzz cmin <target>` before committing). Crashes go to artifacts/<target>/.
# On a stable toolchain cargo-fuzz's nightly flags need RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
SECS=${SECS:-600}
JOBS=${JOBS:-2}
export RUSTC_BOOTSTRAP=1
cargo fuzz build
mkdir -p logs
TARGETS="form_body basic_header dialect_json envelope jwt_verify bearer"
printf '%s\n' $TARGETS | xargs -P "$JOBS" -I{} sh -c \
  "cargo fuzz run {} -- -max_total_time=$SECS -print_final_stats=1 > logs/{}.log 2>&1; \
   echo \"{}: \$(grep -o 'stat::number_of_executed_units: *[0-9]*' logs/{}.log)\""
