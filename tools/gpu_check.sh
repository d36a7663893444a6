#!/usr/bin/env bash
# The GPU check of the CUDA backend, in one device call that always reports. Three modes:
#
#   tools/gpu_check.sh --prepare   here (the CPU machine, which has nvcc, cuDNN, cuBLAS and Open MPI): builds
#                                  gpu-bundle/: bundle.tar.gz (the CLI and the GPU tests for sm_90, with MPI, without
#                                  oneDNN or NCCL, the CUDA runtime linked in, every other non-system library beside
#                                  them, and Open MPI's mpirun with what it loads at run time, in synco-gpu/mpi: the
#                                  GPU machine has no MPI), TREE (the sources' content hash) and, when ../shared has
#                                  it, the CIFAR-10 training tarball.
#                                  Name gpu-bundle in the device call's `carry` (.gitignore ignores it).
#   tools/gpu_check.sh             on the GPU machine: unpacks the bundle (refused when built from other sources),
#                                  finds cuBLAS and cuDNN there (system CUDA, then PyTorch's nvidia/*/lib) and runs
#                                  the parts below, each under its own timeout cut to what is left of the budget
#                                  (GPU_CHECK_BUDGET_S, default 330 s); a part that fails does not stop the others.
#   tools/gpu_check.sh --dry-run   here, without a GPU: the same run (the GPU parts stop at the missing GPU), to see
#                                  that the script, the bundle and the summary work before spending device time.
#
# Parts, in order of value: 1 info; 2 op tests (test_neg_kernels, test_cuda_smem, test_cuda_ops); 3 whole steps
# against the CPU (test_cuda_step in fp32, TF32 and bf16); 4 bench step MoCo-v2 / SynCo (TF32, bf16, fp32) next to PyTorch
# (bf16 autocast + channels_last MoCo-v2, and the authors' SynCo step) in the same call, and the SynCo step layer by
# layer (bench --layers); 5 a CIFAR-10 pretraining
# on the GPU with the kNN monitor, checkpoints and resume (GPU -> CPU too), and every evaluation command with
# --device cuda (and a bf16 run resumed in fp32); 5b data-parallel with the bundled Open MPI, 2 ranks on the one GPU
# (collectives through host copies) against 1 process, and --key-shuffle indices and --bucket-mb 0 against them bit
# for bit; 6 the learning runs (GPU_CHECK_LEARN, pairs method:precision, default MoCo-v2 and SynCo in bf16, then in
# TF32; 15 epochs, 45,000 / 5,000 split) with what is left of the budget.
#
# Output: a summary of at most ~8,000 characters on stdout (every part's status and seconds, the first error lines
# of each failure, every figure), and under $OUT at most 8 files: summary.json and logs.tar.gz (every log).
# Exit status: 0 when every part that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUNDLE=$ROOT/gpu-bundle
BIN_TARGETS="synco test_cuda_ops test_cuda_step test_neg_kernels test_cuda_smem"

# The sources the binaries are built from, by content (the device machine's copy of the tree has no .git); a bundle
# built from other sources is refused.
# MANIFEST lists every source file's hash, so the device side names the files that differ.
tree_files() {
  find src include tests/unit tests/test_util.c tests/test_util.h CMakeLists.txt -type f -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum
}
tree_id() { tree_files | sha256sum | cut -c1-32; }

# Libraries a bundle may leave to the machine: the C runtime, and the CUDA libraries found there at run time.
SYSTEM_LIBS='^(linux-vdso|libc|libm|libdl|librt|libpthread|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so'
CUDA_LIBS='^(libcuda|libcublas|libcublasLt|libcudnn[a-z_]*|libnvrtc[a-z_.-]*)\.so'
# Open MPI's MCA components a single node never loads (other networks, OpenSHMEM, the debugger's message queues).
MCA_LEFT_OUT='_(ucx|ofi|openib|psm|psm2)\.so$|^mca_(atomic|memheap|scoll|spml|sshmem|reachable_netlink)|^libompi_dbg'
# PMIx as Debian's Open MPI 4.1 uses it (libpmix2): its components and help texts
PMIX_HOME=${PMIX_HOME:-/usr/lib/x86_64-linux-gnu/pmix2}

