#!/usr/bin/env bash
# Bad input: a one-line error naming the file and the problem, a non-zero exit, nothing existing damaged.
set -euo pipefail
. "$(dirname "$0")/common.inc"
expect_error() { # expect_error PATTERN CMD...
  local pat=$1; shift
  if "$@" > "$tmp/o" 2> "$tmp/e"; then fail "succeeded: $*"; fi
  grep -q -- "$pat" "$tmp/e" || { cat "$tmp/e"; fail "error message lacks '$pat': $*"; }
  [ "$(wc -l < "$tmp/e")" -le 2 ] || { cat "$tmp/e"; fail "error is not one line: $*"; }
}
expect_error "unknown option '--bogus'" "$SYNCO" pretrain --bogus
expect_error "does-not-exist" "$SYNCO" pretrain --data "$tmp/does-not-exist" --out "$tmp/r1"
expect_error "not a multiple" "$SYNCO" pretrain --data data/cifar10-small/train --moco-k 1000 -b 64 --out "$tmp/r2"
expect_error "must be between 1 and --moco-k 512" "$SYNCO" pretrain --data data/cifar10-small/train --moco-k 512 -b 64 --n-hard 1024 --out "$tmp/r2"
expect_error "--n-hard 0 leaves --method synco no hard negatives to make synthetic ones from" "$SYNCO" pretrain \
  --data data/cifar10-small/train --recipe cifar --n-hard 0 --out "$tmp/r2"
[ ! -e "$tmp/r2" ] || fail "a refused --n-hard 0 created its run directory"
expect_error "unknown command" "$SYNCO" frobnicate
# a misspelt --device is a usage error (exit 2), as any bad flag value, before anything is made
for c in "pretrain --out $tmp/dv" "knn --random-init --train data/cifar10-small/val --holdout 5" "bench step --iters 1"; do
  rc=0; "$SYNCO" $c --device tpu > /dev/null 2> "$tmp/e" || rc=$?
  [ "$rc" = 2 ] && grep -q "unknown backend 'tpu' (expected cpu, ref, strict, cuda or auto)" "$tmp/e" \
    || { cat "$tmp/e"; fail "$c --device tpu: exit $rc"; }
done
[ ! -e "$tmp/dv" ] || fail "a refused --device left a run directory"
# --precision: anything but fp32/tf32/bf16 is a usage error; tf32 is refused on a CPU; bf16 is refused with the
# reason where the CPU has no native bf16 (AVX512-BF16, AMX) and on the reference backend everywhere, before anything
# is written.
expect_error "expected fp32, tf32 or bf16" "$SYNCO" pretrain --precision fp16 --out "$tmp/p0"
expect_error "--precision bf16" "$SYNCO" pretrain --precision bf16 --backend ref --out "$tmp/p2"
[ ! -e "$tmp/p2" ] || fail "a refused pretrain created its run directory"
info=$("$SYNCO" info)
if [[ $info != *$'\nbf16: yes'* ]]; then
  expect_error "--precision bf16" "$SYNCO" pretrain --precision bf16 --out "$tmp/p1"
  [ ! -e "$tmp/p1" ] || fail "a refused pretrain created its run directory"
  for c in knn linear finetune embed analyze; do
    expect_error "--precision bf16" "$SYNCO" $c --random-init --precision bf16
  done
fi
# A corrupt checkpoint given to --resume is rejected and the run directory's files stay as they were.
mkdir -p "$tmp/r3"
echo '{"keep": true}' > "$tmp/r3/config.json"
printf 'garbage' > "$tmp/bad.safetensors"
expect_error "bad.safetensors" "$SYNCO" pretrain --data data/cifar10-small/train --recipe cifar --width 8 -b 64 --moco-k 512 --n-hard 256 --resume "$tmp/bad.safetensors" --out "$tmp/r3"
grep -q keep "$tmp/r3/config.json" || fail "config.json of the run directory was overwritten"
# The kNN monitor (issue 22): --knn-every without --val, or with images that have no labels on either side (an
# unlabelled --val once reported 0.00 %, an unlabelled --data failed at the first measurement), is refused before
# the run directory is made.
F8=(--arch resnet18 --cifar-stem --width 8 -b 8 --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4
    --threads 1 --epochs 1 --image-size 32 --bn-splits 2 --workers 1)
train=$(small_cifar '000[0-3].jpg' "$tmp/knn" 4)
python3 -c "import sys; open(sys.argv[1], 'wb').write(bytes(range(256)) * (4 * 96 * 96 * 3 // 256))" "$tmp/unlabeled_X.bin"
expect_error "--knn-every 1 needs --val DIR" "$SYNCO" pretrain "${F8[@]}" --data "$train" --knn-every 1 --out "$tmp/k1"
expect_error "needs labelled images, and $tmp/unlabeled_X.bin has no labels" \
  "$SYNCO" pretrain "${F8[@]}" --data "$train" --knn-every 1 --val "$tmp/unlabeled_X.bin" --out "$tmp/k1"
expect_error "needs labelled images, and $tmp/unlabeled_X.bin has no labels" "$SYNCO" pretrain "${F8[@]}" -b 4 --bn-splits 1 \
  --data "$tmp/unlabeled_X.bin" --knn-every 1 --val "$train" --out "$tmp/k1"
# --val must label its images as --data does: the monitor pairs labels by class index, so other class names (a
# renamed folder) or another class count are refused too; once they were paired silently by position.
cp -r "$train" "$tmp/renamed"; mv "$tmp/renamed/truck" "$tmp/renamed/lorry"
expect_error "name their classes differently: class 9 of 10 is 'ship' in the first and 'lorry' in the second" \
  "$SYNCO" pretrain "${F8[@]}" --data "$train" --knn-every 1 --val "$tmp/renamed" --out "$tmp/k1"
cp -r "$train" "$tmp/nine"; rm -r "$tmp/nine/truck"
expect_error "$train has 10 classes but $tmp/nine has 9" \
  "$SYNCO" pretrain "${F8[@]}" --data "$train" --knn-every 1 --val "$tmp/nine" --out "$tmp/k1"
[ ! -e "$tmp/k1" ] || fail "a refused kNN monitor left a run directory"
# an STL-10 folder of the unlabelled images alone, opened for its training split: which split it has
mkdir -p "$tmp/stl"; cp "$tmp/unlabeled_X.bin" "$tmp/stl/"
expect_error "$tmp/stl: no train_X.bin, only unlabeled_X.bin: --split unlabeled reads it" "$SYNCO" pretrain "${F8[@]}" \
  --data "$tmp/stl" --out "$tmp/stl_run"
echo "bad_input: ok"
