#!/usr/bin/env bash
# A run directory is never damaged: after a tiny run, every refused command (a fresh run into it without --force,
# bad flags, a missing --val, a damaged checkpoint, a shape conflict, a second run while the lock is held, export
# onto its own checkpoint) leaves every file of it byte-identical. Resume by directory takes the run's settings
# from the checkpoint; stale .tmp files are removed and log.jsonl has no rows past the checkpoint after a resume.
# Also: runs without --out never share runs/<date-time>, config.json is valid JSON for any path, and datasets
# warn about symlink loops and missing CIFAR batches.
set -euo pipefail
. "$(dirname "$0")/common.inc"
SYNCO=$(cd "$(dirname "$SYNCO")" && pwd)/$(basename "$SYNCO")
data=$tmp/data
first_per_class data/cifar10-small/train "$data" 2
tiny=(--arch resnet18 --cifar-stem --width 8 --image-size 32 --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4
      --n5 4 --n6 4 --threads 1 --workers 1 --bn-splits 2 -b 8 --print-freq 1)
machine=(--threads 1 --workers 1)   # not settings of the run: a resumed run does not take them from the checkpoint
run=$tmp/runs/a
"$SYNCO" pretrain --data "$data" "${tiny[@]}" --epochs 2 --save-every 1 --out "$run" > "$tmp/o" 2>&1 \
  || { cat "$tmp/o"; fail "the first run failed"; }