# bundle_mpi_argv DIR LIBPATH: one a line, the arguments of env(1) that run the Open MPI of the bundle unpacked in DIR
# (DIR/mpi, its libraries in DIR/lib) where no MPI is installed: the variables that point Open MPI (OPAL_*) and PMIx
# (PMIX_*) to their folders there (both compiled in absolute paths of the build machine: Debian's
# /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3, /usr/share/openmpi, /etc/openmpi, .../pmix2/lib/pmix), the library
# path LIBPATH (the bundle's, then CUDA's), then mpirun and its flags: root is allowed (the GPU machine runs as
# root), and more ranks than cores. tools/gpu_bundle_selftest.sh runs the same words in its bare root.
bundle_mpi_argv() {
  local m=$1/mpi
  printf '%s\n' "LD_LIBRARY_PATH=$2" "OPAL_PREFIX=$m" "OPAL_EXEC_PREFIX=$m" "OPAL_BINDIR=$m/bin" "OPAL_LIBDIR=$1/lib" \
    "OPAL_PKGLIBDIR=$m/lib/openmpi" "OPAL_DATAROOTDIR=$m/share" "OPAL_DATADIR=$m/share" \
    "OPAL_PKGDATADIR=$m/share/openmpi" "OPAL_SYSCONFDIR=$m/etc" "PMIX_PREFIX=$m" "PMIX_LIBDIR=$1/lib" \
    "PMIX_PKGLIBDIR=$m/lib/pmix" "PMIX_PKGDATADIR=$m/share/pmix" "PMIX_SYSCONFDIR=$m/etc" \
    "PMIX_MCA_mca_base_component_path=$m/lib/pmix" "OMPI_MCA_plm=isolated" \
    "$m/bin/mpirun" --allow-run-as-root --oversubscribe
}

