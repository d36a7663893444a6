#!/usr/bin/env bash
# Re-running a run from its config.json (issue 21, point 10):
# - `pretrain --config runs/a/config.json --out runs/b` trains the same run: a bit-identical checkpoint (same seed
#   and threads, both read from the file), from another working directory too (the data path is kept resolved);
# - flags given beside it override it (config.json of the new run says so), and a flag that breaks a tie with the
#   file's settings is named as the flag;
# - the file's values are judged as the flags are, naming the file and the key: a value out of the flag's range, a
#   string where a number goes, a setting that is not one (a misspelt key), data or --val that is not there;
#   nothing is written for a refused config.
# Needs python3 (to edit config files).
set -euo pipefail
. "$(dirname "$0")/common.inc"
command -v python3 > /dev/null || skip "python3 not installed"
SYNCO=$(realpath "$SYNCO")
mkdir -p "$tmp/elsewhere"
class_subset "$tmp/d" 24 airplane bird
F8=(--arch resnet18 --cifar-stem --width 8 -b 8 --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4
    --threads 1 --epochs 2 --warmup-epochs 1 --image-size 32 --bn-splits 2 --workers 1 --seed 5)
edit() { # edit SRC DST PYTHON: DST = SRC's JSON with `c` changed by PYTHON
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(c, open(sys.argv[2], 'w'))
PY
}

(cd "$tmp" && "$SYNCO" pretrain "${F8[@]}" --data d --out a > "$tmp/o" 2>&1) || { cat "$tmp/o"; fail "first run"; }
cfg=$tmp/a/config.json

# the same run again, from another working directory: bit-identical
(cd "$tmp/elsewhere" && "$SYNCO" pretrain --config ../a/config.json --out ../b > "$tmp/o" 2> "$tmp/e") \
  || { cat "$tmp/o" "$tmp/e"; fail "--config"; }
cmp "$tmp/a/last.safetensors" "$tmp/b/last.safetensors" || fail "--config did not reproduce the run bit for bit"
grep -qF "recipe: the settings of ../a/config.json (--config" "$tmp/o" || { cat "$tmp/o"; fail "the recipe line under --config"; }
cmp "$cfg" "$tmp/b/config.json" || fail "the re-run's config.json differs from the run's"
grep -q "data: $(realpath "$tmp/d") (the training images, from ../a/config.json; --data overrides it)" "$tmp/e" \
  || { cat "$tmp/e"; fail "the re-run does not say where its data came from"; }

# flags override the file
"$SYNCO" pretrain --config "$cfg" --epochs 1 --lr 0.05 --out "$tmp/c" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "--config with flags"; }
python3 - "$cfg" "$tmp/c/config.json" <<'PY' || fail "flags beside --config did not override it (or changed more)"
import json, sys
a, c = (json.load(open(p)) for p in sys.argv[1:])
assert c['epochs'] == 1 and c['lr'] == 0.05, c
diff = sorted(k for k in a if a[k] != c.get(k))
assert diff == ['epochs', 'lr'], diff
PY
refused "--moco-k 60 is not a multiple of" "$SYNCO" pretrain --config "$cfg" --moco-k 60 --out "$tmp/r1"

# the file's values are judged as flags, naming the file and the key
edit "$cfg" "$tmp/t0.json" "c['moco_t'] = 0"
refused "$tmp/t0.json: moco_t 0 is out of range" "$SYNCO" pretrain --config "$tmp/t0.json" --out "$tmp/r2"
edit "$cfg" "$tmp/lr.json" "c['lr'] = 'fast'"
refused "$tmp/lr.json: lr is not a number" "$SYNCO" pretrain --config "$tmp/lr.json" --out "$tmp/r3"
edit "$cfg" "$tmp/key.json" "c['epoch'] = 3"
refused "$tmp/key.json: 'epoch' is not a setting of synco pretrain" "$SYNCO" pretrain --config "$tmp/key.json" --out "$tmp/r4"
edit "$cfg" "$tmp/val.json" "c['val'] = 'null'; c['knn_every'] = 1"
refused "$tmp/val.json: val null: No such file or directory" "$SYNCO" pretrain --config "$tmp/val.json" --out "$tmp/r5"
edit "$cfg" "$tmp/q.json" "c['moco_k'] = 60"
refused "$tmp/q.json: moco_k 60 is not a multiple of" "$SYNCO" pretrain --config "$tmp/q.json" --out "$tmp/r6"
edit "$cfg" "$tmp/arch.json" "c['arch'] = 'vit'"
refused "$tmp/arch.json: arch 'vit' is not resnet18, resnet34 or resnet50" "$SYNCO" pretrain --config "$tmp/arch.json" --out "$tmp/r7"
echo '[1, 2]' > "$tmp/list.json"
refused "$tmp/list.json: not a JSON object" "$SYNCO" pretrain --config "$tmp/list.json" --out "$tmp/r8"
refused "$tmp/none.json: cannot open" "$SYNCO" pretrain --config "$tmp/none.json" --out "$tmp/r9"
refused "--config and --resume" "$SYNCO" pretrain --config "$cfg" --resume "$tmp/a" --out "$tmp/r10"
sed 's/^{/{"lr":0.5,/' "$cfg" > "$tmp/twice.json"
refused "$tmp/twice.json: 'lr' is given twice" "$SYNCO" pretrain --config "$tmp/twice.json" --out "$tmp/r12"
edit "$cfg" "$tmp/nodata.json" "del c['data']"
refused "$tmp/nodata.json names no data: give --data DIR" "$SYNCO" pretrain --config "$tmp/nodata.json" --out "$tmp/r11"
for r in r1 r2 r3 r4 r5 r6 r7 r8 r9 r10 r11 r12; do [ ! -e "$tmp/$r" ] || fail "a refused --config created $r"; done
# a hand-written config without the synthetic counts: they follow its queue as the flags' defaults do (n_hard was
# taken as the default 1024 and refused against its moco_k 64)
edit "$cfg" "$tmp/nocounts.json" "[c.pop(k) for k in ['n_hard', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6']]; c['epochs'] = 1"
"$SYNCO" pretrain --config "$tmp/nocounts.json" --out "$tmp/nc" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "--config without counts"; }
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); assert c['n_hard'] == 16 and c['n1'] == 16, c" "$tmp/nc/config.json" \
  || fail "--config without counts: n_hard not min(1024, K/4)"
# ... and follow the file's --method (they took the flag's default, synco's, before the file was read)
edit "$cfg" "$tmp/moco.json" "[c.pop(k) for k in ['n_hard', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6']]; c['epochs'] = 1; c['method'] = 'moco'"
"$SYNCO" pretrain --config "$tmp/moco.json" --out "$tmp/mc" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "--config of method moco without counts"; }
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); assert [c['n%d' % i] for i in range(1, 7)] == [0] * 6, c" \
  "$tmp/mc/config.json" || fail "--config of method moco without counts: synthetic negatives made"
echo "config_rerun: ok"
