#!/usr/bin/env bash
# End to end: a tiny pretraining run, `synco export` (torchvision names, --head, --which key, --format
# detectron2), `synco embed` of the same images, then tools/verify_export.py loads each export into torchvision
# and compares the features to 1e-4 relative. Two architectures: ResNet-18 width 8 with the CIFAR stem, and
# ResNet-50 width 4 with the ImageNet stem (Bottleneck names, downsample in layer1). The README's synco_model()
# recipe (any width) runs on both exports, with and without the head; linear --fast / finetune --out files load
# with strict=True (through torchvision.models.resnet18(num_classes=3) and the recipe at width 64, through the
# recipe at width 8) and classify as synco reported. Wherever the recipe runs, verify_export.py also checks that
# tools/synco_resnet.py (the builder the tools share) makes the same model and outputs. The README block runs as
# written, with the real safetensors package: from /usr/bin/python3 when it has one, else from the venv README's
# own instructions make (python3 -m venv --system-site-packages, pip install safetensors). Skipped (77) when
# /usr/bin/python3 has no torch + torchvision, or lacks safetensors where the package index cannot be reached.
set -euo pipefail
. "$(dirname "$0")/common.inc"
PY=${SYNCO_TORCH_PYTHON:-/usr/bin/python3}
PY=$(readme_python "$PY" 2> "$tmp/why") || skip "$(cat "$tmp/why")"
echo "README block's python: $PY"
VERIFY="$PY tools/verify_export.py"

# 3 classes x 16 bundled CIFAR-10 images.
imgs=$tmp/imgs
for c in airplane bird cat; do
  mkdir -p "$imgs/$c"
  for f in $(first_files "data/cifar10-small/val/$c" 16); do ln -s "$PWD/$f" "$imgs/$c/"; done
done

tiny_run() {  # out, arch flags...
  local out=$1; shift
  "$SYNCO" pretrain --data "$imgs" "$@" --image-size 32 --epochs 1 -b 16 --bn-splits 2 --moco-k 48 --n-hard 16 \
    --n1 4 --n2 4 --n3 4 --n4 4 --n5 4 --n6 4 --warmup-epochs 0 --threads 2 --workers 1 --out "$out" \
    > "$tmp/pre.txt" 2>&1 || { cat "$tmp/pre.txt"; fail "pretrain $* exited non-zero"; }
}
embed() {  # ckpt out [flags]
  local ck=$1 out=$2; shift 2
  "$SYNCO" embed --ckpt "$ck" --data "$imgs" --out "$out" --batch 24 --threads 2 "$@" > "$tmp/emb.txt" 2>&1 \
    || { cat "$tmp/emb.txt"; fail "embed $ck $* exited non-zero"; }
}

