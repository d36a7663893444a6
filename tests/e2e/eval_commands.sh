#!/usr/bin/env bash
# End to end: the evaluation commands on real CIFAR-10 images with a tiny encoder — knn, linear (--fast and a
# short MoCo-protocol run), finetune, embed, analyze (with a one-epoch pretraining checkpoint when pretrain
# works, else a random initialization) and plot — each --json output parses with sane values, the files they
# write are valid (.npy loads, PNGs have the requested size), and misuse fails cleanly.
set -euo pipefail
. "$(dirname "$0")/common.inc"
train=$(small_cifar '00[0-2]?.jpg' "$tmp/train" 30)   # 30 per class
model=(--random-init --cifar-stem --width 8 --threads 2 --batch 50)

check_json() { # FILE PYTHON-EXPRESSION-ON-o
  python3 - "$1" "$2" <<'PY' || fail "$1: $2"
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert eval(sys.argv[2]), o
PY
}

"$SYNCO" knn "${model[@]}" --train "$train" --holdout 5 --k 20 --json > "$tmp/knn.json" 2> "$tmp/err" || { cat "$tmp/err"; fail "knn"; }
check_json "$tmp/knn.json" "o['command'] == 'knn' and 0 <= o['top1'] <= o['top5'] <= 100 and o['n_val'] == 50 and o['n_train'] > 0 and o['wall_s'] > 0"
"$SYNCO" knn "${model[@]}" --train "$train" --holdout 5 --k 20 > "$tmp/knn.txt" 2> /dev/null
# --val of a format that holds both splits (a CIFAR-10 folder) takes its test split, in the evaluations and in
# pretrain's kNN monitor (once both took data_batch_*: the training images); the same ImageFolder as --data and --val
# is said to be the training images.
python3 - "$tmp/cifar" <<'PY'
import os, random, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True); r = random.Random(0)
rec = lambda n: b''.join(bytes([i % 10]) + bytes(r.randrange(256) for _ in range(3072)) for i in range(n))
open(d + '/data_batch_1.bin', 'wb').write(rec(40)); open(d + '/test_batch.bin', 'wb').write(rec(20))
PY
"$SYNCO" knn "${model[@]}" --train "$tmp/cifar" --val "$tmp/cifar" --k 5 --json > "$tmp/kc.json" 2> "$tmp/err" || { cat "$tmp/err"; fail "knn on a CIFAR-10 folder"; }
check_json "$tmp/kc.json" "o['n_train'] == 40 and o['n_val'] == 20"
if grep -q "are --train images" "$tmp/err"; then cat "$tmp/err"; fail "knn: the CIFAR-10 test split taken for the training split"; fi
"$SYNCO" knn "${model[@]}" --train "$tmp/cifar" --val "$tmp/cifar" --val-split train --k 5 --json > "$tmp/kc.json" 2> "$tmp/err" \
  || { cat "$tmp/err"; fail "knn --val-split train"; }
