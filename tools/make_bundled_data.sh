#!/bin/bash
# Builds the bundled dataset data/cifar10-small from ../shared/data/cifar10-train.tar.gz (CIFAR-10 training
# images as 32x32 JPEGs, 5,000 per class): an ImageFolder with
#   train/<class>/  500 images per class: every 9th of the first 4,500 of the class (sorted by name)
#   val/<class>/    100 images per class: every 5th of the last 500, the held-out part kept for evaluation
# The tarball is unpacked under /tmp, never into the repository.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TAR="${1:-$ROOT/../shared/data/cifar10-train.tar.gz}"
[ -f "$TAR" ] || TAR=/work/shared/data/cifar10-train.tar.gz
TMP="$(mktemp -d /tmp/cifar10-bundle.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
tar xzf "$TAR" -C "$TMP"
OUT="$ROOT/data/cifar10-small"
rm -rf "$OUT"
for dir in "$TMP"/train/*/; do
  cls="$(basename "$dir")"
  mkdir -p "$OUT/train/$cls" "$OUT/val/$cls"
  mapfile -t files < <(ls "$dir" | LC_ALL=C sort)
  n=${#files[@]}
  [ "$n" -eq 5000 ] || { echo "expected 5000 images in $cls, found $n" >&2; exit 1; }
  for ((i = 0; i < 4500; i += 9)); do cp "$dir/${files[$i]}" "$OUT/train/$cls/"; done
  for ((i = 4500; i < 5000; i += 5)); do cp "$dir/${files[$i]}" "$OUT/val/$cls/"; done
done
echo "data/cifar10-small: $(find "$OUT/train" -type f | wc -l) train, $(find "$OUT/val" -type f | wc -l) val images, $(du -sh "$OUT" | cut -f1)"
