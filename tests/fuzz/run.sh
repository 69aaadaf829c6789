#!/bin/bash
# One libFuzzer run: run.sh TARGET_EXE NAME SEED_DIR [REGRESSION_DIR]
# for PARAMD_FUZZ_SECONDS (default 15). New corpus entries go to
# fuzz-out/NAME/corpus and any crash input to fuzz-out/NAME/ in the current
# directory (meson runs tests in the build directory). Exits non-zero on a
# finding (crash, leak, sanitizer report, timeout, out of memory).
set -euo pipefail
exe=$1 name=$2
shift 2
out=fuzz-out/$name
mkdir -p "$out/corpus"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# libFuzzer exits 77 on a crash by default, which meson counts as a skip:
# -error_exitcode=1 makes a crash a failure (a timeout exits 70).
exec "$exe" -max_total_time="${PARAMD_FUZZ_SECONDS:-15}" -timeout=10 -rss_limit_mb=2048 \
    -error_exitcode=1 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" "$@"
