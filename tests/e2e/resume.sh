#!/usr/bin/env bash
# Resume is exact: 2 epochs straight and 1 epoch + --resume + 1 epoch give bit-identical checkpoints
# (parameters, BN statistics, SGD momentum, queue and its pointer, metadata).
set -euo pipefail
. "$(dirname "$0")/common.inc"
train=data/cifar10-small/train
common=(--data "$train" --arch resnet18 --width 8 --cifar-stem --image-size 32 --epochs 2 -b 64 --moco-k 512 --n-hard 64
        --n1 16 --n2 16 --n3 16 --n4 8 --n5 8 --n6 8 --warmup-epochs 1 --threads 2 --workers 2 --seed 7
        --lr-warmup-epochs 1)
# A subset keeps it quick: the first 20 images of each class.
mkdir -p "$tmp/data"
for d in "$train"/*/; do
  c=$(basename "$d"); files=("$d"*); mkdir -p "$tmp/data/$c"; cp "${files[@]:0:20}" "$tmp/data/$c/"
done
common[1]="$tmp/data"
"$SYNCO" pretrain "${common[@]}" --out "$tmp/straight" > /dev/null 2>&1 || fail "straight run failed"
"$SYNCO" pretrain "${common[@]}" --stop-epoch 1 --out "$tmp/split" > /dev/null 2>&1 || fail "first half failed"
cp "$tmp/split/last.safetensors" "$tmp/half.safetensors"
"$SYNCO" pretrain "${common[@]}" --resume "$tmp/half.safetensors" --out "$tmp/split" > /dev/null 2>&1 || fail "resumed half failed"
cmp "$tmp/straight/last.safetensors" "$tmp/split/last.safetensors" || fail "resumed checkpoint differs from the straight run"
cmp -s "$tmp/half.safetensors" "$tmp/split/last.safetensors" && fail "the resumed run did not train"
echo "resume: ok (bit-identical after 1 + 1 epochs)"
