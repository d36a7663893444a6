#!/bin/bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang in build-fuzz, the library instrumented for
# coverage and AddressSanitizer, and runs each for a bounded time on its seed corpus (tests/fuzz/corpus/<target>,
# read only: new inputs go to a temporary folder). Exit status: 0 clean, 1 a target crashed or the build
# failed. Environment: FUZZ_SECONDS (default 10) the time per target, FUZZ_TARGETS (default: every
# tests/fuzz/fuzz_*.c) which ones, JOBS (default: all cores) the build's parallelism, FUZZ_BUILD the folder,
# FUZZ_CC the compiler. Each target's line gives its runs and the edges it covered (libFuzzer's "cov"); a
# crashing input is kept as build-fuzz/<target>-crash-<sha1> (see tests/fuzz/README to reproduce it).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${FUZZ_BUILD:-$ROOT/build-fuzz}"
SECONDS_PER="${FUZZ_SECONDS:-10}"
CC_BIN="${FUZZ_CC:-$(command -v clang || command -v clang-14)}"
[ -n "$CC_BIN" ] || { echo "run_fuzz: clang not found" >&2; exit 1; }
if [ -n "${FUZZ_TARGETS:-}" ]; then
  read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
  TARGETS=()
  for src in "$ROOT"/tests/fuzz/fuzz_*.c; do TARGETS+=("$(basename "$src" .c)"); done
fi
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER="$CC_BIN" -DSYNCO_FUZZ=ON -DSYNCO_WITH_ONEDNN=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address" >"$BUILD/configure.log" 2>&1 \
  || { echo "run_fuzz: configure failed (see $BUILD/configure.log)" >&2; tail -20 "$BUILD/configure.log" >&2; exit 1; }
cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target "${TARGETS[@]}" >"$BUILD/build.log" 2>&1 \
  || { echo "run_fuzz: build failed (see $BUILD/build.log)" >&2; grep -m 20 -E "error" "$BUILD/build.log" >&2; exit 1; }
status=0
for t in "${TARGETS[@]}"; do
  work="$(mktemp -d /tmp/synco_fuzz_corpus.XXXXXX)"
  log="$BUILD/$t.log"
  seeds=()
  [ -d "$ROOT/tests/fuzz/corpus/$t" ] && seeds=("$ROOT/tests/fuzz/corpus/$t")
  # SYNCO_FUZZ_SEEDS: targets that write their own seeds (fuzz_checkpoint) put them in the work folder.
  ( cd "$work" && SYNCO_FUZZ_SEEDS="$work" ASAN_OPTIONS=detect_leaks=1 "$BUILD/$t" -max_total_time="$SECONDS_PER" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD/$t-" "$work" "${seeds[@]}" ) \
      >"$log" 2>&1
  rc=$?
  runs=$(grep -a -m1 -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$")
  cov=$(grep -a -oE "(INITED|DONE|NEW|REDUCE|pulse) +cov: [0-9]+" "$log" | tail -n 1 | grep -oE "[0-9]+$")
  if [ $rc -ne 0 ]; then
    echo "run_fuzz: $t FAILED (exit $rc); log: $log" >&2
    grep -a -m 30 -E "ERROR|SUMMARY|#0|#1|#2|#3|#4|Test unit written" "$log" >&2
    status=1
  else
    echo "run_fuzz: $t ok (${runs:-?} runs in ${SECONDS_PER}s, ${cov:-?} edges covered)"
  fi
  rm -rf "$work"
done
exit $status
