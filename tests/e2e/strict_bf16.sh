#!/usr/bin/env bash
# Every command under a GPU's bf16 arithmetic, without a GPU: the strict backend under --precision bf16 emulates the
# cuda backend's (NHWC bf16 activations between layers, bf16 products, fp32 statistics and parameters;
# backend/strict/bf16_emul.c) over memory the host cannot touch. So host code that assumed fp32 activations (a copy
# of 4 bytes a value, a tensor read as floats) fails here as it would on a GPU. Checked: pretrain (SynCo with its
# negatives, MoCo-v2), a run stopped and resumed equals the uninterrupted one bit for bit, a bf16 run resumed in fp32,
# its checkpoint fp32 and finite, and knn, linear, finetune, embed, analyze and bench under bf16, each finishing
# with finite results; the bf16 model's kNN and linear accuracy within reach of the fp32 one's on the same images.
set -euo pipefail
. "$(dirname "$0")/common.inc"
train=$(small_cifar '000?.jpg' "$tmp/data" 10) # 10 per class
small=(--cifar-stem --width 8 --threads 2)
pre=("${small[@]}" --recipe cifar -b 48 --moco-k 96 --n-hard 20 --epochs 2 --data "$train" --seed 5 -j 2
     --warmup-epochs 0 --backend strict)

run() { # NAME CMD...: runs it, keeps its standard output in $tmp/NAME.txt
  local name=$1
  shift
  "$@" > "$tmp/$name.txt" 2> "$tmp/$name.err" || { cat "$tmp/$name.txt" "$tmp/$name.err"; fail "$name exited non-zero"; }
}

run synco "$SYNCO" pretrain "${pre[@]}" --precision bf16 --out "$tmp/synco"
grep -q '"precision":"bf16"' "$tmp/synco/config.json" || fail "config.json does not say bf16"
grep -q 'backend strict, bf16' "$tmp/synco.txt" || { cat "$tmp/synco.txt"; fail "the header does not name bf16"; }
run moco "$SYNCO" pretrain "${pre[@]}" --precision bf16 --method moco --out "$tmp/moco"
run half "$SYNCO" pretrain "${pre[@]}" --precision bf16 --stop-epoch 1 --out "$tmp/res"
run resume "$SYNCO" pretrain --resume "$tmp/res"
compare_ckpt "$tmp/res/last.safetensors" "$tmp/synco/last.safetensors" 0 0 # resumed in bf16 = uninterrupted
run half2 "$SYNCO" pretrain "${pre[@]}" --precision bf16 --stop-epoch 1 --out "$tmp/res32"
run resume32 "$SYNCO" pretrain --resume "$tmp/res32" --precision fp32
python3 - "$tmp/synco/last.safetensors" "$tmp/res32/last.safetensors" <<'PY' || fail "a checkpoint is not fp32 and finite"
import json, math, struct, sys
for p in sys.argv[1:]:
    with open(p, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); body = f.read()
    h.pop('__metadata__', None)
    for k, v in h.items():
        if v['dtype'] != 'F32': continue
        a, b = v['data_offsets']
        vals = struct.unpack('<%df' % ((b - a) // 4), body[a:b])
        assert all(math.isfinite(x) for x in vals), (p, k)
PY

ck=$tmp/synco/last.safetensors
ev=(--train "$train" --holdout 3 --threads 2 --batch 20 --backend strict)
for prec in fp32 bf16; do
  run "knn_$prec" "$SYNCO" knn --ckpt "$ck" "${ev[@]}" --k 10 --json --precision "$prec"
  run "linf_$prec" "$SYNCO" linear --ckpt "$ck" "${ev[@]}" --fast --json --precision "$prec"
done
run ft "$SYNCO" finetune --ckpt "$ck" "${ev[@]}" --labels 5 --epochs 2 --json --precision bf16
run embed "$SYNCO" embed --ckpt "$ck" --data "$train" --out "$tmp/embed.npy" --backend strict --threads 2 --precision bf16
run analyze "$SYNCO" analyze --ckpt "$ck" --data "$train" --out "$tmp/an" --json --backend strict --threads 2 \
  --precision bf16
run bench "$SYNCO" bench step "${small[@]}" --batch 32 --moco-k 256 --warmup 1 --iters 2 --json --backend strict \
  --precision bf16
python3 - "$tmp" <<'PY' || fail "an evaluation under bf16 gave a non-finite or far-off result"
import json, math, os, sys
t = sys.argv[1]
last = lambda n: json.loads(open(os.path.join(t, n + '.txt')).read().strip().splitlines()[-1])
def finite(o):
    if isinstance(o, dict): return all(finite(v) for v in o.values())
    if isinstance(o, list): return all(finite(v) for v in o)
    return not isinstance(o, float) or math.isfinite(o)
for n in ('knn_fp32', 'knn_bf16', 'linf_fp32', 'linf_bf16', 'ft', 'analyze', 'bench'):
    assert finite(last(n)), n
# the same features, bf16 against fp32: the accuracies of 30 held-out images agree within 5 of them
for n in ('knn', 'linf'):
    a, b = last(n + '_fp32'), last(n + '_bf16')
    key = 'top1' if 'top1' in a else next(k for k in a if 'acc' in k or 'top1' in k)
    assert abs(a[key] - b[key]) <= 100 * 5 / 30 + 1e-9, (n, key, a[key], b[key])
PY
[ -s "$tmp/embed.npy" ] || fail "embed wrote nothing"
grep -q '"precision":"bf16"' "$tmp/bench.txt" || fail "bench did not run in bf16"
echo "strict backend under bf16: every command runs, resumes exactly, and stays finite"
