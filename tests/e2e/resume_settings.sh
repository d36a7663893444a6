#!/usr/bin/env bash
# What a checkpoint says is judged as the flags are, and one judge rules on each thing (issue 22):
# - a resumed run's settings (synco.config) go through the flags' ranges and the config validator, and a bad one
#   is named by the file and its key, never blamed on a flag the user did not give (epochs 1e9, method "evil",
#   moco_t 0, a queue that is no multiple of the batch);
# - synco.step and synco.epoch are range-checked (a step of 2^63-1 once wrapped negative);
# - synco.encoder metadata that the tensors do not back is refused by --resume as by knn (one reader);
# - weights that cannot be right (a BN running_var <= 0, a 3e38 weight) are refused by every command that reads
#   them, with the tensor named;
# - synthetic counts whose sum overflows an int are refused in flag terms;
# - a run stopped before its first checkpoint is given advice that works (--force, not --resume).
# Needs python3 (to craft checkpoints).
set -euo pipefail
. "$(dirname "$0")/common.inc"
command -v python3 > /dev/null || skip "python3 not installed"
two_classes "$tmp/d" 24
F8=(--arch resnet18 --cifar-stem --width 8 -b 8 --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4
    --threads 1 --epochs 1 --image-size 32 --bn-splits 2 --workers 1)
"$SYNCO" pretrain "${F8[@]}" --data "$tmp/d" --out "$tmp/a" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "first run"; }
ck=$tmp/a/last.safetensors

# craft SRC DST EDIT: rewrites a safetensors file; EDIT is Python with `meta` (the __metadata__ dict), `cfg` (its
# synco.config, parsed; written back) and `put(name, offset, fmt, values...)` in scope.
craft() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys
src, dst, edit = sys.argv[1:4]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
head = json.loads(raw[8:8 + n])
data = bytearray(raw[8 + n:])
meta = head['__metadata__']
cfg = json.loads(meta['synco.config'])
def put(name, offset, fmt, *vals):
    struct.pack_into('<' + fmt, data, head[name]['data_offsets'][0] + offset * struct.calcsize(fmt[-1]), *vals)
exec(edit)
meta['synco.config'] = json.dumps(cfg)
h = json.dumps(head).encode()
h += b' ' * (-len(h) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(h)) + h + bytes(data))
PY
}
# expect_refused PATTERN CMD...: fails (not killed), PATTERN in its stderr (captured, then matched)
expect_refused() {
  local pat=$1 rc=0 err; shift
  timeout 120 "$@" > "$tmp/o" 2> "$tmp/e" < /dev/null || rc=$?
  [ "$rc" -ne 0 ] || fail "succeeded: $*"
  [ "$rc" -ne 124 ] || fail "hung: $*"
  err=$(cat "$tmp/e")
  [[ "$err" == *"$pat"* ]] || { echo "$err"; fail "message lacks '$pat': $*"; }
}
# a plain resume of the run in $tmp/r, every setting from its checkpoint (put there by `stage CHECKPOINT`)
resume=("$SYNCO" pretrain --resume "$tmp/r" --data "$tmp/d" --threads 1 --workers 1)
stage() { rm -rf "$tmp/r"; mkdir -p "$tmp/r"; cp "$1" "$tmp/r/last.safetensors"; }