check_json "$tmp/kc.json" "o['n_val'] == 40"
grep -q "40 of the 40 --val images are --train images" "$tmp/err" || { cat "$tmp/err"; fail "knn --val-split train: no overlap warning"; }
# batches 1 and 3 without 2: both read, and said (once batch 3 was ignored)
cp -r "$tmp/cifar" "$tmp/cifar13"; head -c $((10 * 3073)) "$tmp/cifar/data_batch_1.bin" > "$tmp/cifar13/data_batch_3.bin"
"$SYNCO" knn "${model[@]}" --train "$tmp/cifar13" --val "$tmp/cifar13" --k 5 --json > "$tmp/kc.json" 2> "$tmp/err" || { cat "$tmp/err"; fail "knn on batches 1 and 3"; }
check_json "$tmp/kc.json" "o['n_train'] == 50"
grep -q "holds 2 of the 5 training batches (data_batch_N.bin, N = 1, 3: 50 of" "$tmp/err" || { cat "$tmp/err"; fail "batches 1 and 3: not said"; }
P=(--arch resnet18 --cifar-stem --width 8 -b 10 --bn-splits 1 --moco-k 20 --n-hard 5 --epochs 1 --threads 2 --workers 1 --knn-every 1 --knn-k 5)
"$SYNCO" pretrain "${P[@]}" --data "$tmp/cifar" --val "$tmp/cifar" --out "$tmp/pc" > "$tmp/o" 2> "$tmp/err" || { cat "$tmp/o" "$tmp/err"; fail "pretrain on a CIFAR-10 folder"; }
grep -q "kNN top-1 on $tmp/cifar (20 images)" "$tmp/o" || { cat "$tmp/o"; fail "the kNN monitor did not take the test split"; }
grep -q "note: the synthetic negatives start after --warmup-epochs 10 and the run has 1 epoch: it trains as --method moco" "$tmp/o" \
  || { cat "$tmp/o"; fail "no note that the synthetic negatives never start"; }
"$SYNCO" pretrain "${P[@]}" --data "$train" --val "$train" --out "$tmp/pi" > "$tmp/o" 2> "$tmp/err" || { cat "$tmp/o" "$tmp/err"; fail "pretrain --val = --data"; }
grep -q "warning: 300 of the 300 --val images are --data images" "$tmp/err" || { cat "$tmp/err"; fail "pretrain: no word that --val is --data"; }
# more --k than training images, more --labels per class than a class has: said
"$SYNCO" knn "${model[@]}" --train "$train" --holdout 5 --k 1000 > /dev/null 2> "$tmp/err" || { cat "$tmp/err"; fail "knn --k 1000"; }
grep -q "warning: --k 1000 is more than the 250 training images: all of them vote" "$tmp/err" || { cat "$tmp/err"; fail "knn: no word of --k past the images"; }
"$SYNCO" finetune "${model[@]}" --train "$train" --holdout 5 --labels 40 --epochs 1 --batch 20 > "$tmp/ft.txt" 2> "$tmp/err" \
  || { cat "$tmp/err"; fail "finetune --labels 40"; }
grep -q "warning: --labels 40 asks 40 images per class; some classes have fewer, so 250 images are labelled, not 400" "$tmp/err" \
  || { cat "$tmp/err"; fail "finetune: no word of --labels past a class's images"; }
grep -q "fine-tuning of .* on 40 labels per class (250 images, 10 classes)" "$tmp/ft.txt" || { cat "$tmp/ft.txt"; fail "finetune's summary of --labels N"; }
# more threads than cores: said, once
"$SYNCO" knn --random-init --cifar-stem --width 8 --batch 50 --threads $(( $(nproc) + 1 )) --train "$train" --holdout 5 \
  > /dev/null 2> "$tmp/err" || { cat "$tmp/err"; fail "knn with more threads than cores"; }
[ "$(grep -c "warning: $(( $(nproc) + 1 )) threads on $(nproc) core" "$tmp/err")" = 1 ] || { cat "$tmp/err"; fail "knn: no warning for too many threads"; }
grep -q "top-1 [0-9.]*%  top-5 [0-9.]*%" "$tmp/knn.txt" || { cat "$tmp/knn.txt"; fail "knn human summary"; }
# with 5 classes or fewer every image is in its top 5: no top-5 printed (the JSON keeps it)
mkdir -p "$tmp/three"; for c in $(ls "$train" | head -3); do ln -s "$train/$c" "$tmp/three/$c"; done
"$SYNCO" knn "${model[@]}" --train "$tmp/three" --holdout 5 --k 5 > "$tmp/k3.txt" 2> /dev/null || fail "knn on 3 classes"
grep -q "top-1 [0-9.]*%  (3 classes: no top-5)" "$tmp/k3.txt" || { cat "$tmp/k3.txt"; fail "knn on 3 classes: top-5 printed"; }
mkdir -p "$tmp/one"; ln -s "$train/$(ls "$train" | head -1)" "$tmp/one/"
"$SYNCO" knn "${model[@]}" --train "$tmp/one" --holdout 5 --k 5 > /dev/null 2> "$tmp/err" || { cat "$tmp/err"; fail "knn on 1 class"; }
grep -q "warning: $tmp/one has 1 class: every image is given it" "$tmp/err" || { cat "$tmp/err"; fail "knn on 1 class: not said"; }

