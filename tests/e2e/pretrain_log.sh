#!/usr/bin/env bash
# End to end: what a pretraining run tells about itself.
#  1. The switch of the synthetic negatives (after --warmup-epochs) is announced on stdout with the counts per query,
#     log.jsonl's rows say how many there were, the MoCo-only loss and accuracy equal the trained ones before the
#     switch and leave the synthetic logits out after it, and `plot` marks the moment.
#  2. log.jsonl: every row has a kind (step / epoch / knn) and a wall time; no step is logged twice.
#     With protobuf-c, a TensorBoard event file holds the same scalars (decoded here by a reader of its own).
#  3. The online linear probe: on by default with labels, logged, saved in the checkpoint; the pretraining is bit for
#     bit the same without it (--no-probe); a run stopped and resumed ends with the same bytes, probe included.
set -euo pipefail
. "$(dirname "$0")/common.inc"
train=$(small_cifar '000[0-3].jpg' "$tmp/train" 4)                           # 4 per class: 40 images
common=(--data "$train" --arch resnet18 --width 8 --cifar-stem --image-size 32 --epochs 2 -b 16 --moco-k 64
        --n-hard 16 --n1 4 --n2 4 --n3 4 --n4 2 --n5 2 --n6 2 --warmup-epochs 1 --knn-every 0 --print-freq 1
        --threads 2 --workers 1 --seed 3)
run() { # NAME ARGS...: a run whose stdout is kept in $tmp/NAME.txt
  local name=$1; shift
  "$SYNCO" pretrain "${common[@]}" "$@" > "$tmp/$name.txt" 2> "$tmp/$name.err" || { cat "$tmp/$name.err"; fail "$name exited non-zero"; }
}
run a --out "$tmp/a"
out=$(cat "$tmp/a.txt")
grep -q "^synthetic negatives switch on at epoch 2: 18 per query (types 1-6: 4/4/4/2/2/2), made from its 16 hardest of the 64 queue negatives$" <<<"$out" \
  || { echo "$out"; fail "no line announcing the synthetic negatives"; }
grep -q "^  loss and acc now count them" <<<"$out" || { echo "$out"; fail "the announcement does not say what changes"; }
[ "$(grep -c "^synthetic negatives" <<<"$out")" = 1 ] || { echo "$out"; fail "the negatives were announced more than once"; }

python3 - "$tmp/a/log.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
kinds = [r['kind'] for r in rows]
assert kinds == ['step', 'step', 'epoch', 'step', 'step', 'epoch'], kinds
assert all(isinstance(r['time'], float) and r['time'] > 1.6e9 for r in rows), rows
assert all(a['time'] <= b['time'] for a, b in zip(rows, rows[1:])), 'rows in time order'
steps = [r['step'] for r in rows if 'step' in r]
assert steps == [1, 2, 3, 4], steps  # epoch rows carry no step: each step is logged once
for r in rows:
    assert r['synthetic'] == (0 if r['epoch'] == 1 else 18), r
    if r['synthetic'] == 0:
        assert r['loss'] == r['loss_moco'] and r['acc'] == r['acc_moco'], r
    else:
        assert r['loss'] > r['loss_moco'] and r['acc'] <= r['acc_moco'], r
    assert 0 <= r['probe_acc'] <= 100 and r['probe_loss'] > 0, r
ep = [r for r in rows if r['kind'] == 'epoch']
assert [e['steps'] for e in ep] == [2, 2] and [e['epoch'] for e in ep] == [1, 2], ep
assert all(0 <= e['data_wait_s'] <= e['epoch_time_s'] for e in ep), ep  # the steps' wait for the loader
assert all(e['loader_pairs_per_s_per_thread'] > 0 and e['loader_threads_needed'] >= 1 for e in ep), ep
print('log.jsonl: kinds, times, one row per step, MoCo-only beside SynCo, probe logged, data wait, loader rate')
PY
cfg_probe=$(python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['probe'], c['probe_lr'])" "$tmp/a/config.json")
[ "$cfg_probe" = "1 0.1" ] || fail "config.json probe settings: $cfg_probe"
keys=$(st_keys "$tmp/a/last.safetensors")
for k in probe.weight probe.bias probe.momentum; do grep -qx "$k" <<<"$keys" || fail "checkpoint lacks $k"; done

