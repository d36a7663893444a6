#!/usr/bin/env bash
# Resuming without surprises (issue 21, point 6):
# - config.json and the checkpoint keep --data resolved (absolute), so a run copied elsewhere and resumed from
#   another working directory still finds its images, and says that the path came from the run and --data
#   overrides it; data that moved is refused naming the checkpoint, the key and the flag, and --data then works,
#   said as a changed setting (the same folder by another path is none);
# - --resume with more --epochs says that the cosine schedule is stretched (the next epoch's rate jumps), and
#   --schedule-epochs OLD keeps the run's schedule: the epochs past its end keep its last rate (log.jsonl's lr);
# - --val given on the command line must exist (`--val null` was taken in silence).
# Needs python3 (to read log.jsonl).
set -euo pipefail
. "$(dirname "$0")/common.inc"
command -v python3 > /dev/null || skip "python3 not installed"
SYNCO=$(realpath "$SYNCO")
mkdir -p "$tmp/w2"
class_subset "$tmp/w1/d" 24 airplane bird
F8=(--arch resnet18 --cifar-stem --width 8 -b 8 --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4
    --threads 1 --image-size 32 --bn-splits 2 --workers 1 --lr 0.03)
lr_of_epoch() { # lr_of_epoch RUN EPOCH (1-based): the rate log.jsonl gives that epoch
  python3 - "$1/log.jsonl" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
lrs = {r['lr'] for r in rows if r.get('epoch') == int(sys.argv[2]) and 'lr' in r}
assert len(lrs) == 1, lrs
print('%.6g' % lrs.pop())
PY
}

# a run of 2 epochs stopped after 1, started with a relative --data in w1
(cd "$tmp/w1" && "$SYNCO" pretrain "${F8[@]}" --epochs 2 --stop-epoch 1 --data d --out run > "$tmp/o" 2>&1) \
  || { cat "$tmp/o"; fail "first run"; }
python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))["data"]; assert d == sys.argv[2], (d, sys.argv[2])' \
  "$tmp/w1/run/config.json" "$(realpath "$tmp/w1/d")" || fail "config.json does not keep --data resolved"

# copied elsewhere and resumed from another directory: the run's data path works, and is said to be the run's
cp -r "$tmp/w1/run" "$tmp/w2/copy"
(cd "$tmp/w2" && "$SYNCO" pretrain --resume copy --threads 1 --workers 1 > "$tmp/o" 2> "$tmp/e") \
  || { cat "$tmp/o" "$tmp/e"; fail "a copied run resumed from another directory"; }
err=$(cat "$tmp/e")
[[ "$err" == *"data: $(realpath "$tmp/w1/d") (the training images, from copy/last.safetensors: synco.config; --data overrides it)"* ]] \
  || { echo "$err"; fail "the resumed run does not say where its data path came from"; }

# the data moved: refused naming the checkpoint, the key and the flag; --data then works
mv "$tmp/w1/d" "$tmp/w1/moved"
cp -r "$tmp/w1/run" "$tmp/w2/copy2"
refused "copy2/last.safetensors: synco.config: data $(realpath "$tmp/w1")/d: No such file or directory (the training images: the path comes from the run; give --data PATH" \
  bash -c "cd '$tmp/w2' && '$SYNCO' pretrain --resume copy2 --threads 1 --workers 1"
(cd "$tmp/w2" && "$SYNCO" pretrain --resume copy2 --data ../w1/moved --threads 1 --workers 1 > "$tmp/o" 2>&1) \
  || { cat "$tmp/o"; fail "--data given to a run whose data moved"; }
grep -q "resuming with --data ../w1/moved (the run had $(realpath "$tmp/w1")/d)" "$tmp/o" || { cat "$tmp/o"; fail "another --data not said"; }
# the same run (its metadata names the data where it was): the same tensors, bit for bit
compare_ckpt "$tmp/w2/copy2/last.safetensors" "$tmp/w2/copy/last.safetensors" 0 0 > /dev/null \
  || fail "the same run on moved data differs"

# more --epochs: the stretch is said, with the flag that keeps the schedule; both rates are as said
cp -r "$tmp/w2/copy" "$tmp/w2/keep"
"$SYNCO" pretrain --resume "$tmp/w2/copy" --epochs 3 --data "$tmp/w1/moved" --threads 1 --workers 1 > "$tmp/o" 2> "$tmp/e" \
  || { cat "$tmp/o" "$tmp/e"; fail "--epochs 3"; }
err=$(cat "$tmp/e")
[[ "$err" == *"--epochs 3 (the run had 2) stretches its cosine learning-rate schedule to 3 epochs: epoch 3 trains at lr 0.0075, where the run's schedule gives 0.015; --schedule-epochs 2 keeps the run's schedule"* ]] \
  || { echo "$err"; fail "the stretched schedule is not said"; }
[ "$(lr_of_epoch "$tmp/w2/copy" 2)" = 0.015 ] && [ "$(lr_of_epoch "$tmp/w2/copy" 3)" = 0.0075 ] \
  || fail "stretched: epochs 2 and 3 trained at $(lr_of_epoch "$tmp/w2/copy" 2), $(lr_of_epoch "$tmp/w2/copy" 3)"
"$SYNCO" pretrain --resume "$tmp/w2/keep" --epochs 3 --schedule-epochs 2 --data "$tmp/w1/moved" --threads 1 --workers 1 \
  > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/o" "$tmp/e"; fail "--schedule-epochs 2"; }
err=$(cat "$tmp/e")
[[ "$err" != *"stretches"* ]] || { echo "$err"; fail "--schedule-epochs given, and still told of a stretch"; }
[ "$(lr_of_epoch "$tmp/w2/keep" 3)" = 0.015 ] || fail "kept schedule: epoch 3 trained at $(lr_of_epoch "$tmp/w2/keep" 3)"
python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["schedule_epochs"] == 2' "$tmp/w2/keep/config.json" \
  || fail "config.json does not keep --schedule-epochs"

# --val that is not there is refused before anything is written
refused "--val null: No such file or directory" "$SYNCO" pretrain "${F8[@]}" --epochs 1 --data "$tmp/w1/moved" \
  --val null --out "$tmp/v"
[ ! -e "$tmp/v" ] || fail "a refused --val created its run directory"
echo "resume_moved: ok"