"$SYNCO" linear "${model[@]}" --train "$train" --holdout 5 --fast --json > "$tmp/lin.json" 2> "$tmp/err" || { cat "$tmp/err"; fail "linear --fast"; }
check_json "$tmp/lin.json" "o['mode'] == 'fast' and 0 <= o['top1'] <= o['top5'] <= 100 and o['lambda'] > 0"
# the MoCo protocol's SGD flags given with --fast change nothing: said; --schedule under --cos is refused
"$SYNCO" linear "${model[@]}" --train "$train" --holdout 5 --fast --epochs 3 --schedule 1,2 > /dev/null 2> "$tmp/err" \
  || { cat "$tmp/err"; fail "linear --fast --epochs"; }
grep -q "warning: --fast fits the classifier by L-BFGS; --epochs, --schedule are the MoCo protocol's (SGD) and change nothing" \
  "$tmp/err" || { cat "$tmp/err"; fail "linear --fast: SGD flags not said to change nothing"; }
rc=0; "$SYNCO" linear "${model[@]}" --train "$train" --holdout 5 --cos --schedule 3 > /dev/null 2> "$tmp/err" || rc=$?
[ "$rc" = 2 ] && grep -q "schedule gives the step schedule's epochs, but --cos is on" "$tmp/err" \
  || { cat "$tmp/err"; fail "linear --cos --schedule: exit $rc"; }
"$SYNCO" linear "${model[@]}" --train "$train" --holdout 5 --epochs 2 --lr 0.1 --schedule 1 --json > "$tmp/lin2.json" 2> "$tmp/err" \
  || { cat "$tmp/err"; fail "linear (MoCo protocol)"; }
check_json "$tmp/lin2.json" "o['mode'] == 'moco' and len(o['curve']) == 2 and abs(o['curve'][1]['lr'] - 0.01) < 1e-12 and 0 <= o['top1'] <= 100"
# MoCo's lr 30 on a random tiny encoder's features: the loss ends far above chance's, and that is said
"$SYNCO" linear "${model[@]}" --train "$train" --holdout 5 --epochs 1 > /dev/null 2> "$tmp/err" || { cat "$tmp/err"; fail "linear --lr 30"; }
grep -q "note: the final train loss .* is far above 2.303 (ln 10, a classifier that guesses): --lr 30 (MoCo's protocol, the default) may be too high" "$tmp/err" \
  || { cat "$tmp/err"; fail "linear: a loss far above chance not said"; }

"$SYNCO" finetune "${model[@]}" --train "$train" --holdout 5 --labels 10 --epochs 1 --batch 20 --json > "$tmp/ft.json" 2> "$tmp/err" \
  || { cat "$tmp/err"; fail "finetune"; }
check_json "$tmp/ft.json" "o['n_labelled'] == 100 and o['labels'] == '10' and 0 <= o['top1'] <= 100 and o['train_loss'] == o['train_loss']"

