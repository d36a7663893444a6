#!/bin/bash
# The libFuzzer targets of the decoders and binary readers, each run for a bounded time (tests/fuzz/run_fuzz.sh).
# Skipped (77) when clang or its libFuzzer runtime (libclang-rt-14-dev) is missing.
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CC_BIN="$(command -v clang || command -v clang-14)"
[ -n "$CC_BIN" ] || { echo "SKIP: clang not installed"; exit 77; }
probe="$(mktemp -d /tmp/synco_fuzz_probe.XXXXXX)"
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$probe/p.c"
"$CC_BIN" -fsanitize=fuzzer,address "$probe/p.c" -o "$probe/p" >/dev/null 2>&1 \
  || { echo "SKIP: libFuzzer runtime missing (apt-get install libclang-rt-14-dev)"; exit 77; }
rm -rf "$probe" # exec below replaces this shell, so the EXIT trap would not run
exec bash "$ROOT/tests/fuzz/run_fuzz.sh"
