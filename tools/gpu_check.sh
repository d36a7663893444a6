#!/usr/bin/env bash
# The GPU checks of the CUDA backend in one go, for a machine with an NVIDIA GPU (the device tool's H100/H200:
# Ubuntu 24.04, CUDA 13, cuDNN 9, no oneDNN, no network). Every part has its own timeout, cut to what is left of a
# budget for the whole run (GPU_CHECK_BUDGET_S, default 450 s), so it ends in under 8 minutes whatever hangs; logs
# and summary.json go to $OUT (default ./gpu-check-out).
#
#   tools/gpu_check.sh --prepare   on the CPU machine (it has nvcc, cuDNN and cuBLAS): builds gpu-bundle/ (the CLI
#                                  and the GPU tests for sm_80 + sm_90 + PTX, without oneDNN, and the shared
#                                  libraries they need that a bare CUDA machine may lack); name gpu-bundle in `carry`
#                                  (.gitignore ignores it)
#   tools/gpu_check.sh             on the GPU machine: uses gpu-bundle/ when it is there and loads, else builds
#                                  build-gpu/ with CUDA for the GPU's own architecture; then runs
#                                  1. synco info (the GPU, compute capability, memory, library versions)
#                                  2. test_neg_kernels (CPU), test_cuda_ops (every op against the reference),
#                                     test_cuda_step (whole MoCo-v2 / SynCo steps, GPU against CPU), strict fp32,
#                                     and test_cuda_step again with SYNCO_CUDA_TF32=1 (10x tolerances)
#                                  3. synco bench step --device cuda: MoCo-v2 and SynCo, ResNet-18 CIFAR stem,
#                                     batch 512, K 4096, default counts, fp32 and TF32; bench fwdbwd (fp32), the
#                                     encoder alone, for the share of the step that is not the network
#                                  4. tools/bench_torch.py step --device cuda --precision bf16 --channels-last for
#                                     MoCo-v2 and SynCo, when python3's torch sees the GPU (else recorded as skipped)
# Exit status: 0 when every part that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUNDLE=$ROOT/gpu-bundle

# The sources the binaries are built from, by content (the device machine's copy of the tree may have no .git);
# a bundle built from other sources is not used.
tree_id() {
  find src include tests/unit tests/test_util.c tests/test_util.h CMakeLists.txt -type f -print0 | sort -z |
    xargs -0 sha256sum | sha256sum | cut -c1-32
}

if [ "${1:-}" = "--prepare" ]; then
  set -e
  B=$ROOT/build-gpu-bundle
  cmake -S . -B "$B" -DSYNCO_WITH_CUDA=ON -DSYNCO_WITH_ONEDNN=OFF -DSYNCO_WITH_CAIRO=OFF \
    -DSYNCO_CUDA_ARCHS="80-real;90" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$B" -j "${JOBS:-2}" --target synco test_cuda_ops test_cuda_step test_neg_kernels
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/lib"
  cp "$B/synco" "$B/test_cuda_ops" "$B/test_cuda_step" "$B/test_neg_kernels" "$BUNDLE/"
  # shared libraries outside the C runtime, the CUDA stack and OpenBLAS (with its Fortran runtime), which the GPU
  # machine has; cJSON, libgomp, libjpeg-turbo and libpng travel (a few MB; the carry limit is 64 MiB in all)
  for bin in "$BUNDLE"/synco "$BUNDLE"/test_*; do
    ldd "$bin" | awk '/=> \// {print $3}'
  done | sort -u | grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libcudnn[^/]*|libnvrtc[^/]*|libz|libopenblas[^/]*|libgfortran|libquadmath)\.so' |
    while read -r lib; do cp -L "$lib" "$BUNDLE/lib/"; done
  tree_id > "$BUNDLE/TREE"
  du -sh "$BUNDLE"
  echo "gpu-bundle ready: run tools/gpu_check.sh on the GPU machine with carry [\"gpu-bundle\"]"
  exit 0
fi

OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.json
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-450} # the whole run, every part included (the device call's limit is larger)
DEADLINE=$(( START + BUDGET ))
PARTS=()   # JSON objects, one per part
FAILED=0

json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  ')"; }

# part NAME TIMEOUT_S CMD...: runs CMD with a timeout (its own, cut to what is left of the whole run's budget), its
# output in $OUT/NAME.log; records rc and seconds.
part() {
  local name=$1 limit=$2
  shift 2
  local t0 rc left
  t0=$(date +%s)
  left=$(( DEADLINE - t0 - 5 ))
  if [ $left -lt 10 ]; then
    skip_part "$name" "no time left of the ${BUDGET}s budget"
    FAILED=1
    return
  fi
  [ $limit -gt $left ] && limit=$left
  echo "== $name (timeout ${limit}s): $*"
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 )) status=passed
  if [ $rc -eq 77 ]; then status=skipped; elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=timeout; elif [ $rc -ne 0 ]; then status=failed; fi
  [ "$status" = failed ] || [ "$status" = timeout ] && FAILED=1
  echo "   $status (rc $rc, ${dt}s); last lines:"
  tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'
  PARTS+=("{\"part\":$(json_str "$name"),\"status\":\"$status\",\"rc\":$rc,\"seconds\":$dt,\"log\":$(json_str "$name.log")}")
}

skip_part() { # NAME REASON
  echo "== $1: skipped ($2)"
  echo "$2" > "$OUT/$1.log"
  PARTS+=("{\"part\":$(json_str "$1"),\"status\":\"skipped\",\"reason\":$(json_str "$2")}")
}