if [ "${1:-}" = "--prepare" ]; then
  set -e
  B=$ROOT/build-gpu-bundle
  # Open MPI: mpirun (orterun) and what it loads at run time travel in synco-gpu/mpi (bundle_mpi_argv above).
  MPI_PKGLIB=$(ompi_info --parsable --path pkglibdir 2>/dev/null | cut -d: -f3-) || true
  if ! command -v orterun >/dev/null || [ ! -d "$MPI_PKGLIB" ] || [ ! -d "$PMIX_HOME/lib/pmix" ]; then
    echo "gpu-bundle: needs Open MPI here (orterun, ompi_info, PMIx in $PMIX_HOME): apt-get install openmpi-bin" \
      "libopenmpi-dev" >&2
    exit 1
  fi
  # MPI on, NCCL off: libnccl (218 MB) cannot travel, and two ranks on the one GPU take MPI through host copies
  # anyway. CMakeLists.txt has no switch for NCCL: its find results, set to OFF (typed, so CMake keeps them), make
  # `if(NCCL_INCLUDE_DIR AND NCCL_LIB)` false.
  cmake -S . -B "$B" -DSYNCO_WITH_CUDA=ON -DSYNCO_CUDA_STATIC_RUNTIME=ON -DSYNCO_WITH_ONEDNN=OFF \
    -DSYNCO_WITH_CAIRO=OFF -DSYNCO_WITH_MPI=ON -DNCCL_INCLUDE_DIR:PATH=OFF -DNCCL_LIB:FILEPATH=OFF \
    -DSYNCO_CUDA_ARCHS="90" -DCMAKE_BUILD_TYPE=Release >/dev/null
  # shellcheck disable=SC2086
  cmake --build "$B" -j "${JOBS:-$(nproc)}" --target $BIN_TARGETS
  STAGE=$(mktemp -d)
  trap 'rm -rf "$STAGE"' EXIT
  G=$STAGE/synco-gpu M=$STAGE/synco-gpu/mpi
  mkdir -p "$G/lib" "$M/bin" "$M/lib/openmpi" "$M/lib/pmix" "$M/share/openmpi" "$M/share/pmix" "$M/etc"
  for t in $BIN_TARGETS; do cp "$B/$t" "$G/"; done
  info=$("$G/synco" info)
  if [[ $info != *"transports: single process, MPI"* ]]; then
    echo "gpu-bundle: the build has no MPI (CMake did not find it)" >&2
    exit 1
  fi
  # Open MPI's mpirun, the MCA components that it and libmpi dlopen (from their pkglibdir), PMIx's components, the
  # help texts both print from, and Open MPI's MCA parameter file. Left out: the components for networks a single
  # node never uses (UCX, libfabric/OFI, InfiniBand verbs, PSM/PSM2, netlink), OpenSHMEM's and the debugger's
  # message-queue library: 19 files, with the 20 libraries they alone need (UCX, libfabric, rdma-core, PSM, libnl,
  # liboshmem): 7.2 MB, 2.8 MB compressed. tools/gpu_bundle_selftest.sh runs 2 ranks without them.
  # PMIx's own parameter file is not taken: it names its component folder by absolute path.
  cp "$(readlink -f "$(command -v orterun)")" "$M/bin/mpirun"
  for f in "$MPI_PKGLIB"/*.so; do
    [[ $(basename "$f") =~ $MCA_LEFT_OUT ]] || cp "$f" "$M/lib/openmpi/"
  done
  cp "$PMIX_HOME"/lib/pmix/*.so "$M/lib/pmix/"
  cp "$(ompi_info --parsable --path pkgdatadir | cut -d: -f3-)"/help-*.txt "$M/share/openmpi/"
  cp "$PMIX_HOME"/share/pmix/help-*.txt "$M/share/pmix/"
  cp "$(ompi_info --parsable --path sysconfdir | cut -d: -f3-)/openmpi-mca-params.conf" "$M/etc/"
  # every library outside the C runtime and the CUDA stack travels, and so do their own dependencies; one that this
  # machine cannot resolve stops the bundle (it would be missing there too)
  objs=("$G"/synco "$G"/test_* "$M"/bin/mpirun "$M"/lib/openmpi/*.so "$M"/lib/pmix/*.so)
  unresolved=$(for bin in "${objs[@]}"; do ldd "$bin"; done |
    awk '/not found/ {print $1}' | sort -u | grep -vE "$CUDA_LIBS" || true)
  if [ -n "$unresolved" ]; then echo "gpu-bundle: libraries not found here: $unresolved" >&2; exit 1; fi
  for bin in "${objs[@]}"; do ldd "$bin"; done | awk '/=> \// {print $1, $3}' |
    sort -u | while read -r name path; do
      if ! [[ $name =~ $SYSTEM_LIBS ]] && ! [[ $name =~ $CUDA_LIBS ]]; then cp -L "$path" "$G/lib/$name"; fi
    done
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE"
  tar -C "$STAGE" -czf "$BUNDLE/bundle.tar.gz" synco-gpu
  tree_id > "$BUNDLE/TREE"
  tree_files > "$BUNDLE/MANIFEST"
  if [ -f ../shared/data/cifar10-train.tar.gz ]; then cp ../shared/data/cifar10-train.tar.gz "$BUNDLE/"; fi
  echo "gpu-bundle: $(ls "$STAGE/synco-gpu/lib" | tr '\n' ' ')"
  tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  bundle=$(du -cb "$BUNDLE/bundle.tar.gz" "$BUNDLE/TREE" | tail -1 | cut -f1)
  all=$(du -sb "$BUNDLE" | cut -f1)
  mib() { echo "$(( ($1 + 524288) / 1048576 )) MiB"; }
  echo "travels: tracked tree $(mib "$tracked") + bundle $(mib "$bundle") = $(mib $((tracked + bundle))) (limit 48);" \
    "with the data $(mib $((tracked + all))) (the device call's limit is 64)"
  if [ $((tracked + bundle)) -gt $((48 * 1048576)) ]; then echo "gpu-bundle: tree + bundle over 48 MiB" >&2; exit 1; fi
  echo "gpu-bundle ready: device call with carry [\"gpu-bundle\"] and command \"tools/gpu_check.sh\""
  exit 0
fi

DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/gpu-check.XXXXXX) # logs, data and runs; only summary.json and logs.tar.gz go to $OUT
LOGS=$WORK/logs
mkdir -p "$LOGS"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-330}
DEADLINE=$((START + BUDGET))
PARTS=()   # JSON objects, one per part
FIGURES=() # JSON members "name": value
FAILED=0
SUMMARY_TXT=$WORK/summary.txt
: > "$SUMMARY_TXT"

say() { echo "$*" | tee -a "$SUMMARY_TXT"; }
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  ')"; }
left() { echo $((DEADLINE - $(date +%s))); }

# part NAME TIMEOUT_S CMD...: runs CMD under a timeout (its own, cut to what is left of the budget), its output in
# logs/NAME.log; one summary line, and for a failure the first error lines (or the last lines).
part() {
  local name=$1 limit=$2
  shift 2
  local t0 rc l
  t0=$(date +%s)
  l=$(( DEADLINE - t0 - 3 ))
  if [ $l -lt 5 ]; then
    skip_part "$name" "no time left of the ${BUDGET}s budget"
    return 1
  fi
  [ "$limit" -gt $l ] && limit=$l
  timeout -k 5 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 )) status=passed
  if [ $rc -eq 77 ] || grep -q '^SKIP' "$LOGS/$name.log"; then
    status=skipped # a GPU test that skips where nvidia-smi sees a GPU: a driver or runtime mismatch
    [ $GPU_SEEN = 1 ] && [[ $name == test_cuda_* ]] && status=failed
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="timeout(${limit}s)"
  elif [ $rc -ne 0 ]; then status=failed; fi
  say "$(printf '%-26s %-14s %4ss' "$name" "$status" "$dt")"
  if [ "$status" != passed ]; then
    [ "$status" = skipped ] || FAILED=1
    { grep -m 4 -iE 'error|fail|mismatch|not found|abort|fault|illegal|cannot|refuse|^synco [a-z]+:' "$LOGS/$name.log" ||
        tail -n 3 "$LOGS/$name.log"; } |
      cut -c1-220 | sed 's/^/    | /' | tee -a "$SUMMARY_TXT"
  fi
  PARTS+=("{\"part\":$(json_str "$name"),\"status\":\"$status\",\"rc\":$rc,\"seconds\":$dt}")
  [ "$status" = passed ]
}

skip_part() { # NAME REASON
  say "$(printf '%-26s %-14s' "$1" skipped) ($2)"
  PARTS+=("{\"part\":$(json_str "$1"),\"status\":\"skipped\",\"reason\":$(json_str "$2")}")
}

figure() { # NAME JSON_VALUE
  FIGURES+=("$(json_str "$1"):$2")
}

finish() {
  local gpu
  gpu=$(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
  {
    printf '{"tool":"tools/gpu_check.sh","tree":%s,"gpu":%s,"date":%s,"seconds":%d,"ok":%s,\n' \
      "$(json_str "$(cat "$BUNDLE/TREE" 2>/dev/null || echo unknown)")" "$(json_str "${gpu:-none}")" \
      "$(json_str "$(date -u +%FT%TZ)")" $(( $(date +%s) - START )) "$([ $FAILED -eq 0 ] && echo true || echo false)"
    printf ' "cuda_libs":%s,\n' "$(json_str "${CUDA_DIRS:-}")"
    printf ' "parts":[\n  %s\n ],\n' "$(IFS=$'\n'; echo "${PARTS[*]:-}" | paste -sd, - | sed 's/},{/},\n  {/g')"
    printf ' "figures":{%s}}\n' "$(IFS=,; echo "${FIGURES[*]:-}")"
  } > "$OUT/summary.json"
  cp "$OUT/summary.json" "$LOGS/"
  tar -C "$WORK" -czf "$OUT/logs.tar.gz" logs 2>/dev/null
  say "gpu_check: $([ $FAILED -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - START ))s;" \
    "\$OUT: summary.json, logs.tar.gz"
  echo "figures: {$(IFS=,; echo "${FIGURES[*]:-}")}"
  rm -rf "$WORK"
}
trap finish EXIT

say "gpu_check $( [ $DRY = 1 ] && echo '(dry run, no GPU expected)') tree $(tree_id) on $(hostname), $(nproc) cores"
GPU_SEEN=0
nvidia-smi -L > /dev/null 2>&1 && GPU_SEEN=1
nvidia-smi > "$LOGS/nvidia-smi.log" 2>&1 && say "GPU: $(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader | head -1)" ||
  say "nvidia-smi: no GPU seen"

# ---- the bundle --------------------------------------------------------------------------------------------------
if [ ! -f "$BUNDLE/bundle.tar.gz" ]; then
  say "gpu-bundle/bundle.tar.gz is missing: run tools/gpu_check.sh --prepare here and carry gpu-bundle"
  FAILED=1
  exit 1
fi
if [ "$(cat "$BUNDLE/TREE" 2>/dev/null)" != "$(tree_id)" ]; then
  say "gpu-bundle was built from other sources ($(cat "$BUNDLE/TREE" 2>/dev/null || echo unknown)); files that differ:"
  { sha256sum --quiet -c "$BUNDLE/MANIFEST" 2>&1 || true; } | head -20 | sed 's/^/    | /' | tee -a "$SUMMARY_TXT"
  tree_files | awk '{print $2}' > "$LOGS/tree_here.txt"
  if [ "${GPU_CHECK_ALLOW_STALE:-0}" != 1 ]; then
    say "refused: run --prepare again (GPU_CHECK_ALLOW_STALE=1 runs it anyway)"
    FAILED=1
    exit 1
  fi
  say "GPU_CHECK_ALLOW_STALE=1: running the stale bundle anyway"
fi
tar -C "$WORK" -xzf "$BUNDLE/bundle.tar.gz"
BIN=$WORK/synco-gpu

# cuBLAS and cuDNN: the system's CUDA first, then PyTorch's pip packages (nvidia/*/lib).
CUDA_DIRS=""
# (cuDNN loads its parts at run time, so they are looked for too: a partial cuDNN would abort at the first call)
for lib in libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 libcudnn_graph.so.9 libcudnn_ops.so.9 libcudnn_cnn.so.9 \
  libcudnn_engines_precompiled.so.9 libnvrtc.so.13; do
  f=$(find /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu \
        /opt/torch/.venv/lib/python3*/site-packages/nvidia /usr/local/lib/python3*/dist-packages/nvidia \
        -maxdepth 3 -name "$lib" 2>/dev/null | head -1)
  if [ -n "$f" ]; then
    d=$(dirname "$f")
    case ":$CUDA_DIRS:" in *":$d:"*) ;; *) CUDA_DIRS=${CUDA_DIRS:+$CUDA_DIRS:}$d ;; esac
    say "found $lib in $d"
  else
    say "not found: $lib"
  fi
