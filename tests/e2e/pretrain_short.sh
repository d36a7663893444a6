#!/usr/bin/env bash
# End to end: one short epoch of SynCo pretraining through the real command on real CIFAR-10 images
# (a subset of ../shared/data, or the bundled data/ when ../shared is absent), then check the run directory.
set -euo pipefail
. "$(dirname "$0")/common.inc"
train=$(small_cifar '00[0-3]?.jpg' "$tmp/train" 40)                          # 40 per class
val=$(small_cifar '049?.jpg' "$tmp/val" 10 data/cifar10-small/val)            # 10 per class, disjoint
run=$tmp/run
"$SYNCO" pretrain --data "$train" --val "$val" --arch resnet18 --width 8 --cifar-stem --image-size 32 \
  --epochs 1 -b 40 --moco-k 400 --n-hard 64 --n1 16 --n2 16 --n3 16 --n4 8 --n5 8 --n6 8 --warmup-epochs 0 \
  --knn-every 1 --knn-k 20 --print-freq 2 --threads 2 --workers 1 --out "$run" > "$tmp/out.txt" 2> "$tmp/err.txt" \
  || { cat "$tmp/err.txt"; fail "pretrain exited non-zero"; }
cat "$tmp/out.txt"
[ -s "$run/config.json" ] || fail "no config.json"
[ -s "$run/last.safetensors" ] || fail "no last.safetensors"
[ ! -e "$run/last.safetensors.tmp" ] || fail "temporary checkpoint left behind"
python3 - "$run" <<'PY'
import json, sys
run = sys.argv[1]
cfg = json.load(open(run + '/config.json'))
assert cfg['arch'] == 'resnet18' and cfg['width'] == 8 and cfg['moco_k'] == 400, cfg
assert [cfg['n%d' % i] for i in range(1, 7)] == [16, 16, 16, 8, 8, 8], cfg
lines = [json.loads(l) for l in open(run + '/log.jsonl')]
assert all(l['kind'] in ('step', 'epoch', 'knn') and l['time'] > 1.6e9 for l in lines), lines
steps = [l for l in lines if l['kind'] == 'step']
epochs = [l for l in lines if l['kind'] == 'epoch']
knn = [l for l in lines if l['kind'] == 'knn']
assert len(steps) >= 2, lines
for l in steps:
    assert set(['step', 'epoch', 'lr', 'loss', 'acc', 'loss_moco', 'acc_moco', 'synthetic', 'images_per_s']) <= set(l), l
    assert l['loss'] > 0 and l['loss'] == l['loss'], l
    assert l['synthetic'] == 72 and l['loss'] > l['loss_moco'], l  # --warmup-epochs 0: counted from the first step
assert len(epochs) == 1 and epochs[0]['steps'] == steps[-1]['step'] and 'step' not in epochs[0], epochs  # no step logged twice
assert [l['step'] for l in steps] == sorted(set(l['step'] for l in steps)), steps
assert [k['epoch'] for k in knn] == [0, 1] and all(0 <= k['knn_top1'] <= 100 for k in knn), knn
assert lines[0]['kind'] == 'knn' and lines[0]['epoch'] == 0, lines[0]
assert all(l['time'] <= m['time'] for l, m in zip(lines, lines[1:])), 'rows in time order'
print('run directory ok:', len(steps), 'step lines, kNN', knn[-1]['knn_top1'])
PY
keys=$(st_keys "$run/last.safetensors")
for k in encoder_q.conv1.weight encoder_k.layer4.1.bn2.running_var encoder_q.fc.2.weight queue queue_ptr optimizer.momentum; do
  grep -qx "$k" <<<"$keys" || fail "checkpoint lacks $k"
done
echo "pretrain_short: ok"
