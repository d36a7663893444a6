#!/usr/bin/env bash
# analyze compares runs as the paper does (issue 21, point 8):
# - models are named by their run directories (two checkpoints of one run by their files too), or by --label, which
#   must name each model once (two models of one name, or one model twice, are refused); metrics.json keeps each model's label and whether the models compare;
# - models measured differently (a checkpoint's head outputs against its queue vs an export's backbone features
#   against stand-in keys) are warned about, naming what differs and for which model;
# - with three models the histograms are small multiples: the figures grow with the strips (the PNGs' sizes). The
#   pictures themselves were looked at when this was written (see the commit).
# - where no image has a distance ratio (one class, one image per class) the summary and metrics.json say why;
# - a failed analyze (a truncated checkpoint) leaves no output folder it made behind, and keeps one that was there.
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

# run folders in a comparison, as for one --ckpt: each its last.safetensors (once refused after the first model ran)
"$SYNCO" analyze --ckpt "$tmp/runA,$tmp/runB" "${an[@]}" --out "$tmp/an2f" > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/e"; fail "analyze of two run folders"; }
check_json "$tmp/an2f/metrics.json" "[m['label'] for m in o['models']] == ['runA', 'runB']"
"$SYNCO" analyze --ckpt "$tmp/runA" --ckpt "$tmp/nothere" "${an[@]}" --out "$tmp/an2g" > "$tmp/o" 2> "$tmp/e" && fail "a missing second --ckpt accepted"
grep -q "nothere" "$tmp/e" && ! grep -q "^model 1/2" "$tmp/e" || { cat "$tmp/e"; fail "a missing second --ckpt: not refused before the first model ran"; }

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
rc=0
"$SYNCO" analyze --ckpt "$tmp/runA/last.safetensors,$tmp/enc.safetensors" --label "x,x" "${an[@]}" --out "$tmp/bad" \
  > /dev/null 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] && grep -q -- "--label names two models x; give each its own" "$tmp/e" || { cat "$tmp/e"; fail "--label x,x: exit $rc"; }
rc=0
"$SYNCO" analyze --ckpt "$tmp/runA,$tmp/runA/last.safetensors" "${an[@]}" --out "$tmp/bad" > /dev/null 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] && grep -q "runA/last.safetensors twice (the same model)" "$tmp/e" || { cat "$tmp/e"; fail "one model twice: exit $rc"; }
[ ! -e "$tmp/bad" ] || fail "a refused analyze created its output folder"

# the distance ratio where no image has one says why (the summary once read "mean nan"); metrics.json keeps null
# and the reason
class_subset "$tmp/one" 4 airplane
ratio_not_defined() { # DATA PER-CLASS WHY
  "$SYNCO" analyze --ckpt "$tmp/runA/last.safetensors" --data "$1" --per-class "$2" --threads 1 --batch 16 --out "$tmp/an_r" \
    > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/e"; fail "analyze of $1, $2 per class"; }
  grep -q "inter/intra distance ratio: not defined ($3)$" "$tmp/o" && ! grep -qi nan "$tmp/o" \
    || { cat "$tmp/o"; fail "analyze of $1, $2 per class: the distance ratio does not say '$3'"; }
  check_json "$tmp/an_r/metrics.json" "o['ratio']['n'] == 0 and o['ratio']['mean'] is None and o['ratio']['not_defined'] == '$3'"
}
ratio_not_defined "$tmp/one" 4 "one class: no inter-class distance"
ratio_not_defined "$tmp/d" 1 "one image per class: no intra-class distance"

# a truncated checkpoint fails and leaves no output folder behind (it once left an empty one), its parents made
# for it included; a folder that was there stays
head -c $(($(wc -c < "$tmp/runA/last.safetensors") / 2)) "$tmp/runA/last.safetensors" > "$tmp/cut.safetensors"
mkdir "$tmp/there"
for out in "$tmp/new/sub" "$tmp/there" "$tmp/there/sub/sub"; do
  rc=0
  "$SYNCO" analyze --ckpt "$tmp/cut.safetensors" "${an[@]}" --out "$out" > /dev/null 2> "$tmp/e" || rc=$?
  [ "$rc" = 1 ] && grep -q "cut.safetensors" "$tmp/e" || { cat "$tmp/e"; fail "analyze of a truncated checkpoint: exit $rc"; }
done
[ ! -e "$tmp/new" ] || fail "a failed analyze left its output folder $tmp/new behind"
[ -d "$tmp/there" ] && [ -z "$(ls -A "$tmp/there")" ] || fail "a failed analyze removed $tmp/there or left a folder in it"
[ -z "${KEEP:-}" ] || cp -r "$tmp/an1" "$tmp/an2" "$tmp/an3" "$KEEP"/
echo "analyze_compare: ok"