for arch in r18 r50; do
  run=$tmp/run_$arch
  if [ $arch = r18 ]; then
    tiny_run "$run" --arch resnet18 --width 8 --cifar-stem
  else
    # The reference backend: oneDNN's primitive setup dominates this 3-step run; embed below uses the default.
    tiny_run "$run" --arch resnet50 --width 4 --backend ref
  fi
  ck=$run/last.safetensors
  e=$tmp/$arch.safetensors
  "$SYNCO" export --ckpt "$ck" --out "$e" > /dev/null || fail "export $arch"
  "$SYNCO" export --ckpt "$ck" --out "$tmp/${arch}_head.safetensors" --head > /dev/null || fail "export --head $arch"
  "$SYNCO" export --ckpt "$ck" --out "$tmp/${arch}_d2.safetensors" --format detectron2 > /dev/null || fail "export d2"
  keys=$(st_keys "$e")
  grep -q '^fc\.' <<<"$keys" && fail "$arch: export without --head holds fc.*"
  for k in conv1.weight bn1.running_var layer4.1.bn2.weight; do grep -qx "$k" <<<"$keys" || fail "$arch: export lacks $k"; done
  hkeys=$(st_keys "$tmp/${arch}_head.safetensors")
  for k in fc.0.weight fc.0.bias fc.2.weight fc.2.bias; do grep -qx "$k" <<<"$hkeys" || fail "$arch: --head export lacks $k"; done
  d2keys=$(st_keys "$tmp/${arch}_d2.safetensors")
  for k in stem.conv1.weight stem.conv1.norm.running_mean res2.0.conv1.norm.weight res5.1.conv2.weight \
           res3.0.shortcut.weight res3.0.shortcut.norm.bias; do
    grep -qx "$k" <<<"$d2keys" || fail "$arch: detectron2 export lacks $k"
  done
  grep -q '^fc\.\|^stem\.fc\|layer\|downsample\|\.bn[0-9]' <<<"$d2keys" && fail "$arch: torchvision names left in detectron2 export"
  # synco itself reads the torchvision-named export: a detectron2 one given back to it is named as such
  rc=0; "$SYNCO" embed --ckpt "$tmp/${arch}_d2.safetensors" --data "$imgs" --out "$tmp/d2.npy" > /dev/null 2> "$tmp/err.txt" || rc=$?
  [ "$rc" != 0 ] && grep -q "a detectron2 export (its names are detectron2's" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "$arch: a detectron2 export read back: exit $rc"; }

  # The export embeds exactly as the checkpoint does (query and key encoder), and torchvision agrees.
  embed "$e" "$tmp/f.npy"
  if [ $arch = r18 ]; then
    embed "$ck" "$tmp/f_ck.npy"
    cmp -s "$tmp/f.npy" "$tmp/f_ck.npy" || fail "$arch: embedding the export differs from embedding the checkpoint"
    "$SYNCO" export --ckpt "$ck" --out "$tmp/${arch}_key.safetensors" --which key > /dev/null || fail "export --which key"
    embed "$tmp/${arch}_key.safetensors" "$tmp/fk.npy"
    embed "$ck" "$tmp/fk_ck.npy" --which key
    cmp -s "$tmp/fk.npy" "$tmp/fk_ck.npy" || fail "$arch: the key-encoder export differs from the checkpoint's key encoder"
    cmp -s "$tmp/fk.npy" "$tmp/f.npy" && fail "$arch: the key-encoder export equals the query encoder's"
  fi
  embed "$tmp/${arch}_head.safetensors" "$tmp/fh.npy" --head
  $VERIFY --export "$tmp/${arch}_head.safetensors" --data "$imgs" --features "$tmp/f.npy" --head-features "$tmp/fh.npy" \
    --detectron2 "$tmp/${arch}_d2.safetensors" --recipe README.md > "$tmp/v.txt" 2>&1 \
    || { cat "$tmp/v.txt"; fail "$arch: torchvision's features differ from synco's"; }
  grep -q "head outputs (tools/synco_resnet.py): identical" "$tmp/v.txt" || { cat "$tmp/v.txt"; fail "$arch: recipe/module (head) not compared"; }
  $VERIFY --export "$e" --data "$imgs" --features "$tmp/f.npy" --recipe README.md > "$tmp/v.txt" 2>&1 \
    || { cat "$tmp/v.txt"; fail "$arch: the README recipe's features differ from synco's"; }
  grep -q "features (README recipe)" "$tmp/v.txt" || { cat "$tmp/v.txt"; fail "$arch: the README recipe did not run"; }
  grep -q "features (tools/synco_resnet.py): identical" "$tmp/v.txt" || { cat "$tmp/v.txt"; fail "$arch: recipe/module not compared"; }
done

