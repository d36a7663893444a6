#!/usr/bin/env bash
# Self-test of the GPU bundle (tools/gpu_check.sh --prepare): proves, here and without a GPU, that
# gpu-bundle/bundle.tar.gz runs on a machine that has nothing but the C runtime and CUDA's cuBLAS/cuDNN (the GPU
# machine: Ubuntu 24.04, CUDA libraries only), so no device time is lost to a library the bundle forgot.
#
# How: the bundle is unpacked under /opt/synco-gpu of a bare root in a temp dir, which holds nothing else but the
# dynamic loader and the C runtime libraries that match gpu_check.sh's SYSTEM_LIBS (copied from this machine, as
# ldd resolves them for the bundle's binaries), and /selftest/env (this machine's env, which needs libc alone) to
# give the programs there an environment of their own. The binaries run there through chroot, with env -i (none of
# this machine's variables), no shell, no /proc or /sys, and before C no /dev (nothing is mounted; none was needed):
#   A. missing libraries: with LD_TRACE_LOADED_OBJECTS=1 and LD_LIBRARY_PATH=/opt/synco-gpu/lib the loader lists each
#      binary's dependencies (as ldd does); every name it does not find must match gpu_check.sh's CUDA_LIBS (what
#      the GPU machine provides). Any other missing name fails, named.
#   B. start and stop at the missing GPU: this machine's CUDA stack that the binaries need (cuBLAS, cuBLASLt, cuDNN,
#      as ldd finds them, cuDNN's dlopened parts, and whatever those need beyond the C runtime and the bundle) goes to
#      /usr/local/cuda-stack (hard links where possible), and with LD_LIBRARY_PATH=/opt/synco-gpu/lib:
#      /usr/local/cuda-stack: `synco info` reports the CUDA backend, test_neg_kernels and test_cuda_smem pass,
#      test_cuda_ops and test_cuda_step skip (77, no GPU), and `synco pretrain --device cuda` fails with a one-line
#      "no usable GPU" message, not a crash.
#   C. the bundled Open MPI: the words of gpu_check.sh's bundle_mpi_argv (the environment that relocates Open MPI and
#      PMIx to /opt/synco-gpu/mpi, then mpirun --allow-run-as-root --oversubscribe) run `-np 2 synco pretrain
#      --backend strict` on 70 images: it exits 0, its log says "processes: 2 (mpi)" and it leaves a checkpoint, so
#      the relocated mpirun starts, both ranks join and the collectives (staged through host copies, as on the GPU)
#      work where no MPI is installed. The root gets what a machine has and Open MPI uses: /tmp (its session folder),
#      /dev/shm (a plain folder: the shared-memory transport's segments) and /dev/null (a device node, made with
#      mknod where allowed: rank 1's silenced output), and HOME=/tmp (PMIx looks up the home folder, which without
#      HOME or /etc/passwd crashes it).
#
# Usage: tools/gpu_bundle_selftest.sh [--prepare]
#   runs tools/gpu_check.sh --prepare first when --prepare is given or gpu-bundle/bundle.tar.gz is missing (that
#   needs nvcc: SKIP, exit 77, without one). GPU_BUNDLE_TAR=FILE tests another bundle.tar.gz instead.
# Needs root (chroot); exit 77 without it. Prints one line per check (ok: / FAIL:); exit 0 when all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARBALL=${GPU_BUNDLE_TAR:-$ROOT/gpu-bundle/bundle.tar.gz}
BINS="synco test_cuda_ops test_cuda_step test_neg_kernels test_cuda_smem"

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "chroot needs root"
if ! command -v chroot > /dev/null || ! command -v ldd > /dev/null; then skip "no chroot or ldd here"; fi

# The regexes of what a bundle may leave to the machine, read from gpu_check.sh itself so that both agree.
SYSTEM_LIBS='' CUDA_LIBS=''
eval "$(grep -E '^(SYSTEM_LIBS|CUDA_LIBS)=' tools/gpu_check.sh)"
if [ -z "$SYSTEM_LIBS" ] || [ -z "$CUDA_LIBS" ]; then
  echo "FAIL: SYSTEM_LIBS / CUDA_LIBS not found in tools/gpu_check.sh"
  exit 1
fi

# ---- 1. the bundle ---------------------------------------------------------------------------------------------
if [ "${1:-}" = "--prepare" ] || [ ! -f "$TARBALL" ]; then
  command -v orterun > /dev/null || skip "no Open MPI here (orterun), which the bundle carries"
  if [ -z "${CUDACXX:-}" ] && ! command -v nvcc > /dev/null; then # CMake takes the CUDA compiler from CUDACXX
    [ -x /usr/local/cuda/bin/nvcc ] || skip "no nvcc"
    export CUDACXX=/usr/local/cuda/bin/nvcc
  fi
  tools/gpu_check.sh --prepare || { echo "FAIL: tools/gpu_check.sh --prepare"; exit 1; }
