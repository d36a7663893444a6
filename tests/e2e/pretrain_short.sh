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
steps = [l for l in lines if 'loss' in l and 'epoch_time_s' not in l]
epochs = [l for l in lines if 'epoch_time_s' in l]
assert len(steps) >= 2, lines
for l in steps:
    assert set(['step', 'epoch', 'lr', 'loss', 'acc', 'images_per_s']) <= set(l), l
    assert l['loss'] > 0 and l['loss'] == l['loss'], l
assert len(epochs) == 1 and 'knn_top1' in epochs[0] and 0 <= epochs[0]['knn_top1'] <= 100, epochs
assert lines[0].get('epoch') == 0 and 'knn_top1' in lines[0], lines[0]
print('run directory ok:', len(steps), 'step lines, kNN', epochs[0]['knn_top1'])
PY
keys=$(st_keys "$run/last.safetensors")
for k in encoder_q.conv1.weight encoder_k.layer4.1.bn2.running_var encoder_q.fc.2.weight queue queue_ptr optimizer.momentum; do
  grep -qx "$k" <<<"$keys" || fail "checkpoint lacks $k"
done
echo "pretrain_short: ok"
