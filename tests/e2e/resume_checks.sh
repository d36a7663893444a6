#!/usr/bin/env bash
# --resume checks every field of a checkpoint against the run before using it: another batch size works (the
# queue pointer continues where it was, once a heap overflow), a queue pointer that is not a multiple of the
# batch works, and an out-of-range pointer, a negative epoch or step, a queue of another shape and NaN/inf in a
# weight, the momentum or the queue are refused with the file and the field named. Needs python3 (to craft files).
set -euo pipefail
. "$(dirname "$0")/common.inc"
command -v python3 > /dev/null || skip "python3 not installed"
two_classes "$tmp/d" 48
common=(--data "$tmp/d" --arch resnet18 --cifar-stem --image-size 32 --width 8 --moco-k 64 --n-hard 32 --n1 8 --n2 8
        --n3 8 --n4 4 --n5 4 --n6 4 --threads 1 --bn-splits 2 --warmup-epochs 0 --workers 1)
"$SYNCO" pretrain "${common[@]}" -b 8 --epochs 1 --out "$tmp/a" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "first run"; }
ck=$tmp/a/last.safetensors

# craft SRC DST EDIT: rewrites a safetensors file; EDIT is Python run with `meta` (the __metadata__ dict) and
# `put(name, offset, fmt, values...)` (writes elements of a tensor) in scope.
craft() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys
src, dst, edit = sys.argv[1:4]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
head = json.loads(raw[8:8 + n])
data = bytearray(raw[8 + n:])
meta = head.setdefault('__metadata__', {})
def put(name, offset, fmt, *vals):  # writes values into tensor `name` at element offset
    b = head[name]['data_offsets'][0] + offset * struct.calcsize(fmt[-1])
    struct.pack_into('<' + fmt, data, b, *vals)
exec(edit)
h = json.dumps(head).encode()
h += b' ' * (-len(h) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(h)) + h + bytes(data))
PY
}
expect_refused() { # expect_refused PATTERN CHECKPOINT
  if "$SYNCO" pretrain "${common[@]}" -b 8 --epochs 2 --resume "$2" --out "$tmp/r$RANDOM" > "$tmp/o" 2> "$tmp/e"; then
    fail "resume from a checkpoint with $1 succeeded"
  fi
  grep -q -- "$1" "$tmp/e" || { cat "$tmp/e"; fail "error message lacks '$1'"; }
  grep -q -- "$(basename "$2")" "$tmp/e" || { cat "$tmp/e"; fail "error message does not name the file"; }
}

# Another batch size: 8 -> 32 (the first run's pointer, 12 steps x 8 = 96 mod 64 = 32, is a multiple of 32).
"$SYNCO" pretrain "${common[@]}" -b 32 --epochs 2 --resume "$ck" --out "$tmp/b" > "$tmp/o" 2>&1 \
  || { cat "$tmp/o"; fail "resume with -b 32 after -b 8"; }
# A pointer that is not a multiple of the batch: the keys wrap around the end of the queue.
craft "$ck" "$tmp/ptr60.safetensors" "put('queue_ptr', 0, 'q', 60)"
"$SYNCO" pretrain "${common[@]}" -b 32 --epochs 2 --resume "$tmp/ptr60.safetensors" --out "$tmp/c" > "$tmp/o" 2>&1 \
  || { cat "$tmp/o"; fail "resume with queue_ptr 60 and -b 32"; }
python3 - "$tmp/c/last.safetensors" <<'PY' || fail "queue pointer after the wrapped resume"
import json, struct, sys
raw = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]; h = json.loads(raw[8:8 + n])
b = 8 + n + h['queue_ptr']['data_offsets'][0]
ptr = struct.unpack('<q', raw[b:b + 8])[0]
# 96 images / 32 = 3 steps from 60: (60 + 96) % 64 = 28
assert ptr == 28, ptr
PY

