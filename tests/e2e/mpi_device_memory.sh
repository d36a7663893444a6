#!/usr/bin/env bash
# Data-parallel on a backend whose memory the host cannot touch, as on GPUs: `mpirun -np 2 synco pretrain --backend
# strict` (the reference ops over memory that faults when the host or MPI touches it) stages every collective
# through host copies (dist: synco_dist_stage_through, which moco turns on for such backends). Before it did, MPI
# read the strict backend's memory and the ranks died of SIGSEGV; on a GPU without CUDA-aware MPI they would have too.
#  1. 2 ranks on strict equal 2 ranks on ref bit for bit (the same arithmetic, the same collectives), with SynCo's
#     negatives and Split-BN's key shuffle across ranks (the images gathered in backend memory), and the symmetric
#     loss (two key sets enqueued).
#  2. --key-shuffle indices (each rank decodes and augments its shuffled key images itself, so no image is
#     gathered) on strict equals those runs bit for bit, SynCo and the symmetric loss.
#  3. 2 ranks on strict under --precision bf16 (the GPU's bf16 arithmetic, emulated) run and stay finite, and a run
#     they saved resumes on 1 process with --bn-splits 2 (the global batch unchanged).
# Skipped when the build has no MPI or mpirun is missing.
set -euo pipefail
. "$(dirname "$0")/common.inc"
require_mpi
MPIRUN=(mpirun -np 2 --oversubscribe)
train=$(small_cifar '000[0-2].jpg' "$tmp/train" 3) # 3 per class: 30 images
common=(--data "$train" --arch resnet18 --width 8 --cifar-stem --image-size 32 --moco-k 64 -b 16 --n-hard 16
        --epochs 2 --warmup-epochs 0 --knn-every 0 --threads 1 --workers 1 --seed 4 --print-freq 1 --bn-splits 1)
run() { # NAME COMMAND...: runs it, output in $tmp/NAME.txt; fails naming NAME
  local name=$1; shift
  "$@" > "$tmp/$name.txt" 2>&1 || { cat "$tmp/$name.txt"; fail "$name exited non-zero"; }
}

for be in ref strict; do
  run "synco_$be" "${MPIRUN[@]}" "$SYNCO" pretrain "${common[@]}" --backend "$be" --out "$tmp/synco_$be"
  run "sym_$be" "${MPIRUN[@]}" "$SYNCO" pretrain "${common[@]}" --method moco --symmetric --backend "$be" \
    --out "$tmp/sym_$be"
done
compare_ckpt "$tmp/synco_strict/last.safetensors" "$tmp/synco_ref/last.safetensors" 0 0
compare_ckpt "$tmp/sym_strict/last.safetensors" "$tmp/sym_ref/last.safetensors" 0 0
run synco_ix "${MPIRUN[@]}" "$SYNCO" pretrain "${common[@]}" --backend strict --key-shuffle indices --out "$tmp/synco_ix"
run sym_ix "${MPIRUN[@]}" "$SYNCO" pretrain "${common[@]}" --method moco --symmetric --backend strict \
  --key-shuffle indices --out "$tmp/sym_ix"
compare_ckpt "$tmp/synco_ix/last.safetensors" "$tmp/synco_ref/last.safetensors" 0 0
compare_ckpt "$tmp/sym_ix/last.safetensors" "$tmp/sym_ref/last.safetensors" 0 0

run bf16 "${MPIRUN[@]}" "$SYNCO" pretrain "${common[@]}" --backend strict --precision bf16 --stop-epoch 1 \
  --out "$tmp/bf16"
run bf16_resume "$SYNCO" pretrain --resume "$tmp/bf16" --bn-splits 2
python3 - "$tmp/bf16/log.jsonl" <<'PY' || fail "the bf16 data-parallel run's losses are not finite"
import json, math, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if r['kind'] == 'step']
assert len(rows) >= 2 and all(math.isfinite(r['loss']) for r in rows), rows
PY
echo "data-parallel over device-like memory: staged collectives agree with the reference bit for bit"
