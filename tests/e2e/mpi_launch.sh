#!/usr/bin/env bash
# Launches that cannot work are refused, and a stop is one stop, under `mpirun -np 2` (issue 22):
#  1. Ranks started with different settings or data (MPMD: `mpirun -np 1 synco ... : -np 1 synco ... -b 16`): another
#     batch (once SIGSEGV in MPI_Abort after MPI_ERR_TRUNCATE), width (once "double free or corruption"), data size
#     or --epochs (once a hang), K or --method (once trained silently). Every rank exits non-zero, each with a line
#     naming rank 1 and the setting, and no run directory is made. Each launch runs under `timeout 120`, which only
#     tells a hang from an end (a refusal takes a second or two).
#  2. Ctrl-C reaching one rank (SIGINT to rank 1 alone) stops every rank at the same step; rank 0 alone gives the
#     advice, with the checkpoint's path (rank 1 once printed "the last checkpoint is  (epoch N)" with an empty
#     path), and the job ends by itself.
# Skipped when the build has no MPI or mpirun is missing.
set -euo pipefail
. "$(dirname "$0")/common.inc"
require_mpi
train=$(small_cifar '000[01].jpg' "$tmp/train" 2) # 2 per class: 20 images
more=$(small_cifar '000[0-2].jpg' "$tmp/more" 3)  # 3 per class: 30 images
F8=(--arch resnet18 --cifar-stem --width 8 -b 8 --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4
    --threads 1 --epochs 1 --image-size 32 --bn-splits 1 --workers 1 --warmup-epochs 0)

# mismatch NAME SETTING RANK_1S_VALUE RANK_0S_VALUE EXTRA...: rank 1 gets EXTRA on top of rank 0's flags
mismatch() {
  local name=$1 setting=$2 here="$2 $3" there=$4 rc=0; shift 4
  timeout 120 mpirun --oversubscribe -np 1 "$SYNCO" pretrain "${F8[@]}" --data "$train" --out "$tmp/$name" \
    : -np 1 "$SYNCO" pretrain "${F8[@]}" --data "$train" --out "$tmp/$name" "$@" > "$tmp/$name.txt" 2>&1 || rc=$?
  local out
  out=$(cat "$tmp/$name.txt")
  [ "$rc" -ne 124 ] || { echo "$out"; fail "$name: the job hung (killed after 120 s)"; }
  [ "$rc" -ne 0 ] || { echo "$out"; fail "$name: the job exited 0"; }
  [[ $out == *"synco pretrain: rank 1 of 2 has $here, rank 0 has $there: every rank must be started with the same"* ]] \
    || { echo "$out"; fail "$name: rank 1 did not name itself and the setting"; }
  [[ $out == *"synco pretrain: rank 1 of 2 was started with another $setting than rank 0 ($there)"* ]] \
    || { echo "$out"; fail "$name: rank 0 did not name rank 1 and the setting"; }
  [[ $out != *"Segmentation"* && $out != *"double free"* && $out != *"MPI_ERR"* ]] || { echo "$out"; fail "$name: crashed"; }
  [ ! -e "$tmp/$name" ] || fail "$name: a refused launch made its run directory"
  echo "$name: refused on every rank"
}
mismatch batch --batch-size 16 8 -b 16
mismatch width --width 16 8 --width 16
mismatch epochs --epochs 2 1 --epochs 2
mismatch moco_k --moco-k 128 64 --moco-k 128
mismatch method --method moco synco --method moco
mismatch data "--data's image count" 30 20 --data "$more"

# ---- Ctrl-C that reaches one rank: every rank stops at the same step, rank 0 alone gives the advice ----
mpirun -np 2 --oversubscribe "$SYNCO" pretrain "${F8[@]}" --data "$train" --epochs 100000 --out "$tmp/int" \
  > "$tmp/int.txt" 2>&1 &
job=$!
for _ in $(seq 1200); do [ -f "$tmp/int/last.safetensors" ] && break; sleep 0.25; done
[ -f "$tmp/int/last.safetensors" ] || { kill -9 "$job" 2> /dev/null || true; cat "$tmp/int.txt"; fail "no checkpoint"; }
victim=$(mpi_rank_pid 1 "$tmp/int")
[ -n "$victim" ] || { kill -9 "$job" 2> /dev/null || true; fail "rank 1's process not found"; }
kill -INT "$victim"
# the job must end by itself; 120 s only tells a hang from an end
for _ in $(seq 480); do kill -0 "$job" 2> /dev/null || break; sleep 0.25; done
if kill -0 "$job" 2> /dev/null; then kill -9 "$job"; fail "the job did not end after Ctrl-C reached rank 1"; fi
rc=0; wait "$job" || rc=$?
[ "$rc" -ne 0 ] || fail "the job exited 0 after Ctrl-C"
out=$(cat "$tmp/int.txt")
advice=$(grep -c "the last checkpoint is" <<< "$out" || true)
[ "$advice" = 1 ] || { echo "$out"; fail "the resume advice was given $advice times, not once (by rank 0)"; }
[[ $out == *"the last checkpoint is $tmp/int/last.safetensors (epoch "*"); continue with --resume $tmp/int/last.safetensors"* ]] \
  || { echo "$out"; fail "the advice does not name the checkpoint"; }
[[ $out != *"ending every rank"* ]] || { echo "$out"; fail "an agreed stop was ended by MPI_Abort"; }
echo "mpi_launch: ok"