done
# The bundle's libraries are for its binaries alone (PyTorch and the shell tools keep the machine's): each binary
# is called through a wrapper in $WORK/bin that sets the library path.
LDP="$BIN/lib${CUDA_DIRS:+:$CUDA_DIRS}"
missing=$(LD_LIBRARY_PATH=$LDP ldd "$BIN"/synco "$BIN"/test_* 2>&1 | grep 'not found' | sort -u | tr -s ' \t\n' ' ')
[ -n "$missing" ] && say "the bundle misses: $missing"
mkdir -p "$WORK/bin"
for t in $BIN_TARGETS; do
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s" "$@"\n' "$LDP" "$BIN/$t" > "$WORK/bin/$t"
  chmod +x "$WORK/bin/$t"
done
# The bundled Open MPI (synco-gpu/mpi), relocated by the environment bundle_mpi_argv gives: bundle_mpirun runs it, and
# so does the wrapper $WORK/bin/bundle_mpirun (for part, whose timeout runs programs, not shell functions).
mapfile -t MPIRUN < <(bundle_mpi_argv "$BIN" "$LDP")
bundle_mpirun() { env "${MPIRUN[@]}" "$@"; }
{ echo '#!/bin/sh'; printf 'exec env'; printf " '%s'" "${MPIRUN[@]}"; echo ' "$@"'; } > "$WORK/bin/bundle_mpirun"
chmod +x "$WORK/bin/bundle_mpirun"
BIN=$WORK/bin