"$SYNCO" embed "${model[@]}" --data "$train" --out "$tmp/f.npy" --labels-out "$tmp/l.npy" --json > "$tmp/emb.json" 2> /dev/null || fail "embed"
check_json "$tmp/emb.json" "o['n'] == 300 and o['dim'] == 64 and o['files'] == '$tmp/f.files.txt' and o['classes'] == '$tmp/f.classes.txt'"
# Beside the features: the image of each row and the name of each label.
mapfile -t files < "$tmp/f.files.txt"
mapfile -t classes < "$tmp/f.classes.txt"
[ ${#files[@]} -eq 300 ] || fail "f.files.txt has ${#files[@]} lines, not 300"
[ "${classes[*]}" = "airplane automobile bird cat deer dog frog horse ship truck" ] || fail "f.classes.txt: ${classes[*]}"
[ "${files[0]}" = "$train/airplane/$(basename "${files[0]}")" ] && [ -f "${files[0]}" ] || fail "f.files.txt row 0: ${files[0]}"
case ${files[299]} in "$train/truck/"*) ;; *) fail "f.files.txt row 299: ${files[299]}" ;; esac
if /usr/bin/python3 -c 'import numpy' 2> /dev/null; then
  /usr/bin/python3 -c "
import numpy as np
f = np.load('$tmp/f.npy'); l = np.load('$tmp/l.npy')
assert f.shape == (300, 64) and f.dtype == np.float32 and np.isfinite(f).all(), f.shape
assert l.shape == (300,) and l.dtype == np.int64 and sorted(set(l.tolist())) == list(range(10))
" || fail "embed output does not load with numpy"
fi

# A checkpoint with a queue when pretraining works, else the random initialization.
ckpt=(--random-init --cifar-stem --width 8)
if "$SYNCO" pretrain --data "$train" --arch resnet18 --width 8 --cifar-stem --image-size 32 --epochs 1 -b 40 \
     --moco-k 400 --n-hard 64 --n1 16 --n2 16 --n3 16 --n4 8 --n5 8 --n6 8 --warmup-epochs 0 --threads 2 --workers 1 --out "$tmp/run" > /dev/null 2>&1; then
  ckpt=(--ckpt "$tmp/run/last.safetensors")
fi
echo "analyze: ${ckpt[*]}"
if [ "${ckpt[0]}" = --ckpt ]; then # --width against a checkpoint's own model: refused (once silently ignored)
  rc=0; "$SYNCO" knn "${ckpt[@]}" --width 16 --train "$train" --holdout 5 --threads 2 > /dev/null 2> "$tmp/err" || rc=$?
  [ $rc -eq 2 ] && grep -q "width 16 does not fit --ckpt ${ckpt[1]}, a resnet18 of width 8 with the CIFAR stem: drop it" "$tmp/err" \
    || { cat "$tmp/err"; fail "knn --width 16 of a width-8 checkpoint: rc $rc"; }
  "$SYNCO" knn "${ckpt[@]}" --width 8 --cifar-stem --arch resnet18 --train "$train" --holdout 5 --threads 2 --batch 50 \
    > /dev/null 2> "$tmp/err" || { cat "$tmp/err"; fail "knn with its checkpoint's own --width"; }
fi
"$SYNCO" analyze "${ckpt[@]}" --threads 2 --batch 50 --data "$train" --per-class 10 --out "$tmp/an" --json > "$tmp/an.json" 2> "$tmp/err" \
  || { cat "$tmp/err"; fail "analyze"; }
