#!/usr/bin/env bash
# End to end: runs are planned against the memory there is (SYNCO_MEMORY_LIMIT_MB stands in for a small machine).
# pretrain and bench refuse a run that cannot fit before they write or allocate anything, with the figure and what
# to change; evaluations choose a batch that fits unless -b is given; pretrain's crop size follows the stem and
# the data, and it warns when it upscales small images.
set -euo pipefail
. "$(dirname "$0")/common.inc"
# The plans below count the process's own size. Under AddressSanitizer that includes the quarantine of freed memory
# (up to 256 MB), which grows as an evaluation plans batch after batch: a search down to one image then read 364 MB
# against 316 MB for a single plan of 256 images. Without the quarantine: 89 and 283 MB, as without sanitizers.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0
data=$tmp/data
for c in airplane cat; do
  mkdir -p "$data/$c"
  mapfile -t files < <(first_files "data/cifar10-small/train/$c" 12)
  cp "${files[@]}" "$data/$c/"
done
tiny=(--arch resnet18 --width 8 --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4 --threads 1
      --bn-splits 2 -b 8 --epochs 1)

# 1. The ImageNet recipe's defaults at 224 px do not fit in 2 GB: refused, nothing written.
rc=0
SYNCO_MEMORY_LIMIT_MB=2000 "$SYNCO" pretrain --data "$data" --method moco --image-size 224 --out "$tmp/r1" \
  > "$tmp/out1.txt" 2> "$tmp/err1.txt" || rc=$?
err=$(cat "$tmp/err1.txt")
[ "$rc" = 2 ] || fail "pretrain at 224 px, batch 256 under a 2 GB limit: exit $rc, expected 2: $err"
[[ $err == *"this run needs about"*"GB (activations"*"at batch 256, 224 px); "*" are available ("*"smaller -b"* ]] \
  || fail "refusal does not give the figure and the advice: $err"
[ ! -e "$tmp/r1" ] || fail "a refused run created its run directory"
# The advice names what the run can change: not --recipe cifar where that recipe is in force.
rc=0
SYNCO_MEMORY_LIMIT_MB=10 "$SYNCO" pretrain --data "$data" --recipe cifar --out "$tmp/r1" > /dev/null 2> "$tmp/err1.txt" || rc=$?
err=$(cat "$tmp/err1.txt")
[ "$rc" = 2 ] && [[ $err == *"Use a smaller -b, --image-size or --moco-k"* && $err != *"--recipe cifar ("* ]] \
  || fail "the advice under --recipe cifar: exit $rc: $err"

# 2. --no-memory-check runs what the check refuses (here: a tiny run under a limit it cannot meet).
SYNCO_MEMORY_LIMIT_MB=1 "$SYNCO" pretrain --data "$data" "${tiny[@]}" --cifar-stem --no-memory-check \
  --out "$tmp/r2" > "$tmp/out2.txt" 2> "$tmp/err2.txt" || { cat "$tmp/err2.txt"; fail "--no-memory-check did not run"; }
[ -s "$tmp/r2/last.safetensors" ] || fail "--no-memory-check: no checkpoint"
img=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['image_size'])" "$tmp/r2/config.json")
[ "$img" = 32 ] || fail "--cifar-stem without --image-size: crop $img, expected 32"

# 3. Crop size: 32 px images without --cifar-stem get 32 px crops; an explicit 128 warns (refused here, fast).
rc=0
SYNCO_MEMORY_LIMIT_MB=1 "$SYNCO" pretrain --data "$data" "${tiny[@]}" --out "$tmp/r3" 2> "$tmp/err3.txt" || rc=$?
err=$(cat "$tmp/err3.txt")
[ "$rc" = 2 ] || fail "pretrain under a 1 MB limit: exit $rc: $err"
[[ $err == *"at batch 8, 32 px"* ]] || fail "32x32 data without --image-size should take 32 px crops: $err"
[[ $err != *upscaling* ]] || fail "warned about upscaling at 32 px: $err"
rc=0
SYNCO_MEMORY_LIMIT_MB=1 "$SYNCO" pretrain --data "$data" "${tiny[@]}" --image-size 128 --out "$tmp/r3" \
  2> "$tmp/err4.txt" || rc=$?