# What a user needs besides the weights is in the export's metadata.
"$PY" - "$tmp/r18.safetensors" "$tmp/r50.safetensors" <<'PY' || fail "export metadata"
import json, struct, sys
def meta(p):
    with open(p, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        return json.loads(f.read(n))['__metadata__']
for path, arch, width, stem in ((sys.argv[1], 'resnet18', 8, 1), (sys.argv[2], 'resnet50', 4, 0)):
    m = meta(path)
    e, p = json.loads(m['synco.encoder']), json.loads(m['synco.preprocess'])
    assert m['synco.arch'] == arch and e['width'] == width and e['cifar_stem'] == stem and e['image_size'] == 32, m
    assert p['mean'] == [0.4914, 0.4822, 0.4465] and p['std'] == [0.2023, 0.1994, 0.2010], p
    assert p['image_size'] == 32 and p['resize'] == 36 and p['crop'] == 'center', p
PY

# linear / finetune --out: torchvision loads the backbone + classifier with strict=True and gets synco's top-1.
top1() { "$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["top1"])' "$1"; }
"$SYNCO" linear --random-init --cifar-stem --width 64 --train "$imgs" --val "$imgs" --fast --batch 24 --threads 2 \
  --out "$tmp/lin64.safetensors" --json > "$tmp/lin64.json" 2> "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "linear --out (width 64)"; }
$VERIFY --classifier "$tmp/lin64.safetensors" --data "$imgs" --top1 "$(top1 "$tmp/lin64.json")" --recipe README.md \
  > "$tmp/v.txt" 2>&1 || { cat "$tmp/v.txt"; fail "linear --out (width 64): torchvision resnet18(num_classes=3) strict load / top-1"; }
grep -q "resnet18(num_classes=3), strict=True" "$tmp/v.txt" || { cat "$tmp/v.txt"; fail "plain torchvision load not checked"; }
grep -q "synco_resnet.py synco_model (strict=True): top-1" "$tmp/v.txt" || { cat "$tmp/v.txt"; fail "width 64: module not checked"; }
"$SYNCO" linear --ckpt "$tmp/run_r18/last.safetensors" --train "$imgs" --val "$imgs" --fast --batch 24 --threads 2 \
  --out "$tmp/lin8.safetensors" --json > "$tmp/lin8.json" 2> "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "linear --out (width 8)"; }
embed "$tmp/lin8.safetensors" "$tmp/flin8.npy"
$VERIFY --classifier "$tmp/lin8.safetensors" --data "$imgs" --top1 "$(top1 "$tmp/lin8.json")" --recipe README.md \
  --features "$tmp/flin8.npy" > "$tmp/v.txt" 2>&1 || { cat "$tmp/v.txt"; fail "linear --out (width 8) through the README recipe"; }
"$SYNCO" finetune --ckpt "$tmp/run_r18/last.safetensors" --train "$imgs" --val "$imgs" --labels 8 --epochs 1 --batch 12 \
  --threads 2 --out "$tmp/ft8.safetensors" --json > "$tmp/ft8.json" 2> "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "finetune --out"; }
embed "$tmp/ft8.safetensors" "$tmp/fft8.npy"
$VERIFY --classifier "$tmp/ft8.safetensors" --data "$imgs" --top1 "$(top1 "$tmp/ft8.json")" --recipe README.md \
  --features "$tmp/fft8.npy" > "$tmp/v.txt" 2>&1 || { cat "$tmp/v.txt"; fail "finetune --out through the README recipe"; }
# --out that would overwrite the input, or cannot be written, is refused before any work (exit 2).
cp "$tmp/r18.safetensors" "$tmp/r18_copy.safetensors"
for bad in "$tmp/r18.safetensors" "$tmp/no/such/dir/x.safetensors" "$tmp"; do
  rc=0; "$SYNCO" linear --ckpt "$tmp/r18.safetensors" --train "$imgs" --val "$imgs" --fast --out "$bad" > /dev/null 2> "$tmp/err.txt" || rc=$?
  [ $rc -eq 2 ] && grep -q "synco linear: --out" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "linear --out $bad: rc $rc"; }
done
cmp -s "$tmp/r18.safetensors" "$tmp/r18_copy.safetensors" || fail "a refused linear --out changed its input"

# The .pkl detectron2 loads: MoCo's layout, from the detectron2 export and (renamed) from the plain one.
"$PY" tools/safetensors_to_detectron2.py "$tmp/r50_d2.safetensors" "$tmp/a.pkl" > /dev/null || fail "pkl from d2 export"
"$PY" tools/safetensors_to_detectron2.py "$tmp/r50.safetensors" "$tmp/b.pkl" > /dev/null || fail "pkl from export"
"$PY" - "$tmp/a.pkl" "$tmp/b.pkl" <<'PY' || fail "detectron2 .pkl files"
import pickle, sys
import numpy as np
a, b = (pickle.load(open(p, 'rb')) for p in sys.argv[1:])
assert a['__author__'] and a['matching_heuristics'] is True, a.keys()
assert set(a['model']) == set(b['model']) and 'res5.2.conv3.norm.running_var' in a['model']
assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 and np.array_equal(v, b['model'][k])
           for k, v in a['model'].items())
