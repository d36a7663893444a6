#!/usr/bin/env bash
# analyze compares runs as the paper does (issue 21, point 8):
# - models are named by their run directories (two checkpoints of one run by their files too), or by --label, which
#   must name each model once; metrics.json keeps each model's label and whether the models compare;
# - models measured differently (a checkpoint's head outputs against its queue vs an export's backbone features
#   against stand-in keys) are warned about, naming what differs and for which model;
# - with three models the histograms are small multiples: the figures grow with the strips (the PNGs' sizes). The
#   pictures themselves were looked at when this was written (see the commit).
# Needs python3 (to read PNG headers and JSON).
set -euo pipefail
. "$(dirname "$0")/common.inc"
command -v python3 > /dev/null || skip "python3 not installed"
class_subset "$tmp/d" 12 airplane bird cat dog
"$SYNCO" pretrain --data "$tmp/d" --arch resnet18 --cifar-stem --width 8 -b 8 --moco-k 32 --n-hard 16 --n1 4 --n2 4 \
  --n3 4 --n4 2 --n5 2 --n6 2 --threads 1 --workers 1 --epochs 2 --save-every 1 --image-size 32 --bn-splits 2 \
  --out "$tmp/runA" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "pretrain"; }
cp -r "$tmp/runA" "$tmp/runB"
"$SYNCO" export --ckpt "$tmp/runA/last.safetensors" --out "$tmp/enc.safetensors" > /dev/null 2>&1 || fail "export"
an=(--data "$tmp/d" --per-class 4 --threads 1 --batch 16)
png_size() { python3 -c "
import struct, sys
b = open(sys.argv[1], 'rb').read(24)
assert b[:8] == b'\x89PNG\r\n\x1a\n' and b[12:16] == b'IHDR', 'not a PNG'
print('%dx%d' % struct.unpack('>II', b[16:24]))" "$1"; }
check_json() { # FILE PYTHON-EXPRESSION-ON-o
  python3 - "$1" "$2" <<'PY' || fail "$1: $2"
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert eval(sys.argv[2]), o
PY
}

# three checkpoints alike: named by run directory (runA twice: by file too), no warning, small multiples
"$SYNCO" analyze --ckpt "$tmp/runA/last.safetensors,$tmp/runB/last.safetensors,$tmp/runA/checkpoint_0001.safetensors" \
  "${an[@]}" --out "$tmp/an3" > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/e"; fail "analyze of three runs"; }
check_json "$tmp/an3/metrics.json" "[m['label'] for m in o['models']] == ['runA/last', 'runB', 'runA/checkpoint_0001'] and o['comparable'] is True"
! grep -q "not measured alike" "$tmp/e" || { cat "$tmp/e"; fail "three checkpoints of one kind were warned about"; }
for p in proxy_margin ratio; do [ "$(png_size "$tmp/an3/$p.png")" = 800x690 ] || fail "$p.png: $(png_size "$tmp/an3/$p.png")"; done
for p in alignment_uniformity matching_probs; do [ "$(png_size "$tmp/an3/$p.png")" = 800x560 ] || fail "$p.png"; done
[ "$(png_size "$tmp/an3/analysis.png")" = 1400x1260 ] || fail "analysis.png: $(png_size "$tmp/an3/analysis.png")"
out=$(cat "$tmp/o")
[[ "$out" == *"analysis of runB ($tmp/runB/last.safetensors)"* ]] || { echo "$out"; fail "the summary does not name runB"; }

# a checkpoint and its export: labelled, and warned about (head outputs vs backbone features, queue vs stand-ins)
"$SYNCO" analyze --ckpt "$tmp/runA/last.safetensors,$tmp/enc.safetensors" --label "synco,its export" "${an[@]}" \
  --out "$tmp/an2" > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/e"; fail "analyze of a run and its export"; }
err=$(cat "$tmp/e")
[[ "$err" == *"warning: these models are not measured alike"*"space: synco head output, its export backbone features"*"negatives: synco 32 queue rows, its export 8 stand-in keys"* ]] \
  || { echo "$err"; fail "no warning that a checkpoint and an export do not compare"; }
check_json "$tmp/an2/metrics.json" "[m['label'] for m in o['models']] == ['synco', 'its export'] and o['comparable'] is False and 'space' in o['not_comparable']"

# the default label of an export is its file's name; --label names each model once
"$SYNCO" analyze --ckpt "$tmp/enc.safetensors" "${an[@]}" --out "$tmp/an1" --json > "$tmp/an1.json" 2> "$tmp/e" \
  || { cat "$tmp/e"; fail "analyze of an export"; }
check_json "$tmp/an1.json" "o['label'] == 'enc' and o['comparable'] is True"
rc=0
"$SYNCO" analyze --ckpt "$tmp/runA/last.safetensors,$tmp/enc.safetensors" --label only-one "${an[@]}" --out "$tmp/bad" \
  > /dev/null 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] && grep -q -- "--label names 1 model, and 2 are given" "$tmp/e" || { cat "$tmp/e"; fail "--label of the wrong length: exit $rc"; }
rc=0
"$SYNCO" analyze --ckpt "$tmp/runA/last.safetensors,$tmp/enc.safetensors" --label "a," "${an[@]}" --out "$tmp/bad" \
  > /dev/null 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] && grep -q "every model needs a name" "$tmp/e" || { cat "$tmp/e"; fail "--label with an empty name: exit $rc"; }
[ ! -e "$tmp/bad" ] || fail "a refused analyze created its output folder"
[ -z "${KEEP:-}" ] || cp -r "$tmp/an1" "$tmp/an2" "$tmp/an3" "$KEEP"/
echo "analyze_compare: ok"
