#!/usr/bin/env bash
# A newcomer's first hour (issue 21): what a user meets before reading every page.
#   - a flat folder of unlabelled images pretrains (the header says "unlabelled"); the kNN monitor and the
#     evaluations, which need labels, refuse it saying so;
#   - defaults that fit nothing are said: the ImageNet stem on 32 px images, a queue as large as the data; the
#     header names the recipe in force;
#   - knn --val equal to --train is warned about; --val-split F holds out a seeded fraction of --train (knn,
#     linear, finetune), refused beside --val or out of (0, 1);
#   - --init of a file made for another ResNet names what the file is and the flag to drop, and takes the file's
#     ResNet for the flags not given;
#   - small things: "did you mean --epochs?", "1 epoch" / "1 thread", plot's default --out, export --ckpt RUN_DIR,
#     no README link outside the repository.
set -euo pipefail
. "$(dirname "$0")/common.inc"
SYNCO=$(cd "$(dirname "$SYNCO")" && pwd)/$(basename "$SYNCO")   # plot runs in another folder below
img=$(small_cifar '000[01].jpg' "$tmp/data" 2)   # 20 labelled images, 10 classes
flat=$tmp/flat                                     # the same 20 images in one folder, no classes
mkdir -p "$flat"
for d in "$img"/*/; do for f in "$d"*; do cp "$f" "$flat/$(basename "$d")_$(basename "$f")"; done; done
tiny=(--arch resnet18 --cifar-stem --width 8 --image-size 32 --threads 1 --workers 1 --bn-splits 2 -b 8
      --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4 --epochs 1)
# refused PATTERN CMD...: exit 2 (usage) or 1, PATTERN on stderr.
refused() {
  local pat=$1 rc=0; shift
  "$@" > "$tmp/o" 2> "$tmp/e" || rc=$?
  [ "$rc" != 0 ] || { cat "$tmp/o" "$tmp/e"; fail "succeeded: $*"; }
  grep -qF -- "$pat" "$tmp/e" || { cat "$tmp/e"; fail "no '$pat' in the error of: $*"; }
}
ok() { "$@" > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/o" "$tmp/e"; fail "exited non-zero: $*"; }; }

# --- 2. an unlabelled folder trains; what needs labels says so -------------------------------------------------
ok "$SYNCO" pretrain --data "$flat" "${tiny[@]}" --out "$tmp/flat_run"
grep -qF "(20 images, unlabelled)" "$tmp/o" || { cat "$tmp/o"; fail "the header does not say the data are unlabelled"; }
[ -f "$tmp/flat_run/last.safetensors" ] || fail "no checkpoint from the unlabelled folder"
refused "the kNN monitor (--knn-every 1 with --val) needs labelled images, and $flat has no labels" \
  "$SYNCO" pretrain --data "$flat" "${tiny[@]}" --val "$img" --knn-every 1 --out "$tmp/flat_knn"
[ ! -e "$tmp/flat_knn" ] || fail "the refused kNN monitor run wrote its folder"
refused "$flat: no labels" "$SYNCO" knn --ckpt "$tmp/flat_run" --train "$flat" --holdout 1 --threads 1
# images at the top and in a sub-folder: unlabelled, with a warning that the sub-folder is no class
mkdir "$flat/more"; mv "$flat"/truck_* "$flat/more/"
ok "$SYNCO" pretrain --data "$flat" "${tiny[@]}" --out "$tmp/flat_run2"
grep -qF "(20 images, unlabelled)" "$tmp/o" || { cat "$tmp/o"; fail "the mixed tree is not 20 unlabelled images"; }
grep -qF "read as unlabelled (its 1 sub-folders are not taken as classes" "$tmp/e" || { cat "$tmp/e"; fail "no warning on the mixed tree"; }

# STL-10's unlabeled split (made here: 16 random 96x96 images) is unlabelled too, though the format has classes
mkdir "$tmp/stl"
python3 -c 'import os; open(os.path.join(os.sys.argv[1], "unlabeled_X.bin"), "wb").write(os.urandom(16 * 3 * 96 * 96))' "$tmp/stl"
ok "$SYNCO" pretrain --data "$tmp/stl" --split unlabeled "${tiny[@]}" --out "$tmp/stl_run"
grep -qF "(16 images, unlabelled)" "$tmp/o" || { cat "$tmp/o"; fail "STL-10's unlabeled split is not said to be unlabelled"; }

# --- 3. defaults that fit nothing, and the recipe in force (refused by the memory check: nothing trains) --------
rc=0; SYNCO_MEMORY_LIMIT_MB=1 "$SYNCO" pretrain --data "$img" --out "$tmp/r3" > "$tmp/o" 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] || { cat "$tmp/e"; fail "exit $rc, not the memory check's 2"; }
grep -qF "32x32 images with the ImageNet stem" "$tmp/e" || { cat "$tmp/e"; fail "no warning on the ImageNet stem at 32 px"; }
grep -qF "pass --cifar-stem, or --recipe cifar" "$tmp/e" || { cat "$tmp/e"; fail "the stem warning names no flag"; }
grep -qF -- "--moco-k 65536 is at least the 20 images" "$tmp/e" || { cat "$tmp/e"; fail "no warning on the queue"; }
rc=0; SYNCO_MEMORY_LIMIT_MB=1 "$SYNCO" pretrain --data "$img" --recipe cifar --out "$tmp/r3" > "$tmp/o" 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] || { cat "$tmp/e"; fail "--recipe cifar: exit $rc, not the memory check's 2"; }
if grep -qF "ImageNet stem" "$tmp/e"; then cat "$tmp/e"; fail "--recipe cifar warned about the ImageNet stem"; fi
ok "$SYNCO" pretrain --data "$img" "${tiny[@]}" --out "$tmp/run"
grep -qF "recipe: imagenet (the default" "$tmp/o" || { cat "$tmp/o"; fail "the header does not name the recipe"; }
grep -qF "resnet18 (width 8, CIFAR stem), synco, 1 epoch x 2 steps of 8" "$tmp/o" || { cat "$tmp/o"; fail "header"; }
grep -qF ", 1 thread, backend" "$tmp/o" || { cat "$tmp/o"; fail "not '1 thread'"; }
if grep -qE "\b1 (epochs|threads|steps|classes)\b" "$tmp/o"; then cat "$tmp/o"; fail "a plural after 1"; fi

# --- 4. --val that is --train; --val-split F -------------------------------------------------------------------
ev=(--ckpt "$tmp/run" --train "$img" --threads 1 -b 20)
ok "$SYNCO" knn "${ev[@]}" --val "$img" --k 5
grep -qF "synco knn: warning: 20 of the 20 --val images are --train images (the same images)" "$tmp/e" \
  || { cat "$tmp/e"; fail "no warning that --val is --train"; }
ok "$SYNCO" knn "${ev[@]}" --val-split 0.5 --k 5 --json
python3 - "$tmp/o" <<'PY' || fail "knn --val-split 0.5: not 10 + 10 images"
import json, sys
o = json.load(open(sys.argv[1]))
assert (o["n_train"], o["n_val"]) == (10, 10), o
PY
cp "$tmp/o" "$tmp/a.json"
ok "$SYNCO" knn "${ev[@]}" --val-split 0.5 --k 5 --json
cmp -s <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["top1"])' "$tmp/a.json") \
       <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["top1"])' "$tmp/o") \
  || fail "knn --val-split: the same seed gave another result"
grep -qF "(val held out of train)" <("$SYNCO" knn "${ev[@]}" --val-split 0.5 --k 5 2> /dev/null) || fail "knn text output"
ok "$SYNCO" linear "${ev[@]}" --val-split 0.5 --fast --json
ok "$SYNCO" finetune "${ev[@]}" --val-split 0.5 --labels 1 --epochs 1 --json
refused "--val-split 0.5 holds out part of --train: give it without --val" "$SYNCO" knn "${ev[@]}" --val "$img" --val-split 0.5
refused "--val-split 1.5: a fraction of --train is between 0 and 1" "$SYNCO" linear "${ev[@]}" --val-split 1.5 --fast
refused "give --val PATH, --val-split F" "$SYNCO" knn "${ev[@]}"

# --- 12. export --ckpt RUN_DIR, plot's default --out -----------------------------------------------------------
ok "$SYNCO" export --ckpt "$tmp/run" --out "$tmp/r18.safetensors"
grep -qF "wrote $tmp/r18.safetensors" "$tmp/o" || { cat "$tmp/o"; fail "export --ckpt RUN_DIR"; }
mkdir "$tmp/empty"
refused "--ckpt $tmp/empty: the folder holds no last.safetensors" "$SYNCO" export --ckpt "$tmp/empty" --out "$tmp/x.safetensors"
if "$SYNCO" plot "$tmp/run" > "$tmp/o" 2> "$tmp/e"; then
  [ -s "$tmp/run/curves.png" ] || fail "plot RUN_DIR wrote no RUN_DIR/curves.png"
  (cd "$tmp" && "$SYNCO" plot run flat_run > "$tmp/o" 2> "$tmp/e") || { cat "$tmp/e"; fail "plot of two runs"; }
  [ -s "$tmp/curves.png" ] || fail "plot of two runs wrote no ./curves.png"
else
  grep -qF "built without cairo" "$tmp/e" || { cat "$tmp/e"; fail "plot RUN_DIR without --out"; }
fi

# --- 7. --init of another ResNet -------------------------------------------------------------------------------
refused "--arch resnet50 does not fit --init $tmp/r18.safetensors, a resnet18, width 8, CIFAR stem (its synco.encoder metadata): drop --arch resnet50" \
  "$SYNCO" pretrain --data "$img" --init "$tmp/r18.safetensors" --arch resnet50 --epochs 1 --out "$tmp/r7"
[ ! -e "$tmp/r7" ] || fail "the refused --init run wrote its folder"
refused "--width 16 does not fit" "$SYNCO" pretrain --data "$img" --init "$tmp/r18.safetensors" --width 16 --out "$tmp/r7"
# no flag against it: the file's ResNet is trained (stopped by the memory check here)
rc=0; SYNCO_MEMORY_LIMIT_MB=1 "$SYNCO" pretrain --data "$img" --init "$tmp/r18.safetensors" -b 8 --moco-k 64 \
  --out "$tmp/r7" > "$tmp/o" 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] || { cat "$tmp/e"; fail "--init alone: exit $rc, not the memory check's 2"; }
grep -qF -- "--init $tmp/r18.safetensors is a resnet18, width 8, CIFAR stem (its synco.encoder metadata): training that" \
  "$tmp/e" || { cat "$tmp/e"; fail "--init does not say what it trains"; }
if grep -qF "ImageNet stem" "$tmp/e"; then cat "$tmp/e"; fail "--init's CIFAR stem was not taken"; fi

# --- 12. flags ---------------------------------------------------------------------------------------------------
refused "unknown option '--epoch': did you mean --epochs?" "$SYNCO" pretrain --epoch 3
refused "unknown option '--trian': did you mean --train?" "$SYNCO" knn --trian x
refused "unknown option '--bogus' (see synco pretrain --help)" "$SYNCO" pretrain --bogus
refused "unknown command 'pretrian': did you mean pretrain?" "$SYNCO" pretrian
"$SYNCO" help knn > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "synco help knn"; }
grep -q "^usage: synco knn" "$tmp/o" || { cat "$tmp/o"; fail "synco help knn is not knn's help"; }
# --- 11b. --recipe cifar without --data: the bundled images under that recipe, said so (it ran the demo's) ---------
(cd "$tmp" && "$SYNCO" pretrain --recipe cifar --width 8 --epochs 1 -b 512 --moco-k 1024 --threads 1 --workers 1 \
  --knn-every 0 --out "$tmp/rc" > "$tmp/o" 2>&1) || { cat "$tmp/o"; fail "--recipe cifar without --data"; }
grep -q "^recipe: cifar (--recipe cifar: MoCo's CIFAR recipe for every flag not given), on the bundled images" "$tmp/o" \
  || { cat "$tmp/o"; fail "--recipe cifar without --data: the recipe line"; }
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); assert c['warmup_epochs'] == 10 and c['save_every'] == 10, c" \
  "$tmp/rc/config.json" || fail "--recipe cifar without --data took the demo's settings"
# --- 12. everything a user reads lives in the repository ---------------------------------------------------------
if grep -nE '\.\./shared/' README.md docs/*.md docs/synco.1; then fail "a link outside the repository"; fi
echo "newcomer: ok"