fi
[ -f "$TARBALL" ] || { echo "FAIL: no $TARBALL"; exit 1; }

T=$(mktemp -d /tmp/gpu-bundle-selftest.XXXXXX)
trap 'rm -rf "$T"' EXIT # nothing is mounted in the root, so this removes files only (hard links: the links)
R=$T/root
mkdir -p "$R/opt" "$R/usr/local/cuda-stack"
tar -C "$R/opt" -xzf "$TARBALL"
OPT=$R/opt/synco-gpu
for b in $BINS mpi/bin/mpirun; do
  [ -x "$OPT/$b" ] || { echo "FAIL: the bundle has no synco-gpu/$b"; exit 1; }
done

FAILS=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# deps FILE...: "NAME PATH" for each library this machine's ldd resolves for FILE (the loader too: NAME is then
# ld-linux-x86-64.so.2). Missing ones (no path) are left out.
deps() {
  local f out
  for f in "$@"; do
    out=$(ldd "$f") || { echo "ldd $f failed" >&2; return 1; }
    awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }
         $1 ~ /^\// { n = $1; sub(/.*\//, "", n); print n, $1 }' <<< "$out"
  done
}
# place PATH DEST: a hard link when on the same file system (cuBLASLt alone is ~500 MB), else a copy
place() {
  local src
  src=$(readlink -f "$1")
  ln "$src" "$2" 2> /dev/null || cp "$src" "$2"
}

# Here, ldd finds the CUDA libraries through ld.so.conf or the usual CUDA folders.
HOST_LDP=$OPT/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin_paths=()
for b in $BINS; do bin_paths+=("$OPT/$b"); done
components=("$OPT"/mpi/lib/openmpi/*.so "$OPT"/mpi/lib/pmix/*.so)
[ -e "${components[0]}" ] || components=()
bin_paths+=("$OPT/mpi/bin/mpirun" "${components[@]}")
bin_deps=$(LD_LIBRARY_PATH=$HOST_LDP deps "${bin_paths[@]}" | sort -u)

# The CUDA stack the binaries need, and what it needs beyond the C runtime (ldd lists dependencies transitively).
# cuDNN 9's libcudnn.so.9 is a front that dlopens its parts (libcudnn_graph.so.9, ..._ops, ..._cnn, ...), which ldd
# cannot see; without them `synco info` aborts in cudnnGetVersion. So each CUDA library libX.so.N brings the
# libX_*.so.N beside it.
cuda_pairs=$(awk -v re="$CUDA_LIBS" '$1 ~ re' <<< "$bin_deps")
while read -r name path; do
  [ -n "$name" ] || continue
  for f in "$(dirname "$path")/${name%%.so*}"_*".so${name#*.so}"; do
    if [ -e "$f" ] && [[ $(basename "$f") =~ $CUDA_LIBS ]]; then cuda_pairs+=$'\n'"$(basename "$f") $f"; fi
  done
done <<< "$cuda_pairs"
cuda_paths=$(awk '{ print $2 }' <<< "$cuda_pairs")
stack_deps=''
if [ -n "$cuda_paths" ]; then
  # shellcheck disable=SC2086 # paths of libraries, no blanks
  stack_deps=$(LD_LIBRARY_PATH=$HOST_LDP deps $cuda_paths | sort -u)
fi
stack_pairs=$(printf '%s\n%s\n' "$cuda_pairs" "$stack_deps" |
  awk -v sys="$SYSTEM_LIBS" -v opt="$OPT/" 'NF == 2 && $1 !~ sys && index($2, opt) != 1' | sort -u -k1,1)

# ---- 2. the bare root: the loader and the C runtime of this machine, at the paths ldd gives, and the bundle -------
runtime=$(printf '%s\n%s\n' "$bin_deps" "$stack_deps" | awk -v sys="$SYSTEM_LIBS" 'NF == 2 && $1 ~ sys' | sort -u)
LOADER=''
while read -r name path; do
  mkdir -p "$R$(dirname "$path")"
  cp -L "$path" "$R$path"
  [ "$name" = ld-linux-x86-64.so.2 ] && LOADER=$path
done <<< "$runtime"
[ -n "$LOADER" ] || { echo "FAIL: ldd names no loader (ld-linux-x86-64.so.2) for the bundle's binaries"; exit 1; }
# The one program of this machine in the root: env (it needs libc alone), to set the environment inside the chroot.
# LD_TRACE_LOADED_OBJECTS=1 given to chroot would make this machine's loader trace the chroot program itself, and
# the loader's own --list mode stops at the first missing library (glibc 2.36) instead of naming them all.
mkdir -p "$R/selftest"
cp -L "$(command -v env)" "$R/selftest/env"
# inroot VAR=VALUE... PROGRAM ARGS...: PROGRAM run in the bare root with only the VARs as its environment
inroot() { chroot "$R" /selftest/env -i "$@"; }
bundled=("$OPT"/lib/*)
echo "bare root: $(awk '{ print $1 }' <<< "$runtime" | paste -sd' ' -) + /opt/synco-gpu (${bundled[*]##*/})"