err=$(cat "$tmp/err4.txt")
[[ $err == *"upscaling 32x32 images to 128 px crops; pass --image-size 32"* ]] || fail "no upscaling warning: $err"
[ ! -e "$tmp/r3" ] || fail "a refused run created its run directory"

# 4. bench: the same refusal; SYNCO_NO_MEMORY_CHECK=1 turns it off.
rc=0
SYNCO_MEMORY_LIMIT_MB=1 "$SYNCO" bench fwdbwd --arch resnet18 --cifar-stem --width 8 -b 8 --iters 1 --warmup 0 \
  --threads 1 > "$tmp/out5.txt" 2> "$tmp/err5.txt" || rc=$?
err=$(cat "$tmp/err5.txt")
[ "$rc" = 2 ] && [[ $err == *"this run needs about"* ]] || fail "bench under a 1 MB limit: exit $rc: $err"
SYNCO_NO_MEMORY_CHECK=1 SYNCO_MEMORY_LIMIT_MB=1 "$SYNCO" bench fwdbwd --arch resnet18 --cifar-stem --width 8 -b 8 \
  --iters 1 --warmup 0 --threads 1 > "$tmp/out6.txt" 2> "$tmp/err6.txt" || { cat "$tmp/err6.txt"; fail "bench with SYNCO_NO_MEMORY_CHECK=1"; }
out=$(cat "$tmp/out6.txt")
[[ $out == *"planned"* ]] || fail "bench does not print its planned memory: $out"

# 5. Evaluation: a given -b that does not fit is refused with the figure; without -b a batch that fits is chosen.
# The limit sits between the plans of one image and of 256 (read from the refusals under a 1 MB limit, so the test
# does not depend on the process's own size, which sanitizers change).
ck=$tmp/r2/last.safetensors
knn=(knn --ckpt "$ck" --train "$data" --holdout 4 --threads 1)
rc=0
SYNCO_MEMORY_LIMIT_MB=1 "$SYNCO" "${knn[@]}" > "$tmp/out7.txt" 2> "$tmp/err7.txt" || rc=$?
err=$(cat "$tmp/err7.txt")
[ "$rc" = 1 ] && [[ $err =~ "one image at 32 px needs about "([0-9]+)" MB" ]] || fail "knn under 1 MB: exit $rc: $err"
one=${BASH_REMATCH[1]}
rc=0
SYNCO_MEMORY_LIMIT_MB=1 "$SYNCO" "${knn[@]}" -b 256 > "$tmp/out8.txt" 2> "$tmp/err8.txt" || rc=$?
err=$(cat "$tmp/err8.txt")
[ "$rc" = 1 ] && [[ $err =~ "batch 256 at 32 px needs about "([0-9]+)" MB"(.*)"Use a smaller -b" ]] \
  || fail "knn -b 256 under 1 MB: exit $rc: $err"
full=${BASH_REMATCH[1]}
# Both figures include the process's own size (larger under sanitizers), so the limit is their midpoint: it holds
# one image and not 256.
limit=$(( (one + full) / 2 ))
[ $(( one + 16 )) -lt "$full" ] || fail "plans of 1 ($one MB) and 256 images ($full MB) too close to test"
rc=0
SYNCO_MEMORY_LIMIT_MB=$limit "$SYNCO" "${knn[@]}" -b 256 > "$tmp/out9.txt" 2> "$tmp/err9.txt" || rc=$?
err=$(cat "$tmp/err9.txt")
[ "$rc" = 1 ] && [[ $err == *"batch 256 at 32 px needs about"* ]] || fail "knn -b 256 under $limit MB: exit $rc: $err"
SYNCO_MEMORY_LIMIT_MB=$limit "$SYNCO" "${knn[@]}" --json > "$tmp/out10.txt" 2> "$tmp/err10.txt" \
  || { cat "$tmp/err10.txt"; fail "knn without -b under $limit MB"; }
err=$(cat "$tmp/err10.txt")
[[ $err =~ "batch "([0-9]+)" instead of 256" ]] || fail "knn did not size its batch: $err"
[ "${BASH_REMATCH[1]}" -ge 1 ] && [ "${BASH_REMATCH[1]}" -lt 256 ] || fail "batch ${BASH_REMATCH[1]}"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['command'] == 'knn' and d['n_val'] == 8, d" \
  "$tmp/out10.txt" || fail "knn output"
echo "memory_plan: ok"
