#!/usr/bin/env bash
# Without CUDA: `--device cuda` names the backend as not built in. Then a compile-and-link check of the CUDA build,
# wherever nvcc is found (skipped, exit 77, where it is not): configures
# a CUDA build next to the CPU one (one architecture, sm_90, to stay cheap), builds the CLI and the GPU tests, and
# checks what can be checked without a GPU: `synco info` reports the CUDA backend and its libraries, the GPU tests
# skip (or pass, on a machine with a GPU), and `--device cuda` without a GPU fails with a message, not a crash.
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
# the CPU build names the missing backend instead of calling it unknown
CPU_BIN=${1:-build/synco}
# (the output is captured first: `cmd | grep -q` under pipefail fails at random when grep exits at its first match and
# the writer dies of SIGPIPE)
cpu_info=$("$CPU_BIN" info)
if ! grep -q "^cuda: built in" <<<"$cpu_info"; then
  rc=0
  out=$("$CPU_BIN" bench step --device cuda:1 --iters 1 2>&1) || rc=$?
  [ $rc -eq 1 ] && grep -q "backend 'cuda:1' is not built in (rebuild with make CUDA=1)" <<<"$out" \
    || fail "--device cuda in a build without CUDA: exit $rc, $out"
fi
NVCC=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$NVCC" ] || { echo "SKIP: no nvcc (CUDACXX, PATH or /usr/local/cuda/bin)"; exit 77; }
B=$(cd "$(dirname "${1:-build/synco}")" && pwd)/cuda-check
export CUDACXX=$NVCC
cmake -S . -B "$B" -DSYNCO_WITH_CUDA=ON -DSYNCO_CUDA_ARCHS=90-real -DCMAKE_BUILD_TYPE=Debug -DSYNCO_WITH_CAIRO=OFF \
  > "$B.configure.log" 2>&1 || { cat "$B.configure.log"; fail "configure with -DSYNCO_WITH_CUDA=ON"; }
cmake --build "$B" -j "${JOBS:-2}" --target synco test_cuda_ops test_cuda_step > "$B.build.log" 2>&1 \
  || { tail -n 40 "$B.build.log"; fail "CUDA build"; }
if grep -E "warning" "$B.build.log" | grep -E "backend/cuda|kernels/" ; then fail "warnings in the CUDA sources"; fi
info=$("$B/synco" info)
echo "$info"
grep -q "^cuda: built in" <<<"$info" || fail "synco info does not report the CUDA backend"
grep -q "cuDNN 9\." <<<"$info" || fail "synco info does not report cuDNN 9"
for t in test_cuda_ops test_cuda_step; do
  rc=0
  "$B/$t" || rc=$?
  [ $rc -eq 0 ] || [ $rc -eq 77 ] || fail "$t exited $rc"
done
if ! grep -q "^cuda:0:" <<<"$info"; then # no GPU here
  rc=0
  out=$("$B/synco" bench step --device cuda --iters 1 --warmup 0 -b 8 --cifar-stem --width 8 2>&1) || rc=$?
  echo "$out"
  [ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "--device cuda without a GPU: exit $rc (expected an error, not success or a signal)"
  grep -q "no usable GPU" <<<"$out" || fail "--device cuda without a GPU: no message naming the problem"
fi
echo "cuda_build: ok"