snapshot() { (cd "$run" && sha256sum .lock ./*); }
snapshot > "$tmp/snap"
# expect_refused PATTERN CMD...: fails, says PATTERN, and leaves the run directory byte-identical.
expect_refused() {
  local pat=$1; shift
  if "$@" > "$tmp/o" 2> "$tmp/e"; then cat "$tmp/o" "$tmp/e"; fail "succeeded: $*"; fi
  grep -q -- "$pat" "$tmp/e" || { cat "$tmp/e"; fail "message lacks '$pat': $*"; }
  snapshot > "$tmp/snap2"
  cmp -s "$tmp/snap" "$tmp/snap2" || { diff "$tmp/snap" "$tmp/snap2" || true; fail "the run directory changed: $*"; }
}
expect_refused "$run holds a run: --resume it, or pass --force" "$SYNCO" pretrain --data "$data" "${tiny[@]}" --out "$run"
expect_refused "lr" "$SYNCO" pretrain --data "$data" "${tiny[@]}" --lr -1 --force --out "$run"
expect_refused "lr" "$SYNCO" pretrain --resume "$run" --lr -1 --epochs 3 "${machine[@]}"
expect_refused "nonexistent" "$SYNCO" pretrain --resume "$run" --val "$tmp/nonexistent" --knn-every 1 --epochs 3 "${machine[@]}"
expect_refused "does not fit" "$SYNCO" pretrain --resume "$run" --width 16 --epochs 3 "${machine[@]}"
expect_refused "does not fit" "$SYNCO" pretrain --resume "$run" --moco-k 128 --epochs 3 "${machine[@]}"  # another batch size is allowed (e2e/resume_checks)
mkdir -p "$tmp/empty"
expect_refused "holds no last.safetensors" "$SYNCO" pretrain --resume "$tmp/empty" --out "$run"
python3 - "$run/last.safetensors" "$tmp/neg.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
h['__metadata__']['synco.epoch'] = '-5'
s = json.dumps(h).encode()
s += b' ' * (-len(s) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(s)) + s + b[8 + n:])
PY
expect_refused "epoch '-5' is not an integer" "$SYNCO" pretrain --resume "$tmp/neg.safetensors" --out "$run" --epochs 3 "${machine[@]}"
if command -v flock > /dev/null; then
  # flock(1) holds the lock as another run would; a read-only open leaves the file as it is.
  # Refused before anything else is said: no "resumed from" of a run that goes on elsewhere, and no advice about
  # the files of a run that has no checkpoint yet because it is still going (--force would then be refused too).
  lockmsg() {
    expect_refused "$run is in use by another synco run (pid" "$SYNCO" pretrain --resume "$run" --epochs 3 --threads 1
    if grep -q "resumed from" "$tmp/o" "$tmp/e" 2> /dev/null; then fail "said it resumed a run that is in use"; fi
  }
  earlymsg() {
    expect_refused "$tmp/going is in use by another synco run" "$SYNCO" pretrain --resume "$tmp/going" --threads 1
    expect_refused "$tmp/going is in use by another synco run" "$SYNCO" pretrain --data "$data" --out "$tmp/going" --threads 1
  }
  export -f lockmsg earlymsg expect_refused snapshot fail
  export run tmp SYNCO data
  flock -x "$run/.lock" bash -c lockmsg || fail "the second run was not refused by the lock"
  mkdir -p "$tmp/going"; cp "$run/config.json" "$tmp/going/"; : > "$tmp/going/log.jsonl"
  flock -x "$tmp/going/.lock" bash -c earlymsg || fail "a run without a checkpoint yet was not refused by its lock"
fi
expect_refused "is the --ckpt file itself" "$SYNCO" export --ckpt "$run/last.safetensors" --out "$run/last.safetensors"
ln -s "$run" "$tmp/alias"
expect_refused "is the --ckpt file itself" "$SYNCO" export --ckpt "$run/last.safetensors" --out "$tmp/alias/./last.safetensors"

# Resume by directory: the settings come from the checkpoint (only --epochs given).
"$SYNCO" pretrain --resume "$run" --epochs 3 "${machine[@]}" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "--resume DIR failed"; }
grep -q "resumed from $run/last.safetensors at epoch 2" "$tmp/o" || { cat "$tmp/o"; fail "did not resume at epoch 2"; }
grep -q "width 8, CIFAR stem" "$tmp/o" || { cat "$tmp/o"; fail "the settings were not taken from the checkpoint"; }
# A run cut off by kill -9: stale .tmp files and log rows past its last checkpoint (here: a copy of epoch 3's
# checkpoint put back after a fourth epoch, and a torn last row).
cp "$run/last.safetensors" "$tmp/e3.safetensors"
"$SYNCO" pretrain --resume "$run" --epochs 4 "${machine[@]}" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "resume to 4 epochs failed"; }
cp "$tmp/e3.safetensors" "$run/last.safetensors"
echo partial > "$run/checkpoint_0004.safetensors.tmp"
echo partial > "$run/last.safetensors.tmp"
printf '{"step":9,"epo' >> "$run/log.jsonl"
"$SYNCO" pretrain --out "$run" --resume --epochs 4 "${machine[@]}" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "bare --resume with --out failed"; }
grep -q "removed 2 stale temporary files" "$tmp/o" || { cat "$tmp/o"; fail "no word of the stale .tmp files"; }
[ ! -e "$run/checkpoint_0004.safetensors.tmp" ] && [ ! -e "$run/last.safetensors.tmp" ] || fail "stale .tmp files left"
python3 - "$run" <<'PY'
import json, sys
run = sys.argv[1]
rows = [json.loads(l) for l in open(run + '/log.jsonl')]
epochs = [r['epoch'] for r in rows if 'epoch_time_s' in r]
steps = [r['step'] for r in rows if 'epoch_time_s' not in r and 'step' in r]
assert epochs == [1, 2, 3, 4], epochs
assert steps == sorted(set(steps)) and steps[-1] == 8, steps
cfg = json.load(open(run + '/config.json'))
assert cfg['epochs'] == 4 and cfg['width'] == 8 and cfg['moco_k'] == 64 and cfg['n4'] == 4, cfg
PY

# --force starts afresh, removing the old run's files.
"$SYNCO" pretrain --data "$data" "${tiny[@]}" --epochs 1 --force --out "$run" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "--force failed"; }
[ ! -e "$run/checkpoint_0002.safetensors" ] || fail "--force kept the old run's checkpoints"

# No --out: a new runs/<date-time>, never one that exists (those of the next two minutes are taken here).
mkdir -p "$tmp/cwd/runs"
now=$(date +%s)
for i in $(seq 0 120); do
  d=$tmp/cwd/runs/$(date -d "@$((now + i))" +%Y%m%d-%H%M%S); mkdir -p "$d"; echo keep > "$d/config.json"
done
(cd "$tmp/cwd" && "$SYNCO" pretrain --data "$data" "${tiny[@]}" --epochs 1 > "$tmp/o" 2>&1) || { cat "$tmp/o"; fail "run without --out failed"; }
dir=$(sed -n 's/.*run directory: //p' "$tmp/o")
[ -s "$tmp/cwd/$dir/last.safetensors" ] || { cat "$tmp/o"; fail "no run in $dir"; }
for f in "$tmp"/cwd/runs/*/config.json; do
  [ "$f" = "$tmp/cwd/$dir/config.json" ] || [ "$(cat "$f")" = keep ] || fail "$f was overwritten"
done

# config.json is JSON whatever the path holds.
q=$tmp/'q"dir\x'
cp -r "$data" "$q"
"$SYNCO" pretrain --data "$q" "${tiny[@]}" --epochs 1 --out "$tmp/runs/q" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "run on $q failed"; }
python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["data"] == sys.argv[2]' "$tmp/runs/q/config.json" "$q" \
  || fail "config.json does not hold the --data path"

# Datasets: a symlink loop is walked once (with a warning); CIFAR with one batch of five is named; a label out of
# range is an error naming file and record. (-b 64 stops each before training, after the dataset is open.)
big=(--arch resnet18 --cifar-stem --width 8 --image-size 32 -b 64 --moco-k 64 --method moco --threads 1 --out "$tmp/runs/x")
mkdir -p "$tmp/loop"
cp -r "$data/cat" "$data/dog" "$tmp/loop/"
ln -s .. "$tmp/loop/cat/up"
"$SYNCO" pretrain --data "$tmp/loop" "${big[@]}" > "$tmp/o" 2>&1 && fail "pretrain on 4 images with -b 64 succeeded"
grep -q "has 4 images" "$tmp/o" || { cat "$tmp/o"; fail "the symlink loop multiplied the images"; }
grep -q "warning: .*cat/up: skipped" "$tmp/o" || { cat "$tmp/o"; fail "no warning about the symlink loop"; }
mkdir -p "$tmp/cifar" "$tmp/cifarbad"
python3 - "$tmp" <<'PY'
import sys
t = sys.argv[1]
b = bytearray()
for i in range(20): b += bytes([i % 10]) + bytes(3072)
open(t + '/cifar/data_batch_1.bin', 'wb').write(b)
b[7 * 3073] = 12
open(t + '/cifarbad/data_batch_1.bin', 'wb').write(b)
PY
"$SYNCO" pretrain --data "$tmp/cifar" "${big[@]}" > "$tmp/o" 2>&1 && fail "pretrain on 20 images with -b 64 succeeded"
grep -q "holds 1 of the 5 training batches" "$tmp/o" || { cat "$tmp/o"; fail "no warning about the missing CIFAR batches"; }
"$SYNCO" pretrain --data "$tmp/cifarbad" "${big[@]}" > "$tmp/o" 2>&1 && fail "a CIFAR label of 12 was accepted"
grep -q "data_batch_1.bin: record 7 has label 12" "$tmp/o" || { cat "$tmp/o"; fail "the bad label is not named"; }
[ ! -e "$tmp/runs/x" ] || fail "a refused run created its directory"
echo "run_dir: ok"