# ---- A. missing libraries --------------------------------------------------------------------------------------
# With LD_TRACE_LOADED_OBJECTS=1 the loader lists the dependencies (as ldd does) instead of running the program,
# and prints "NAME => not found" for each one it cannot find. A shared object (Open MPI's and PMIx's components, which
# mpirun and libmpi dlopen) is given to the loader as its program, as ldd does.
# traced PATH...: sets problem to what is wrong with PATH's libraries in the bare root ('' when nothing), missing to
# the CUDA libraries it does not find there
traced() {
  local rc=0 out m other='' versions
  out=$(inroot LD_TRACE_LOADED_OBJECTS=1 LD_LIBRARY_PATH=/opt/synco-gpu/lib "$@" 2>&1) || rc=$?
  missing=$(awk '$2 == "=>" && $3 == "not" { print $1 }' <<< "$out" | sort -u | paste -sd' ' -)
  for m in $missing; do [[ $m =~ $CUDA_LIBS ]] || other="$other $m"; done
  versions=$(grep -E "version .* not found|error while loading" <<< "$out" || true)
  problem=''
  if [ -n "$other" ]; then
    problem="the bundle misses$other (not in CUDA_LIBS; found nowhere in the bare root)"
  elif [ -n "$versions" ]; then
    problem=$(head -1 <<< "$versions")
  elif [ $rc -ne 0 ] && [ -z "$missing" ]; then
    problem="the loader exited $rc: $(head -3 <<< "$out" | paste -sd' ' -)"
  fi
}
for b in $BINS mpi/bin/mpirun; do
  traced "/opt/synco-gpu/$b"
  if [ -n "$problem" ]; then
    bad "A $b: $problem"
  else
    ok "A $b: every library found in the bare root but CUDA's (${missing:-none})"
  fi
done
n=0 first_bad=''
for f in "${components[@]}"; do
  traced "$LOADER" "${f#"$R"}"
  n=$((n + 1))
  if [ -n "$problem" ] && [ -z "$first_bad" ]; then first_bad="${f#"$OPT"/}: $problem"; fi
done
if [ $n -eq 0 ]; then
  bad "A mpi: no MCA components in synco-gpu/mpi/lib/openmpi or pmix"
elif [ -n "$first_bad" ]; then
  bad "A mpi components: $first_bad"
else
  ok "A mpi components: $n of Open MPI and PMIx, every library found in the bare root"
fi

# ---- B. start and stop at the missing GPU ------------------------------------------------------------------------
if [ -z "$cuda_pairs" ]; then
  bad "B: ldd finds no CUDA library (CUDA_LIBS) for the bundle's binaries here: not a CUDA build, or no cuBLAS/cuDNN"