check_json "$tmp/an.json" "o['n'] == 100 and 0 <= o['proxy_accuracy'] <= 100 and 0 <= o['alignment'] <= 4 and o['uniformity'] <= 0 and o['ratio']['n'] == 100 and len(o['matching_probs']) > 0"
check_json "$tmp/an/metrics.json" "o['command'] == 'analyze'"
png_size() { python3 -c "
import struct, sys
b = open(sys.argv[1], 'rb').read(24)
assert b[:8] == b'\x89PNG\r\n\x1a\n' and b[12:16] == b'IHDR', 'not a PNG'
print('%dx%d' % struct.unpack('>II', b[16:24]))" "$1"; }
[ "${ckpt[0]}" = --ckpt ] && ! grep -q "queue is not yet full" "$tmp/err" && fail "no warning: 7 steps x 40 < K 400"
[ "${ckpt[0]}" = --ckpt ] && check_json "$tmp/an.json" "o['queue_full'] is False and o['queue_rows_filled'] == 280"
for p in proxy_margin alignment_uniformity ratio matching_probs; do
  [ "$(png_size "$tmp/an/$p.png")" = 800x560 ] || fail "$p.png"
  grep -q "<svg" "$tmp/an/$p.svg" || fail "$p.svg"
done
[ "$(png_size "$tmp/an/analysis.png")" = 1400x1000 ] || fail "analysis.png"
# Several models on the same images, as the paper's figures compare runs: one series each, all in metrics.json.
"$SYNCO" analyze "${ckpt[@]}" --ckpt "$tmp/f.npy.none,$tmp/f.npy.none2" --threads 2 --batch 50 --data "$train" --per-class 4 --out "$tmp/an3" \
  > /dev/null 2> "$tmp/err" && fail "analyze with missing --ckpt files accepted"
grep -q "f.npy.none" "$tmp/err" || { cat "$tmp/err"; fail "analyze: missing second --ckpt not named"; }
if [ "${ckpt[0]}" = --ckpt ]; then
  "$SYNCO" export "${ckpt[@]}" --out "$tmp/enc.safetensors" > /dev/null || fail "export"
  "$SYNCO" analyze "${ckpt[@]}" --ckpt "$tmp/enc.safetensors" --threads 2 --batch 50 --data "$train" --per-class 4 --out "$tmp/an2" \
    --json > "$tmp/an2.json" 2> "$tmp/err" || { cat "$tmp/err"; fail "analyze with two --ckpt"; }
  check_json "$tmp/an2.json" "len(o['models']) == 2 and o['models'][1]['model'] == '$tmp/enc.safetensors' and o['models'][0]['model'] == o['model'] and o['models'][1]['K'] == 20"
  [ "$(png_size "$tmp/an2/analysis.png")" = 1400x1000 ] || fail "analysis.png of two models"
fi

mkdir -p "$tmp/runA" "$tmp/runB"
for r in A B; do
  for e in 1 2 3; do
    echo "{\"step\":$((e * 10 - 5)),\"epoch\":$e,\"lr\":0.0$e,\"loss\":$((9 - e)).5,\"acc\":$((e * 10)).0}"
    echo "{\"epoch\":$e,\"step\":$((e * 10)),\"lr\":0.0$e,\"loss\":$((9 - e)),\"acc\":$((e * 10)),\"epoch_time_s\":1.5,\"knn_top1\":$((e * 7)).5}"
  done > "$tmp/run$r/log.jsonl"
done
"$SYNCO" plot "$tmp/runA" "$tmp/runB/log.jsonl" --out "$tmp/curves.png" --width 900 --height 600 --svg --json > "$tmp/plot.json" || fail "plot"
check_json "$tmp/plot.json" "[r['name'] for r in o['runs']] == ['runA', 'runB'] and o['runs'][0]['epoch_lines'] == 3 and o['runs'][0]['epochs'] == [0.5, 2.5]"
# A run resumed on other data: 6 steps per epoch for epochs 1-3, then 1 (steps 19 and 20), a step row every 3 steps
# and at each epoch's end. Its curve runs from epoch 0.5 (step 3) to 5, where dividing the steps by the last
# epoch's steps per epoch once drew it from 3 to 20.
mkdir -p "$tmp/runC"
s=0
for e in 1 2 3 4 5; do
  spe=$((e <= 3 ? 6 : 1))
  for ((k = 1; k <= spe; k++)); do
    s=$((s + 1))
    if [ $((s % 3)) = 0 ] || [ $k = $spe ]; then echo "{\"kind\":\"step\",\"step\":$s,\"epoch\":$e,\"loss\":2.5}"; fi
  done
  echo "{\"kind\":\"epoch\",\"epoch\":$e,\"steps\":$spe,\"loss\":2.5,\"epoch_time_s\":1.5}"
done > "$tmp/runC/log.jsonl"
"$SYNCO" plot "$tmp/runC" --out "$tmp/curvesC.png" --json > "$tmp/plotC.json" || fail "plot of a resumed run"
check_json "$tmp/plotC.json" "o['runs'][0]['interval_lines'] == 8 and o['runs'][0]['epochs'] == [0.5, 5]"
[ "$(png_size "$tmp/curves.png")" = 900x600 ] || fail "curves.png"
grep -q "<svg" "$tmp/curves.svg" || fail "curves.svg"

# Misuse: exit 2 for bad usage, 1 with a message for bad input.
set +e
"$SYNCO" knn "${model[@]}" > /dev/null 2>&1; [ $? -eq 2 ] || fail "knn without --train should exit 2"
"$SYNCO" knn --ckpt "$tmp/none.safetensors" --train "$train" --holdout 5 > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "none.safetensors" "$tmp/err" || fail "missing checkpoint: rc $rc, $(cat "$tmp/err")"
"$SYNCO" finetune "${model[@]}" --train "$train" --holdout 5 --labels 0% > /dev/null 2>&1; [ $? -eq 2 ] || fail "bad --labels"
"$SYNCO" knn "${model[@]}" --train "$train" --val "$train" --holdout 5 > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "holdout 5 holds out part of --train: give it without --val" "$tmp/err" || fail "--holdout beside --val: rc $rc, $(cat "$tmp/err")"
"$SYNCO" linear "${model[@]}" --train "$train" --val-split test > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "val-split test: no --val to take that split of" "$tmp/err" || fail "--val-split NAME without --val: rc $rc, $(cat "$tmp/err")"
# --val whose class folders are named otherwise than --train's: refused (labels are paired by class index), where it
# once reported an accuracy of labels paired by position.
cp -r "$train" "$tmp/renamed"; mv "$tmp/renamed/airplane" "$tmp/renamed/plane"
for c in knn linear; do
  "$SYNCO" $c "${model[@]}" --train "$train" --val "$tmp/renamed" > /dev/null 2> "$tmp/err"; rc=$?
  [ $rc -eq 1 ] && grep -q "name their classes differently: class 1 of 10 is 'airplane' in the first and 'automobile'" "$tmp/err" \
    || fail "$c with renamed --val classes: rc $rc, $(cat "$tmp/err")"
done
# a figure the flags cannot make is a usage error (exit 2) found before the logs are read
"$SYNCO" plot "$tmp/runB" --out "$tmp/x.jpg" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "x.jpg: plot files end in .png, .svg or .pdf" "$tmp/err" || fail "plot --out x.jpg: rc $rc, $(cat "$tmp/err")"
"$SYNCO" plot "$tmp/runB" --out "$tmp/x.png" --width 10 > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--width 10 is out of range (50 to 16384)" "$tmp/err" || fail "plot --width 10: rc $rc, $(cat "$tmp/err")"
# a last line cut short (a run killed while writing it) is read without it, and said
cp -r "$tmp/runB" "$tmp/runCut"; printf '{"kind":"step","step":' >> "$tmp/runCut/log.jsonl"
"$SYNCO" plot "$tmp/runCut" --out "$tmp/cut.png" > /dev/null 2> "$tmp/err" || fail "plot of a log cut short: $(cat "$tmp/err")"
grep -q "log.jsonl:[0-9]*: its last line is cut short" "$tmp/err" || fail "plot: a cut last line not said: $(cat "$tmp/err")"
echo "garbage" > "$tmp/runA/log.jsonl"
"$SYNCO" plot "$tmp/runA" --out "$tmp/x.png" > /dev/null 2> "$tmp/err"; [ $? -eq 1 ] || fail "plot of a bad log"
set -e
echo "eval_commands: ok"