# ---- 1. info, 2. op tests, 3. whole steps ------------------------------------------------------------------------
part info 20 "$BIN/synco" info
part test_neg_kernels 30 "$BIN/test_neg_kernels"
part test_cuda_smem 10 "$BIN/test_cuda_smem"
# a failure is run again on the first BN and selection kernels (SYNCO_CUDA_BN=block SYNCO_CUDA_SEL=thread, run on
# the H200 before the split BN and the block's selection were written): which of the two is at fault
FIRST_KERNELS="SYNCO_CUDA_BN=block SYNCO_CUDA_SEL=thread"
part test_cuda_ops 60 env -u SYNCO_CUDA_TF32 "$BIN/test_cuda_ops" ||
  part test_cuda_ops_first_kernels 60 env -u SYNCO_CUDA_TF32 $FIRST_KERNELS "$BIN/test_cuda_ops"
part test_cuda_step 60 env -u SYNCO_CUDA_TF32 "$BIN/test_cuda_step" ||
  part test_cuda_step_first_kernels 60 env -u SYNCO_CUDA_TF32 $FIRST_KERNELS "$BIN/test_cuda_step"
part test_cuda_step_tf32 45 env SYNCO_CUDA_TF32=1 "$BIN/test_cuda_step"
part test_cuda_step_bf16 45 env -u SYNCO_CUDA_TF32 SYNCO_CUDA_BF16=1 "$BIN/test_cuda_step"
part test_cuda_step_bf16_nchw 45 env -u SYNCO_CUDA_TF32 SYNCO_CUDA_BF16=1 SYNCO_CUDA_NHWC=0 "$BIN/test_cuda_step"