else
  while read -r name path; do place "$path" "$R/usr/local/cuda-stack/$name"; done <<< "$stack_pairs"
  echo "cuda stack: $(awk '{ print $1 }' <<< "$stack_pairs" | paste -sd' ' -)"
  # A small ImageFolder, only for pretrain to have a --data (it stops at the device before reading it).
  for c in airplane automobile; do
    mkdir -p "$R/data/train/$c"
    files=("$ROOT/data/cifar10-small/train/$c"/*)
    cp "${files[@]:0:8}" "$R/data/train/$c/"
  done
  # run NAME ARGS...: the bundle's binary NAME in the bare root, with the CUDA stack; sets rc and out
  run() {
    local b=$1
    shift
    rc=0
    out=$(timeout -k 5 60 chroot "$R" /selftest/env -i LD_LIBRARY_PATH=/opt/synco-gpu/lib:/usr/local/cuda-stack \
      "/opt/synco-gpu/$b" "$@" 2>&1) || rc=$?
  }
  first() { head -3 <<< "$out" | cut -c1-200 | paste -sd'|' -; }

  run synco info
  if [ $rc -eq 0 ] && grep -q '^cuda: built in' <<< "$out"; then
    ok "B synco info: $(grep -m1 -E '^CUDA runtime' <<< "$out" || echo 'cuda: built in')"
  else
    bad "B synco info: exit $rc, no 'cuda: built in': $(first)"
  fi
  for b in test_neg_kernels test_cuda_smem; do
    run "$b"
    if [ $rc -eq 0 ]; then ok "B $b: passed"; else bad "B $b: exit $rc: $(first)"; fi
  done
  for b in test_cuda_ops test_cuda_step; do
    run "$b"
    if [ $rc -eq 77 ] && grep -q 'SKIP' <<< "$out"; then
      ok "B $b: skipped at the missing GPU ($(grep -m1 SKIP <<< "$out" | cut -c1-120))"
    else
      bad "B $b: exit $rc (expected 77, SKIP: no GPU): $(first)"
    fi
  done
  run synco pretrain --device cuda --data /data/train --epochs 1 -b 8 --width 8 --out /runs/x
  msg=$(grep 'no usable GPU' <<< "$out" || true)
  if [ $rc -ge 1 ] && [ $rc -lt 124 ] && [ -n "$msg" ] && [ "$(wc -l <<< "$msg")" -eq 1 ]; then
    ok "B synco pretrain --device cuda: exit $rc, $msg"
  else
    bad "B synco pretrain --device cuda: exit $rc (expected 1-123 and one 'no usable GPU' line): $(first)"
  fi

  # ---- C. the bundled Open MPI: 2 ranks, their collectives staged through host copies ----------------------------
  # What gpu_check.sh's bundle_mpirun runs (the words of bundle_mpi_argv), in the bare root: mpirun, PMIx and the
  # ranks' libmpi find their parts through the environment alone (this machine's /usr/lib/.../openmpi and
  # /etc/openmpi are not there), the ranks join, and the strict backend (memory the host and MPI must not touch, as
  # a GPU's) stages every collective through host copies, as --device cuda does on the one GPU. (/tmp, /dev/shm,
  # /dev/null, HOME: above)
  mkdir -p "$R/tmp" "$R/dev/shm" "$R/data/mpi"
  chmod 1777 "$R/tmp" "$R/dev/shm"
  mknod -m 666 "$R/dev/null" c 1 3 2> /dev/null || true
  for d in "$ROOT"/data/cifar10-small/train/*/; do # 7 images of each class: 70 (above K), 4 steps of 16
    files=("$d"*)
    mkdir -p "$R/data/mpi/$(basename "$d")"
    cp "${files[@]:0:7}" "$R/data/mpi/$(basename "$d")/"
  done
  eval "$(sed -n '/^bundle_mpi_argv() {$/,/^}$/p' tools/gpu_check.sh)"
  if ! declare -F bundle_mpi_argv > /dev/null; then
    bad "C: no bundle_mpi_argv in tools/gpu_check.sh"
  else
    mapfile -t mpirun < <(bundle_mpi_argv /opt/synco-gpu /opt/synco-gpu/lib:/usr/local/cuda-stack)
    rc=0
    out=$(chroot "$R" /selftest/env -i HOME=/tmp "${mpirun[@]}" -np 2 /opt/synco-gpu/synco pretrain \
      --backend strict --data /data/mpi --arch resnet18 --width 8 --cifar-stem --image-size 32 --moco-k 64 -b 16 \
      --n-hard 16 --epochs 1 --warmup-epochs 0 --knn-every 0 --threads 1 --workers 1 --bn-splits 1 --seed 4 \
      --out /runs/mpi 2>&1) || rc=$?
    procs=$(grep -m1 '^processes: ' <<< "$out" || true)
    if [ $rc -eq 0 ] && [[ $procs == "processes: 2 (mpi)"* ]] && [ -f "$R/runs/mpi/last.safetensors" ]; then
      ok "C bundle_mpirun -np 2 synco pretrain --backend strict: exit 0, ${procs%%,*}, a checkpoint"
    else
      bad "C bundle_mpirun -np 2 synco pretrain --backend strict: exit $rc, '${procs:-no processes: line}': $(first)"
      echo "$out" | tail -30 | sed 's/^/    | /'
    fi
  fi
fi

if [ $FAILS -eq 0 ]; then
  echo "gpu_bundle_selftest: passed ($TARBALL runs with the C runtime and CUDA's libraries alone)"
else
  echo "gpu_bundle_selftest: $FAILS check(s) FAILED"
fi
[ $FAILS -eq 0 ]