PY

# The check is not vacuous: a 1e-3 relative perturbation of one feature fails it.
"$PY" - "$tmp/f.npy" <<'PY'
import sys, numpy as np
a = np.load(sys.argv[1]); i = np.unravel_index(np.abs(a).argmax(), a.shape); a[i] *= 1.001; np.save(sys.argv[1], a)
PY
if $VERIFY --export "$tmp/r50.safetensors" --data "$imgs" --features "$tmp/f.npy" > "$tmp/v.txt" 2>&1; then
  cat "$tmp/v.txt"; fail "verify_export accepted perturbed features"
fi
grep -q MISMATCH "$tmp/v.txt" || { cat "$tmp/v.txt"; fail "no MISMATCH line"; }

# Misuse of export is refused with a message, and nothing is written.
for bad in "--which both" "--format onnx" "--format detectron2 --head"; do
  if "$SYNCO" export --ckpt "$tmp/run_r18/last.safetensors" --out "$tmp/bad.safetensors" $bad 2> "$tmp/err.txt"; then
    fail "export $bad accepted"
  fi
  grep -q "synco export:" "$tmp/err.txt" || fail "export $bad: no message"
done
if "$SYNCO" export --ckpt "$tmp/r18.safetensors" --out "$tmp/bad.safetensors" --head 2> "$tmp/err.txt"; then
  fail "export --head from a head-less export accepted"
fi
grep -q "projection head" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "export --head: unclear message"; }
if "$SYNCO" export --ckpt "$tmp/r18.safetensors" --out "$tmp/bad.safetensors" --which key 2> "$tmp/err.txt"; then
  fail "export --which key from a single-encoder export accepted"
fi
grep -q "needs a pretraining checkpoint" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "export --which key: unclear message"; }
[ ! -e "$tmp/bad.safetensors" ] || fail "a refused export left a file"
# a pickle's name for a safetensors file is refused, with the way to detectron2's .pkl
if "$SYNCO" export --ckpt "$tmp/r18.safetensors" --format detectron2 --out "$tmp/r18_d2.pkl" 2> "$tmp/err.txt"; then
  fail "export to a .pkl name accepted"
fi
grep -q "export writes safetensors, not a pickle; name it .safetensors and make detectron2's .pkl with tools/safetensors_to_detectron2.py" "$tmp/err.txt" \
  || { cat "$tmp/err.txt"; fail "export --out X.pkl: unclear message"; }
[ ! -e "$tmp/r18_d2.pkl" ] || fail "a refused export left a .pkl"
# the evaluations read --which as export does: an export has no key encoder to give (it once gave its one encoder)
if "$SYNCO" embed --ckpt "$tmp/r18.safetensors" --which key --data "$imgs" --out "$tmp/k.npy" 2> "$tmp/err.txt" > /dev/null; then
  fail "embed --which key of a single-encoder export accepted"
fi
grep -q "which key needs a pretraining checkpoint; $tmp/r18.safetensors holds a single encoder" "$tmp/err.txt" \
  || { cat "$tmp/err.txt"; fail "embed --which key: unclear message"; }
echo "verify_export: ok"