write_summary() {
  local gpu benches=""
  gpu=$(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
  for f in "$OUT"/bench_*.json; do
    [ -s "$f" ] || continue
    local line
    line=$(grep -m1 '^{' "$f" || true)
    [ -n "$line" ] && benches="${benches:+$benches,}$line"
  done
  {
    printf '{"tool":"tools/gpu_check.sh","commit":%s,"gpu":%s,"seconds":%d,"ok":%s,\n' \
      "$(json_str "$(git rev-parse HEAD 2>/dev/null || echo unknown)")" "$(json_str "${gpu:-unknown}")" \
      $(( $(date +%s) - START )) "$([ $FAILED -eq 0 ] && echo true || echo false)"
    printf ' "binaries":%s,\n' "$(json_str "$BIN_FROM")"
    printf ' "parts":[\n  %s\n ],\n' "$(IFS=$'\n'; echo "${PARTS[*]}" | paste -sd, - | sed 's/},{/},\n  {/g')"
    printf ' "benchmarks":[%s]}\n' "$benches"
  } > "$SUMMARY"
}
trap write_summary EXIT

echo "gpu_check: output in $OUT"
nvidia-smi > "$OUT/nvidia-smi.log" 2>&1 || echo "nvidia-smi failed (see $OUT/nvidia-smi.log)"

# ---- binaries: the carried bundle, else a build here ----------------------------------------------------------
BIN=""
BIN_FROM=none
if [ -x "$BUNDLE/synco" ] && [ "$(cat "$BUNDLE/TREE" 2>/dev/null)" != "$(tree_id)" ] && [ "${GPU_CHECK_ALLOW_STALE:-0}" != 1 ]; then
  echo "gpu-bundle was built from another tree ($(cat "$BUNDLE/TREE" 2>/dev/null || echo unknown); this one is $(tree_id)):"
  echo "building instead (GPU_CHECK_ALLOW_STALE=1 uses it anyway)"
elif [ -x "$BUNDLE/synco" ]; then
  export LD_LIBRARY_PATH="$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ldd "$BUNDLE/synco" "$BUNDLE/test_cuda_ops" 2>&1 | grep -q 'not found'; then
    ldd "$BUNDLE/synco" > "$OUT/bundle_ldd.log" 2>&1
    echo "gpu-bundle does not load here (see bundle_ldd.log); building instead"
  else
    BIN=$BUNDLE
    BIN_FROM="gpu-bundle (prebuilt by tools/gpu_check.sh --prepare)"
  fi
fi
if [ -z "$BIN" ]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
  part configure 60 cmake -S . -B build-gpu -DSYNCO_WITH_CUDA=ON -DSYNCO_WITH_CAIRO=OFF \
    -DSYNCO_CUDA_ARCHS="${cap:-90}" -DCMAKE_BUILD_TYPE=Release
  part build 240 cmake --build build-gpu -j "$(nproc)" --target synco test_cuda_ops test_cuda_step test_neg_kernels
  [ -x build-gpu/synco ] && BIN=$ROOT/build-gpu && BIN_FROM="build-gpu (built here for sm_${cap:-90})"
fi
if [ -z "$BIN" ]; then
  echo "gpu_check: no binaries (see configure.log / build.log)"
  FAILED=1
  exit 1
fi

# ---- checks ------------------------------------------------------------------------------------------------------
part info 30 "$BIN/synco" info
part test_neg_kernels 30 "$BIN/test_neg_kernels"
part test_cuda_ops 90 env -u SYNCO_CUDA_TF32 "$BIN/test_cuda_ops"
part test_cuda_step 90 env -u SYNCO_CUDA_TF32 "$BIN/test_cuda_step"
part test_cuda_step_tf32 60 env SYNCO_CUDA_TF32=1 "$BIN/test_cuda_step"
# with a GPU that nvidia-smi sees, a GPU test that skips is a failure (a driver or runtime mismatch, most likely)
if nvidia-smi -L > /dev/null 2>&1; then
  for t in test_cuda_ops test_cuda_step; do
    if grep -q '^SKIP' "$OUT/$t.log" 2>/dev/null; then
      echo "   $t skipped although nvidia-smi sees a GPU: counted as a failure"
      FAILED=1
    fi
  done
fi

# ---- benchmarks: ResNet-18 CIFAR stem, batch 512, K 4096, default counts ------------------------------------------
for method in moco synco; do
  for prec in fp32 tf32; do
    name=bench_${method}_${prec}
    tf=0
    [ $prec = tf32 ] && tf=1
    part "$name" 60 env SYNCO_CUDA_TF32=$tf "$BIN/synco" bench step --device cuda --method "$method" --arch resnet18 \
      --cifar-stem --batch 512 --moco-k 4096 --warmup 3 --iters 20 --json --no-memory-check
    grep -m1 '^{' "$OUT/$name.log" | sed "s/}\$/,\"cuda_math\":\"$prec\"}/" > "$OUT/$name.json" || true
  done
done

part bench_fwdbwd_fp32 60 env SYNCO_CUDA_TF32=0 "$BIN/synco" bench fwdbwd --device cuda --arch resnet18 --cifar-stem \
  --batch 512 --warmup 3 --iters 20 --json --no-memory-check
grep -m1 '^{' "$OUT/bench_fwdbwd_fp32.log" | sed 's/}$/,"cuda_math":"fp32"}/' > "$OUT/bench_fwdbwd_fp32.json" || true

if grep -q -- '--device' tools/bench_torch.py 2>/dev/null && python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  for method in moco synco; do
    part "bench_torch_$method" 90 python3 tools/bench_torch.py step --device cuda --precision bf16 --channels-last \
      --method "$method" --arch resnet18 --cifar-stem --batch 512 --moco-k 4096 --threads "$(nproc)" --warmup 3 \
      --iters 20 --json
    grep -m1 '^{' "$OUT/bench_torch_$method.log" > "$OUT/bench_torch_$method.json" || true
  done
else
  skip_part bench_torch "torch (python3) does not see a GPU here"
fi
skip_part pretrain_cifar_15_epochs "not prepared: checkpoints of a GPU run are not yet staged through the backend's copy (docs/step.md)"

echo "gpu_check: $([ $FAILED -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - START ))s; summary: $SUMMARY"
exit $FAILED