craft "$ck" "$tmp/ptr.safetensors" "put('queue_ptr', 0, 'q', 64)"
expect_refused "queue_ptr 64 is outside the queue" "$tmp/ptr.safetensors"
craft "$ck" "$tmp/ptrneg.safetensors" "put('queue_ptr', 0, 'q', -8)"
expect_refused "queue_ptr -8 is outside the queue" "$tmp/ptrneg.safetensors"
craft "$ck" "$tmp/epoch.safetensors" "meta['synco.epoch'] = '-5'"
expect_refused "epoch '-5' is not an integer >= 0" "$tmp/epoch.safetensors"
craft "$ck" "$tmp/step.safetensors" "meta['synco.step'] = '12x'"
expect_refused "step '12x' is not an integer" "$tmp/step.safetensors"
"$SYNCO" pretrain "${common[@]}" -b 8 --moco-k 128 --epochs 2 --resume "$ck" --out "$tmp/k" > "$tmp/o" 2> "$tmp/e" \
  && fail "resume with another --moco-k succeeded"
grep -q "trained with moco_k 64" "$tmp/e" || { cat "$tmp/e"; fail "queue size mismatch message"; }
craft "$ck" "$tmp/nanw.safetensors" "put('encoder_q.layer1.0.conv1.weight', 3, 'f', float('nan'))"
expect_refused "layer1.0.conv1.weight' holds NaN" "$tmp/nanw.safetensors"
craft "$ck" "$tmp/infm.safetensors" "put('optimizer.momentum', 5, 'f', float('inf'))"
expect_refused "momentum.*holds NaN" "$tmp/infm.safetensors"
craft "$ck" "$tmp/nanq.safetensors" "put('queue', 7, 'f', float('nan'))"
expect_refused "queue.*holds NaN" "$tmp/nanq.safetensors"
# a resumed run keeps its synthetic counts (they once went back to the defaults that follow the queue: n_hard
# min(1024, K/4) = 100 here, instead of the 64 it was started with)
"$SYNCO" pretrain "${common[@]}" --moco-k 400 --n-hard 64 -b 8 --epochs 2 --stop-epoch 1 --out "$tmp/nh" > "$tmp/o" 2>&1 \
  || { cat "$tmp/o"; fail "--n-hard 64 run"; }
"$SYNCO" pretrain --resume "$tmp/nh" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "resuming the --n-hard 64 run"; }
python3 - "$tmp/nh/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
assert c['n_hard'] == 64 and [c['n%d' % i] for i in range(1, 7)] == [8, 8, 8, 4, 4, 4], c
PY
# an export given to --resume: what it is and what takes it, at once (it was refused by a memory check of the
# ResNet-50 at 224 px its missing settings left)
"$SYNCO" export --ckpt "$ck" --out "$tmp/enc.safetensors" > /dev/null 2>&1 || fail "export"
rc=0; "$SYNCO" pretrain --resume "$tmp/enc.safetensors" --data "$tmp/d" > "$tmp/o" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "enc.safetensors: not a synco training checkpoint (weights written by synco export: --init FILE starts" "$tmp/o" \
  || { cat "$tmp/o"; fail "--resume of an export: exit $rc"; }
# a last.safetensors cut short in its data: said so, with the numbered checkpoint beside it that still resumes
mkdir -p "$tmp/cut"; cp "$tmp/a/config.json" "$tmp/cut/"; cp "$ck" "$tmp/cut/checkpoint_0001.safetensors"
head -c $(( $(stat -c %s "$ck") / 2 )) "$ck" > "$tmp/cut/last.safetensors"
rc=0; "$SYNCO" pretrain --resume "$tmp/cut" --epochs 2 > "$tmp/o" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "last.safetensors: tensor .* has data offsets outside the data section (.* bytes): cut short?" "$tmp/o" \
  && grep -q "$tmp/cut also holds checkpoint_0001.safetensors: --resume $tmp/cut/checkpoint_0001.safetensors continues" "$tmp/o" \
  || { cat "$tmp/o"; fail "a cut last.safetensors: exit $rc"; }
echo "resume_checks: ok"