# ---- 4. benchmarks: ResNet-18 CIFAR stem, batch 512, K 4096, default counts, next to PyTorch in the same call ----
bench_json() { grep -m1 '^{' "$LOGS/$1.log" 2>/dev/null; }
ips() { bench_json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_s"])' 2>/dev/null; }
for run in moco:tf32 synco:tf32 moco:bf16 synco:bf16 moco:fp32 synco:fp32; do
  method=${run%:*} prec=${run#*:}
  part "bench_${method}_${prec}" 40 "$BIN/synco" bench step --precision "$prec" \
    --device cuda --method "$method" --arch resnet18 --cifar-stem --batch 512 --moco-k 4096 --warmup 5 --iters 20 \
    --json --no-memory-check
  v=$(ips "bench_${method}_${prec}") && [ -n "$v" ] && figure "synco_${method}_${prec}_images_per_s" "$v"
done
# bf16 with fp32 NCHW activations (each convolution converting its operands), against the NHWC bf16 ones above
part bench_synco_bf16_nchw 40 env SYNCO_CUDA_NHWC=0 "$BIN/synco" bench step --precision bf16 --device cuda \
  --method synco --arch resnet18 --cifar-stem --batch 512 --moco-k 4096 --warmup 5 --iters 20 --json --no-memory-check
v=$(ips bench_synco_bf16_nchw) && [ -n "$v" ] && figure synco_synco_bf16_nchw_images_per_s "$v"
# the first BN kernels (one block per slice) and selection (its last phase on one thread), against the split BN and
# the block's selection above: the same step, SYNCO_CUDA_BN=block SYNCO_CUDA_SEL=thread
part bench_synco_tf32_first_kernels 40 env $FIRST_KERNELS "$BIN/synco" bench step --precision tf32 --device cuda \
  --method synco --arch resnet18 --cifar-stem --batch 512 --moco-k 4096 --warmup 5 --iters 20 --json --no-memory-check
v=$(ips bench_synco_tf32_first_kernels) && [ -n "$v" ] && figure synco_synco_tf32_first_kernels_images_per_s "$v"
# where the SynCo step's time goes, layer by layer (bench --layers: each op between two waits for the GPU, in the
# second, synchronized pass): the line by kind of op and the 8 largest rows
part bench_synco_tf32_layers 40 "$BIN/synco" bench step --precision tf32 --device cuda --method synco --arch resnet18 \
  --cifar-stem --batch 512 --moco-k 4096 --warmup 5 --iters 10 --layers --no-memory-check
python3 - "$LOGS/bench_synco_tf32_layers.log" <<'PY' 2>&1 | tee -a "$SUMMARY_TXT"
import re, sys
lines = open(sys.argv[1]).read().splitlines()
rows = [l for l in lines if re.match(r"^    \S.* +\d+\.\d+%$", l)]
by = [l for l in lines if l.startswith("  by op   :")]
if not by: sys.exit("    layers: no table")
print("    layers:" + by[0][len("  by op   :"):])
for l in sorted(rows, key=lambda l: -float(l.split()[-2]))[:8]: print("    |" + l[3:])
PY
if python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  for run in moco:"" synco:--authors-loop; do
    method=${run%%:*} extra=${run#*:}
    # shellcheck disable=SC2086
    part "torch_${method}_bf16" 60 env -u LD_LIBRARY_PATH python3 tools/bench_torch.py step --device cuda --precision bf16 --channels-last \
      --method "$method" $extra --arch resnet18 --cifar-stem --batch 512 --moco-k 4096 --threads "$(nproc)" \
      --warmup 5 --iters 20 --no-gemm --json
    v=$(ips "torch_${method}_bf16") && [ -n "$v" ] && figure "torch_${method}_bf16_images_per_s" "$v"
  done
else
  skip_part torch_bench "python3's torch does not see a GPU here"
fi

# ---- 4b. where a SynCo step's GPU time goes: Nsight Compute, one metric (each kernel's duration), 2 steps ---------
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ] && [ $GPU_SEEN = 1 ]; then
  part profile_synco_tf32 90 "$NCU" --clock-control none --profile-from-start off \
    --metrics gpu__time_duration.sum --csv --page raw --log-file "$LOGS/profile.csv" "$BIN/synco" bench step \
    --device cuda --precision tf32 --method synco --arch resnet18 --cifar-stem --batch 512 --moco-k 4096 --warmup 3 \
    --iters 2 --profile 2 --json --no-memory-check
  # per kernel: calls, total time and share of the two steps, the 14 largest
  python3 - "$LOGS/profile.csv" <<'PY' 2>&1 | tee -a "$SUMMARY_TXT"
import csv, sys, collections
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
if len(rows) < 3: sys.exit("    profile: no kernel rows")
head = rows[0]; ki, ti = head.index("Kernel Name"), head.index("gpu__time_duration.sum")
unit = rows[1][ti] or "ns"; scale = {"ns": 1e-3, "usecond": 1, "us": 1, "msecond": 1e3, "ms": 1e3}.get(unit, 1e-3)
tot, calls = collections.Counter(), collections.Counter()
for r in rows[2:]:
    try: v = float(r[ti].replace(",", ""))
    except ValueError: continue
    name = r[ki].split("(")[0].split("<")[0][:58]; tot[name] += v * scale; calls[name] += 1
all_us = sum(tot.values())
print("    profile: %d kernels, %.2f ms of GPU time per step" % (sum(calls.values()), all_us / 2e3))
for name, us in tot.most_common(14):
    print("    | %-58s %5d calls %8.0f us %5.1f%%" % (name, calls[name], us, 100 * us / all_us))
PY
else
  skip_part profile "no ncu (Nsight Compute) or no GPU here"
fi

# ---- 5. pretraining on the GPU, checkpoints and resume, every evaluation command --------------------------------
J=$(nproc)
S="$BIN/synco"
SMALL=$WORK/small # 100 training images per class of the bundled set, and its val
mkdir -p "$SMALL/train" "$SMALL/val"
for d in data/cifar10-small/train/*/; do
  c=$(basename "$d")
  mkdir -p "$SMALL/train/$c" "$SMALL/val/$c"
  ls "$d" | head -100 | while read -r f; do cp "$d$f" "$SMALL/train/$c/"; done
  ls "data/cifar10-small/val/$c" | head -50 | while read -r f; do cp "data/cifar10-small/val/$c/$f" "$SMALL/val/$c/"; done
done
R=$WORK/runs
TINY="--recipe cifar --width 16 -b 128 --moco-k 512 --epochs 2 --knn-every 1 --val $SMALL/val -j $J --seed 3"
part pretrain_gpu 60 "$S" pretrain --device cuda --data "$SMALL/train" $TINY --stop-epoch 1 --out "$R/g"
part resume_gpu 40 "$S" pretrain --device cuda --resume "$R/g"
part pretrain_gpu_bf16 60 bash -c "'$S' pretrain --device cuda --precision bf16 --data '$SMALL/train' $TINY --stop-epoch 1 --out '$R/b' &&
  '$S' pretrain --device cuda --precision fp32 --resume '$R/b'"
part pretrain_cpu_to_gpu 90 bash -c "'$S' pretrain --backend ref --data '$SMALL/train' $TINY --stop-epoch 1 --out '$R/c' &&
  '$S' pretrain --device cuda --resume '$R/c'"
part resume_gpu_on_cpu 90 bash -c "'$S' pretrain --device cuda --data '$SMALL/train' $TINY --stop-epoch 1 --out '$R/gc' &&
  '$S' pretrain --backend ref --resume '$R/gc'"
CK=$R/g/last.safetensors
EV="--train $SMALL/train --val $SMALL/val"
for dev in cuda ref; do
  part "knn_$dev" 30 "$S" knn --device $dev --ckpt "$CK" $EV
done
a=$(grep -m1 -oE 'top-1 [0-9.]+' "$LOGS/knn_cuda.log" | cut -d' ' -f2)
b=$(grep -m1 -oE 'top-1 [0-9.]+' "$LOGS/knn_ref.log" | cut -d' ' -f2)
[ -n "$a" ] && [ -n "$b" ] && figure knn_small_cuda_vs_ref "[${a},${b}]"
part linear_cuda 40 "$S" linear --device cuda --ckpt "$CK" $EV --fast --epochs 3
part finetune_cuda 40 "$S" finetune --device cuda --ckpt "$CK" $EV --labels 10% --epochs 2
part embed_cuda 20 "$S" embed --device cuda --ckpt "$CK" --data "$SMALL/val" --out "$WORK/emb.npy"
part analyze_cuda 40 "$S" analyze --device cuda --ckpt "$CK" --data "$SMALL/val" --out "$WORK/report"
part export 20 "$S" export --ckpt "$CK" --out "$WORK/export.safetensors"

# ---- 5b. data-parallel on the one GPU: the bundled Open MPI, 2 ranks sharing GPU 0 -------------------------------
# Under mpirun each rank takes GPU local_rank % GPUs, so both take GPU 0, and their collectives go through host
# copies (NCCL refuses two ranks on one GPU; the bundle has none). As tests/e2e/mpi_pretrain.sh, on 20 images (one
# step of 16 an epoch: this tiny network drifts apart on rounding after a few steps; K 16, below the 20), fp32 and
# MoCo-v2 (SynCo's hardest negatives would switch on a rounding difference): 2 ranks x 8 (--bn-splits 1) against
# 1 process x 16 with --bn-splits 2 (the same BN groups and key shuffle), within 1e-4 + 1e-3*|ref|; --key-shuffle
# indices and --bucket-mb 0 bit for bit against the 2 ranks (a difference is then checked within the tolerance, to
# tell an algorithm choice from a fault). cuDNN's algorithms come from its heuristics here
# (SYNCO_CUDA_CONV_SEARCH=heuristic), not from timing them, which two ranks timing on one GPU at once, or two runs,
# could settle differently. The same runs on the strict backend (host-staged collectives as here) pass these checks
# on the CPU.
DP_DATA=$WORK/dp_train
for d in data/cifar10-small/train/*/; do
  files=("$d"*)
  mkdir -p "$DP_DATA/$(basename "$d")"
  cp "${files[@]:0:2}" "$DP_DATA/$(basename "$d")/"
done
# compare_ckpt's python (tests/e2e/common.inc): A B ATOL RTOL NAMES
sed -n '/^compare_ckpt() {/,/^PY$/p' tests/e2e/common.inc | sed '1d;$d' > "$WORK/compare_ckpt.py"
dp_compare() { # NAME RUN_A RUN_B ATOL RTOL: the last checkpoints of two runs agree; skipped when one left none
  local a=$R/$2/last.safetensors b=$R/$3/last.safetensors
  if [ ! -f "$a" ] || [ ! -f "$b" ]; then
    skip_part "$1" "no checkpoint from $([ -f "$a" ] && echo "$3" || echo "$2")"
    return 0
  fi
  part "$1" 30 python3 "$WORK/compare_ckpt.py" "$a" "$b" "$4" "$5" ""
}
DP=(--device cuda --precision fp32 --data "$DP_DATA" --arch resnet18 --width 8 --cifar-stem --image-size 32
  --method moco --moco-k 16 -b 16 --epochs 2 --warmup-epochs 0 --knn-every 0 --threads 1 --workers 1 --seed 9
  --print-freq 1)
v=$(bundle_mpirun --version 2>&1) || true
v=${v%%$'\n'*}
say "    bundled mpirun: ${v:-no output}"
export SYNCO_CUDA_CONV_SEARCH=heuristic # mpirun's ranks inherit it
part dp_one_bn2 60 "$S" pretrain "${DP[@]}" --bn-splits 2 --out "$R/dp_one"
part dp_mpi2 90 "$BIN/bundle_mpirun" -np 2 "$S" pretrain "${DP[@]}" --bn-splits 1 --out "$R/dp_two"
for l in processes collectives; do # what the ranks took: their number and transport, and the collectives' path
  line=$(grep -m1 "^$l: " "$LOGS/dp_mpi2.log" 2>/dev/null || true)
  say "$(printf '    %s' "${line:-no \"$l:\" line in dp_mpi2.log}" | cut -c1-220)"
  if [ -n "$line" ]; then figure "dp_mpi2_$l" "$(json_str "${line#*: }")"; fi
done
dp_compare dp_mpi2_vs_one dp_two dp_one 1e-4 1e-3
part dp_mpi2_ix 90 "$BIN/bundle_mpirun" -np 2 "$S" pretrain "${DP[@]}" --bn-splits 1 --key-shuffle indices \
  --out "$R/dp_ix"
dp_compare dp_mpi2_ix_bitwise dp_ix dp_two 0 0 || dp_compare dp_mpi2_ix_within_tol dp_ix dp_two 1e-4 1e-3
part dp_mpi2_bucket0 90 "$BIN/bundle_mpirun" -np 2 "$S" pretrain "${DP[@]}" --bn-splits 1 --bucket-mb 0 \
  --out "$R/dp_b0"
dp_compare dp_mpi2_bucket0_bitwise dp_b0 dp_two 0 0 || dp_compare dp_mpi2_bucket0_within_tol dp_b0 dp_two 1e-4 1e-3
unset SYNCO_CUDA_CONV_SEARCH

# ---- 6. learning: MoCo's CIFAR recipe on 45,000 / 5,000 images, kNN every 5 epochs ------------------------------
if [ -f "$BUNDLE/cifar10-train.tar.gz" ] && [ "$(left)" -gt 60 ]; then
  C10=$WORK/c10
  mkdir -p "$C10/val"
  tar -C "$C10" -xzf "$BUNDLE/cifar10-train.tar.gz"
  for d in "$C10"/train/*/; do # the last 500 images of each class (by name) are held out
    c=$(basename "$d")
    mkdir -p "$C10/val/$c"
    ls "$d" | sort | tail -500 | while read -r f; do mv "$d$f" "$C10/val/$c/"; done
  done
  # method:precision; bf16 first (never run yet; the TF32 figures are on record: 46.5 / 50.7 / 52.3 for MoCo-v2)
  for run in ${GPU_CHECK_LEARN:-moco:bf16 synco:bf16 moco:tf32 synco:tf32}; do
    method=${run%:*} prec=${run#*:} name=${run/:/_}
    part "learn_${name}" 400 "$S" pretrain --device cuda --precision "$prec" --data "$C10/train" --val "$C10/val" \
      --recipe cifar --method "$method" --epochs 15 --knn-every 5 -j "$J" --out "$R/learn_$name"
    k=$(grep -oE '"knn_top1":[0-9.]+' "$R/learn_$name/log.jsonl" 2>/dev/null | cut -d: -f2 | paste -sd, -)
    figure "learn_${name}_knn_top1" "[${k}]"
    cp "$R/learn_$name/log.jsonl" "$LOGS/learn_${name}.jsonl" 2>/dev/null
  done
else
  skip_part learning "$([ -f "$BUNDLE/cifar10-train.tar.gz" ] && echo "under 60 s of the budget left" || echo "no CIFAR-10 tarball in gpu-bundle")"
fi
[ $DRY = 1 ] && say "dry run: the GPU parts above are expected to fail or skip without a GPU"
exit $FAILED