# ---- a checkpoint's settings: the flags' ranges and choices, then the validator, naming the file and the key ----
craft "$ck" "$tmp/ep.safetensors" "cfg['epochs'] = 1e9"
stage "$tmp/ep.safetensors"
expect_refused "last.safetensors: synco.config: epochs 1000000000 is out of range (1 to 1000000)" "${resume[@]}"
craft "$ck" "$tmp/m.safetensors" "cfg['method'] = 'evil'"
stage "$tmp/m.safetensors"
expect_refused "last.safetensors: synco.config: method 'evil' is not synco, mochi or moco" "${resume[@]}"
craft "$ck" "$tmp/t.safetensors" "cfg['moco_t'] = 0"
stage "$tmp/t.safetensors"
expect_refused "last.safetensors: synco.config: moco_t 0 is out of range (must be greater than 0)" "${resume[@]}"
craft "$ck" "$tmp/b.safetensors" "cfg['batch_size'] = 24"
stage "$tmp/b.safetensors"
expect_refused "last.safetensors: synco.config: moco_k 64 is not a multiple of batch_size 24" "${resume[@]}"
err=$(cat "$tmp/e")
[[ "$err" != *"--moco-k"* && "$err" != *"the batch size"* ]] || { echo "$err"; fail "a checkpoint's setting blamed on a flag"; }
# a flag given on resume is still named as a flag, the checkpoint's setting by the file
expect_refused "last.safetensors: synco.config: moco_k 64 is not a multiple of the batch size 24" "$SYNCO" pretrain --resume "$ck" --out "$tmp/r2" \
  --data "$tmp/d" -b 24 --threads 1 --workers 1

# ---- epoch and step: in range ----
craft "$ck" "$tmp/st.safetensors" "meta['synco.step'] = '9223372036854775807'"
stage "$tmp/st.safetensors"
expect_refused "last.safetensors: step 9223372036854775807 is more than 2^53" "${resume[@]}"
craft "$ck" "$tmp/e2.safetensors" "meta['synco.epoch'] = '2000000'"
stage "$tmp/e2.safetensors"
expect_refused "last.safetensors: epoch 2000000 is more than 1000000" "${resume[@]}"

# ---- synco.encoder that lies: one reader, one answer, for --resume and knn ----
craft "$ck" "$tmp/enc.safetensors" "meta['synco.encoder'] = meta['synco.encoder'].replace('\"width\":8', '\"width\":16')"
expect_refused "enc.safetensors: metadata 'synco.encoder' says width 16" "$SYNCO" knn --ckpt "$tmp/enc.safetensors" \
  --train "$tmp/d" --holdout 2 --threads 1
knn_err=$(cat "$tmp/e")
cp "$tmp/enc.safetensors" "$tmp/enc2.safetensors"
stage "$tmp/enc2.safetensors"
expect_refused "metadata 'synco.encoder' says width 16" "${resume[@]}"
resume_err=$(cat "$tmp/e")
[ "${resume_err#*safetensors: }" = "${knn_err#*safetensors: }" ] || { echo "$knn_err"; echo "$resume_err"; fail "knn and --resume judge synco.encoder differently"; }

# ---- weights that cannot be right: every command that reads them refuses them, naming the tensor ----
craft "$ck" "$tmp/var0.safetensors" "put('encoder_q.bn1.running_var', 2, 'f', 0.0)"
craft "$ck" "$tmp/varneg.safetensors" "put('encoder_q.layer1.0.bn2.running_var', 1, 'f', -3.0)"
craft "$ck" "$tmp/huge.safetensors" "put('encoder_q.layer2.0.conv1.weight', 7, 'f', 3e38)"
for f in var0 varneg huge; do
  case $f in
    var0) pat="tensor 'encoder_q.bn1.running_var' holds 0 at [2]: a BN running variance must be greater than 0" ;;
    varneg) pat="tensor 'encoder_q.layer1.0.bn2.running_var' holds -3 at [1]" ;;
    huge) pat="tensor 'encoder_q.layer2.0.conv1.weight' holds 3e+38 at [7]: no trained network holds a value beyond 1e+10" ;;
  esac
  m=$tmp/$f.safetensors
  expect_refused "$pat" "$SYNCO" knn --ckpt "$m" --train "$tmp/d" --holdout 2 --threads 1
  expect_refused "$pat" "$SYNCO" linear --ckpt "$m" --train "$tmp/d" --holdout 2 --fast --threads 1
  expect_refused "$pat" "$SYNCO" finetune --ckpt "$m" --train "$tmp/d" --holdout 2 --epochs 1 --threads 1
  expect_refused "$pat" "$SYNCO" embed --ckpt "$m" --data "$tmp/d" --out "$tmp/f.npy" --threads 1
  expect_refused "$pat" "$SYNCO" export --ckpt "$m" --out "$tmp/x.safetensors"
  expect_refused "$pat" "$SYNCO" analyze --ckpt "$m" --data "$tmp/d" --out "$tmp/an" --threads 1
  stage "$m"
  expect_refused "$pat" "${resume[@]}"
