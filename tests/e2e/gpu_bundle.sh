#!/usr/bin/env bash
# The GPU bundle is self-contained: tools/gpu_bundle_selftest.sh --prepare rebuilds it from these sources
# (tools/gpu_check.sh --prepare, in build-gpu-bundle/, ~1-2 minutes on 2 cores the first time, then incremental) and
# runs its binaries in a bare root that holds only the C runtime and, for the second half, this machine's cuBLAS and
# cuDNN: no library is missing but CUDA's, every binary starts and stops cleanly at the missing GPU, and the bundled
# Open MPI (mpirun relocated by gpu_check.sh's bundle_mpirun environment) runs 2 ranks of `synco pretrain --backend
# strict`, their collectives staged through host copies, where no MPI is installed.
# Skipped (77) without nvcc (CUDACXX, PATH or /usr/local/cuda/bin), without Open MPI here (the bundle carries it) or
# without root (chroot). $1 (the CPU build's synco) is not used: the bundle has its own CUDA build.
set -euo pipefail
NVCC=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$NVCC" ] || { echo "SKIP: no nvcc (CUDACXX, PATH or /usr/local/cuda/bin)"; exit 77; }
exec bash tools/gpu_bundle_selftest.sh --prepare