# TensorBoard: the event file holds the scalars of log.jsonl's step rows, read back here by a decoder of its own (the
# TFRecord framing with its masked CRC32C, protobuf's wire format), so that the format cannot rot unseen.
ev=("$tmp"/a/events.out.tfevents.*)
info=$("$SYNCO" info) # captured before grep reads it (see e2e/script_lint)
if grep -q "^tensorboard: event files" <<< "$info"; then
  [ ${#ev[@]} = 1 ] && [ -f "${ev[0]}" ] || fail "no TensorBoard event file in the run directory"
  python3 - "${ev[0]}" "$tmp/a/log.jsonl" <<'PY'
import json, struct, sys
def crc32c(b):
    c = 0xffffffff
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0x82f63b78 if c & 1 else c >> 1
    return c ^ 0xffffffff
def masked(b):
    c = crc32c(b)
    return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xffffffff
def fields(b):  # protobuf wire format: (field number, value) pairs
    i = 0
    def varint():
        nonlocal i
        v = s = 0
        while True:
            x = b[i]; i += 1; v |= (x & 0x7f) << s; s += 7
            if not x & 0x80: return v
    while i < len(b):
        key = varint(); f, t = key >> 3, key & 7
        if t == 0: yield f, varint()
        elif t == 1: yield f, b[i:i + 8]; i += 8
        elif t == 2:
            n = varint(); yield f, b[i:i + n]; i += n
        elif t == 5: yield f, b[i:i + 4]; i += 4
        else: raise ValueError('wire type %d' % t)
data = open(sys.argv[1], 'rb').read()
events, at = [], 0
while at < len(data):
    n, = struct.unpack('<Q', data[at:at + 8])
    assert struct.unpack('<I', data[at + 8:at + 12])[0] == masked(data[at:at + 8]), 'length checksum'
    rec = data[at + 12:at + 12 + n]
    assert struct.unpack('<I', data[at + 12 + n:at + 16 + n])[0] == masked(rec), 'data checksum'
    at += 16 + n
    ev = {'step': 0, 'scalars': {}}
    for f, v in fields(rec):
        if f == 1: ev['wall_time'] = struct.unpack('<d', v)[0]
        elif f == 2: ev['step'] = v
        elif f == 3: ev['version'] = v.decode()
        elif f == 5:
            for f2, val in fields(v):
                kv = dict(fields(val))
                ev['scalars'][kv[1].decode()] = struct.unpack('<f', kv[2])[0]
    events.append(ev)
assert events[0].get('version') == 'brain.Event:2', events[0]
train = [e for e in events if 'train/loss' in e['scalars']]
rows = [json.loads(l) for l in open(sys.argv[2])]
steps = [r for r in rows if r['kind'] == 'step']
assert [e['step'] for e in train] == [r['step'] for r in steps], ([e['step'] for e in train], steps)
for e, r in zip(train, steps):
    sc = e['scalars']
    for k in ('loss', 'acc', 'loss_moco', 'acc_moco', 'lr', 'images_per_s'):
        atol = 0.006 if k == 'images_per_s' else 1e-4  # log.jsonl rounds it to 0.01
        assert abs(sc['train/' + k] - r[k]) <= 1e-5 * abs(r[k]) + atol, (k, sc, r)
    assert abs(sc['probe/acc'] - r['probe_acc']) <= 1e-3, (sc, r)
    assert abs(e['wall_time'] - r['time']) < 1e-3, (e['wall_time'], r['time'])
print('TensorBoard event file: %d records, checksums good, the scalars of log.jsonl' % len(events))
PY
else
  [ ${#ev[@]} = 1 ] && [ ! -e "${ev[0]}" ] || fail "an event file was written by a synco built without protobuf-c"
  echo "TensorBoard event files not built in: skipped their check"
fi

# The probe leaves the pretraining as it is: every tensor but the probe's, bit for bit.
run b --out "$tmp/b" --no-probe --no-tensorboard
grep -q probe "$tmp/b/log.jsonl" && fail "--no-probe still logged a probe"
compgen -G "$tmp/b/*tfevents*" > /dev/null && fail "--no-tensorboard still wrote an event file"
python3 - "$tmp/a/last.safetensors" "$tmp/b/last.safetensors" <<'PY'
import json, struct, sys
def load(p):
    with open(p, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        h = json.loads(f.read(n)); body = f.read()
    h.pop('__metadata__')
    return {k: body[v['data_offsets'][0]:v['data_offsets'][1]] for k, v in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert sorted(k for k in a if not k.startswith('probe.')) == sorted(b), sorted(set(a) ^ set(b))
diff = [k for k in b if a[k] != b[k]]
assert not diff, 'the probe changed the pretraining: %s' % diff[:5]
print('with and without the probe: %d tensors bit for bit the same' % len(b))
PY

# Stopped after epoch 1 and resumed: the same bytes as the straight run, the probe's weights and momentum included.
run c --out "$tmp/c" --stop-epoch 1
"$SYNCO" pretrain "${common[@]}" --resume "$tmp/c" --out "$tmp/c" > "$tmp/c2.txt" 2> "$tmp/c2.err" || { cat "$tmp/c2.err"; fail "resume"; }
grep -q "^synthetic negatives switch on at epoch 2" "$tmp/c2.txt" || fail "the resumed run did not announce the negatives"
cmp "$tmp/a/last.safetensors" "$tmp/c/last.safetensors" || fail "the resumed run (probe included) differs from the straight run"

# plot marks the switch.
if "$SYNCO" plot "$tmp/a" --out "$tmp/curves.png" --json > "$tmp/plot.json" 2> "$tmp/plot.err"; then
  python3 -c "import json,sys; o=json.load(open(sys.argv[1])); r=o['runs'][0]; assert r['synthetic_from_epoch'] == 2 and r['interval_lines'] == 4 and r['epoch_lines'] == 2, o" "$tmp/plot.json" \
    || fail "plot did not find the switch"
elif ! grep -q "built without cairo" "$tmp/plot.err"; then
  cat "$tmp/plot.err"; fail "plot"
fi
echo "pretrain_log: ok"
