#!/bin/bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang in build-fuzz, the library instrumented for
# coverage and AddressSanitizer, and runs each for a bounded time on its seed corpus (tests/fuzz/corpus/<target>,
# read only: new inputs go to a temporary folder). Exit status: 0 clean, 1 a target crashed or the build
# failed. FUZZ_SECONDS (default 15) sets the time per target.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${FUZZ_BUILD:-$ROOT/build-fuzz}"
SECONDS_PER="${FUZZ_SECONDS:-15}"
CC_BIN="${FUZZ_CC:-$(command -v clang || command -v clang-14)}"
[ -n "$CC_BIN" ] || { echo "run_fuzz: clang not found" >&2; exit 1; }
TARGETS=(fuzz_jpeg fuzz_png fuzz_cifar fuzz_idx fuzz_safetensors)
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER="$CC_BIN" -DSYNCO_FUZZ=ON -DSYNCO_WITH_ONEDNN=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address" >"$BUILD/configure.log" 2>&1 \
  || { echo "run_fuzz: configure failed (see $BUILD/configure.log)" >&2; tail -20 "$BUILD/configure.log" >&2; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]}" >"$BUILD/build.log" 2>&1 \
  || { echo "run_fuzz: build failed (see $BUILD/build.log)" >&2; grep -m 20 -E "error" "$BUILD/build.log" >&2; exit 1; }
status=0
for t in "${TARGETS[@]}"; do
  work="$(mktemp -d /tmp/synco_fuzz_corpus.XXXXXX)"
  log="$BUILD/$t.log"
  ( cd "$work" && ASAN_OPTIONS=detect_leaks=1 "$BUILD/$t" -max_total_time="$SECONDS_PER" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 "$work" "$ROOT/tests/fuzz/corpus/$t" ) >"$log" 2>&1
  rc=$?
  runs=$(grep -a -m1 -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$")
  if [ $rc -ne 0 ]; then
    echo "run_fuzz: $t FAILED (exit $rc); log: $log" >&2
    grep -a -m 30 -E "ERROR|SUMMARY|#0|#1|#2|#3|#4|Test unit written" "$log" >&2
    status=1
  else
    echo "run_fuzz: $t ok (${runs:-?} runs in ${SECONDS_PER}s)"
  fi
  rm -rf "$work"
done
exit $status