done
[ ! -e "$tmp/f.npy" ] && [ ! -e "$tmp/x.safetensors" ] || fail "a refused checkpoint's features or export were written"

# ---- synthetic counts that overflow an int, in flag terms ----
expect_refused "--n1 2147483647 must be between 0 and --n-hard 32" "$SYNCO" pretrain "${F8[@]}" --n1 2147483647 \
  --data "$tmp/d" --out "$tmp/n1"
expect_refused "--n1..--n6 sum to 12884901840 synthetic negatives per query" "$SYNCO" pretrain "${F8[@]}" \
  --moco-k 2147483640 --n-hard 2147483640 --n1 2147483640 --n2 2147483640 --n3 2147483640 --n4 2147483640 \
  --n5 2147483640 --n6 2147483640 --data "$tmp/d" --out "$tmp/n2"
[ ! -e "$tmp/n1" ] && [ ! -e "$tmp/n2" ] || fail "a refused configuration created its run directory"

# ---- a run stopped before its first checkpoint: the advice is --force, which works ----
mkdir -p "$tmp/early"
cp "$tmp/a/config.json" "$tmp/a/log.jsonl" "$tmp/early/"
expect_refused "$tmp/early holds a run that stopped before its first checkpoint" "$SYNCO" pretrain "${F8[@]}" \
  --data "$tmp/d" --out "$tmp/early"
err=$(cat "$tmp/e")
[[ "$err" == *"pass --force"* && "$err" != *"--resume it"* ]] || { echo "$err"; fail "the advice for a run without a checkpoint"; }
expect_refused "stopped before its first checkpoint (no last.safetensors to continue from): start it afresh with --force" \
  "$SYNCO" pretrain --resume "$tmp/early" --data "$tmp/d"
"$SYNCO" pretrain "${F8[@]}" --data "$tmp/d" --out "$tmp/early" --force > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "--force as advised"; }
[ -f "$tmp/early/last.safetensors" ] || fail "--force as advised wrote no checkpoint"

# ---- data with another class count: the run's online probe cannot continue, said so (not a tensor's size) ----
mkdir -p "$tmp/three"; cp -r "$tmp/d/airplane" "$tmp/d/bird" "$tmp/three/"; cp -r "$tmp/d/bird" "$tmp/three/cat"
cp -r "$tmp/a" "$tmp/a3"
expect_refused "the run's online probe classifies 2 classes, and --data $tmp/three has 3: pass --no-probe" \
  "$SYNCO" pretrain --resume "$tmp/a3" --data "$tmp/three" --epochs 2 --threads 1 --workers 1
"$SYNCO" pretrain --resume "$tmp/a3" --data "$tmp/three" --epochs 2 --threads 1 --workers 1 --no-probe > "$tmp/o" 2>&1 \
  || { cat "$tmp/o"; fail "--no-probe as advised"; }

# ---- more threads than cores: a warning, also where a resumed run keeps its own --threads ----
over=$(( $(nproc) + 1 ))
craft "$ck" "$tmp/th.safetensors" "cfg['threads'] = $over"
stage "$tmp/th.safetensors"
"$SYNCO" pretrain --resume "$tmp/r" --data "$tmp/d" --workers 1 --epochs 2 > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "resume with the run's $over threads"; }
grep -q "warning: $over threads (the run's --threads) on $(nproc) core" "$tmp/o" || { cat "$tmp/o"; fail "no warning for the run's $over threads"; }
"$SYNCO" pretrain --resume "$tmp/r" --data "$tmp/d" --workers 1 --threads 1 --epochs 3 > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "resume with --threads 1"; }
if grep -q "threads.*on .* core" "$tmp/o"; then cat "$tmp/o"; fail "a warning for 1 thread"; fi
echo "resume_settings: ok"
