#!/usr/bin/env bash
# TensorBoard's own reader (PyPI's tensorboard: its EventAccumulator, what `tensorboard --logdir` uses) loads the event
# file of a short run: the scalars of log.jsonl at their steps; and after a resume from an earlier checkpoint, the
# steps trained again once (the restart marker drops the first file's). Skips where tensorboard is not installed (set
# SYNCO_TB_PYTHON to a Python that has it, e.g. a venv's) or synco was built without protobuf-c.
set -euo pipefail
. "$(dirname "$0")/common.inc"
py=${SYNCO_TB_PYTHON:-python3}
"$py" -c "import tensorboard" > /dev/null 2>&1 || skip "no tensorboard in $py (pip install tensorboard in a venv; SYNCO_TB_PYTHON=venv/bin/python3)"
info=$("$SYNCO" info) # captured before grep reads it (see e2e/script_lint)
grep -q "^tensorboard: event files" <<< "$info" || skip "synco built without protobuf-c"
train=$(small_cifar '000[0-3].jpg' "$tmp/train" 4)
"$SYNCO" pretrain --data "$train" --arch resnet18 --width 8 --cifar-stem --image-size 32 --epochs 2 -b 16 --moco-k 64 \
  --n-hard 16 --n1 4 --n2 4 --n3 4 --n4 2 --n5 2 --n6 2 --warmup-epochs 0 --print-freq 1 --threads 2 --workers 1 \
  --save-every 1 --out "$tmp/run" > "$tmp/out.txt" 2>&1 || { cat "$tmp/out.txt"; fail "pretrain"; }
check() { "$py" - "$tmp/run" <<'PY'
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run = sys.argv[1]
acc = EventAccumulator(run)
acc.Reload()
tags = acc.Tags()['scalars']
for t in ('train/loss', 'train/acc', 'train/loss_moco', 'train/acc_moco', 'train/lr', 'train/images_per_s', 'probe/acc'):
    assert t in tags, (t, tags)
rows = [json.loads(l) for l in open(run + '/log.jsonl') if '"step"' in l]
loss = acc.Scalars('train/loss')
assert [e.step for e in loss] == [r['step'] for r in rows], (loss, rows)
for e, r in zip(loss, rows):
    assert abs(e.value - r['loss']) <= 1e-5 * r['loss'] + 1e-6, (e, r)
print('tensorboard reads %d scalar tags, %d train/loss points' % (len(tags), len(loss)))
PY
}
check
# resumed from the first epoch's checkpoint: the second epoch is trained again, log.jsonl is cut back to the
# checkpoint, and the new event file's restart marker (SessionLog START) makes TensorBoard drop the first file's
# points of the second epoch, so its steps are log.jsonl's again, each once
sleep 1 # event files are read in name order, and a name holds the second it was made in
"$SYNCO" pretrain --resume "$tmp/run/checkpoint_0001.safetensors" > "$tmp/out.txt" 2>&1 || { cat "$tmp/out.txt"; fail "resume"; }
[ "$(ls "$tmp/run"/events.out.tfevents.* | wc -l)" = 2 ] || fail "not one event file per start"
check
echo "tensorboard_read: ok"
