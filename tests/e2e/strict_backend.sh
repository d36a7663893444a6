#!/usr/bin/env bash
# Every command on the strict backend (backend/strict: the reference ops over memory the host cannot touch, NaN in
# every new allocation, copy directions checked), each compared with the same command on the reference backend:
# pretrain (MoCo-v2, SynCo with its negatives on from the first epoch, MoCHI, symmetric, resume, --init), knn,
# linear (--fast and SGD), finetune, embed, analyze, export and bench. A host access to backend memory kills the
# command (SIGSEGV, with the allocation and the stack on stderr), host memory handed to an op or a copy in the wrong
# direction fails it; a read of memory nobody wrote shows as a difference from the reference. The arithmetic is the
# reference's, so the outputs must agree bit for bit.
set -euo pipefail
. "$(dirname "$0")/common.inc"
train=$(small_cifar '000?.jpg' "$tmp/data" 10) # 10 per class
small=(--cifar-stem --width 8 --threads 2)
pre=("${small[@]}" --recipe cifar -b 48 --moco-k 96 --n-hard 20 --epochs 2 --data "$train" --seed 5 -j 2)

run() { # NAME CMD...: runs it, keeps its standard output in $tmp/NAME.txt (stderr apart: a sanitizer reports there)
  local name=$1
  shift
  "$@" > "$tmp/$name.txt" 2> "$tmp/$name.err" || { cat "$tmp/$name.txt" "$tmp/$name.err"; fail "$name exited non-zero"; }
}

same_json() { # A B: two --json outputs agree, timings and the backend's name aside
  python3 - "$1" "$2" <<'PY' || fail "$1 and $2 differ"
import json, sys
skip = {'wall_s', 'backend', 'features_s', 'fit_s', 'knn_s', 'seconds', 'images_per_s', 'median_s', 'peak_rss_mb',
        'gflops_per_s', 'conv_median_s', 'step_over_conv', 'planned_mb', 'out', 'loadavg_before', 'loadavg_after'}
def clean(o):
    if isinstance(o, dict): return {k: clean(v) for k, v in o.items() if k not in skip and not k.endswith('_s')}
    if isinstance(o, list): return [clean(v) for v in o]
    return o
a, b = (clean(json.loads(open(p).read().strip().splitlines()[-1])) for p in sys.argv[1:3])
assert a == b, (a, b)
PY
}

for be in ref strict; do
  run "moco_$be" "$SYNCO" pretrain "${pre[@]}" --method moco --backend "$be" --out "$tmp/moco_$be"
  run "synco_$be" "$SYNCO" pretrain "${pre[@]}" --method synco --warmup-epochs 0 --backend "$be" --out "$tmp/synco_$be"
  run "mochi_$be" "$SYNCO" pretrain "${pre[@]}" --method mochi --warmup-epochs 0 --backend "$be" --out "$tmp/mochi_$be"
  run "sym_$be" "$SYNCO" pretrain "${pre[@]}" --symmetric --warmup-epochs 0 --backend "$be" --out "$tmp/sym_$be"
  run "half_$be" "$SYNCO" pretrain "${pre[@]}" --warmup-epochs 0 --stop-epoch 1 --backend "$be" --out "$tmp/res_$be"
  run "resume_$be" "$SYNCO" pretrain --resume "$tmp/res_$be" --backend "$be"
done
for run_ in moco synco mochi sym res; do
  compare_ckpt "$tmp/${run_}_strict/last.safetensors" "$tmp/${run_}_ref/last.safetensors" 0 0
done
compare_ckpt "$tmp/res_ref/last.safetensors" "$tmp/synco_ref/last.safetensors" 0 0 # resumed = uninterrupted

ck=$tmp/synco_ref/last.safetensors
run export "$SYNCO" export --ckpt "$ck" --out "$tmp/export.safetensors"
ev=(--train "$train" --holdout 3 --threads 2 --batch 20)
for be in ref strict; do
  run "init_$be" "$SYNCO" pretrain "${pre[@]}" --init "$tmp/export.safetensors" --backend "$be" --out "$tmp/init_$be"
  run "knn_$be" "$SYNCO" knn --ckpt "$ck" "${ev[@]}" --k 10 --json --backend "$be"
  run "linf_$be" "$SYNCO" linear --ckpt "$ck" "${ev[@]}" --fast --json --backend "$be"
  run "lin_$be" "$SYNCO" linear --ckpt "$ck" "${ev[@]}" --epochs 2 --json --backend "$be"
  run "ft_$be" "$SYNCO" finetune --ckpt "$ck" "${ev[@]}" --labels 5 --epochs 2 --json --backend "$be"
  run "embed_$be" "$SYNCO" embed --ckpt "$ck" --data "$train" --out "$tmp/embed_$be.npy" --backend "$be" --threads 2
  run "analyze_$be" "$SYNCO" analyze --ckpt "$ck" --data "$train" --out "$tmp/an_$be" --json --backend "$be" --threads 2
  run "bench_$be" "$SYNCO" bench step "${small[@]}" --batch 32 --moco-k 256 --warmup 1 --iters 2 --json \
    --backend "$be"
done
compare_ckpt "$tmp/init_strict/last.safetensors" "$tmp/init_ref/last.safetensors" 0 0
for c in knn linf lin ft analyze; do same_json "$tmp/${c}_strict.txt" "$tmp/${c}_ref.txt"; done
cmp "$tmp/embed_strict.npy" "$tmp/embed_ref.npy" || fail "embed: the features differ"
grep -q '"backend":"strict"' "$tmp/bench_strict.txt" || fail "bench did not run on the strict backend"
echo "strict backend: every command agrees with the reference backend"
