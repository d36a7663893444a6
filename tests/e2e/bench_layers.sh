#!/usr/bin/env bash
# `synco bench step|fwdbwd --layers`: the time of every layer's passes and of the step's other pieces.
# - step --json: "layers" names every convolution and BN as torchvision does, a block's residual, the head, and the
#   step's pieces; a layer of the query encoder has its three passes, the key encoder's forward beside them, the stem
#   no backward data; without --layers there is no table;
# - step in text: the table's header and the line by kind of op;
# - fwdbwd --json: the encoder's layers, with no key encoder and no step pieces;
# - tools/compare_layers.py reads two of the JSON tables (width 8 against width 16) and prints its rows.
# Only what is there and which passes have time is checked, never how much (no timing bound in a test).
set -euo pipefail
. "$(dirname "$0")/common.inc"
A=(--arch resnet18 --cifar-stem --width 8 -b 8 --iters 2 --warmup 1 --threads 2)
"$SYNCO" bench step "${A[@]}" --moco-k 64 --layers --json > "$tmp/step.json" 2> "$tmp/err" ||
  { cat "$tmp/err"; fail "bench step --layers --json"; }
python3 - "$tmp/step.json" <<'PY' || fail "bench step --layers --json: $(cat "$tmp/step.json")"
import json, sys
r = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
rows = {(x["name"], x["op"]): x for x in r["layers"]}
def row(name, op):
    assert (name, op) in rows, "no %s (%s)" % (name, op)
    return rows[(name, op)]
convs = [n for n, op in rows if op == "conv"]
bns = [n for n, op in rows if op == "bn"]
assert len(convs) == 20 and len(bns) == 20, (len(convs), len(bns))
c = row("layer1.0.conv1", "conv")
assert c["fwd_ms"] > 0 and c["key_fwd_ms"] > 0 and c["bwd_data_ms"] > 0 and c["bwd_weights_ms"] > 0, c
s = row("conv1", "conv")
assert s["bwd_data_ms"] == 0 and s["bwd_weights_ms"] > 0, s
row("layer2.0.downsample.1", "bn"); row("layer4.1.relu", "add+relu"); row("avgpool", "pool")
row("fc.0", "linear"); row("fc.2", "linear")
for piece in ("negatives: draws", "loss: logits, negatives, InfoNCE", "sgd"):
    assert row(piece, "step")["fwd_ms"] > 0, piece
row("key encoder: momentum update", "step"); row("queue: enqueue", "step"); row("gradients: zero", "step")
total = sum(x["fwd_ms"] + x["key_fwd_ms"] + x["bwd_data_ms"] + x["bwd_weights_ms"] for x in r["layers"])
# each printed value is rounded to 1e-4 ms: the sum of the rounded rows is within 0.5e-4 per value of the sum printed
assert abs(total - r["layers_sum_ms"]) <= 0.5e-4 * (4 * len(r["layers"]) + 1), (total, r["layers_sum_ms"])
PY
# tools/compare_layers.py: the same step at width 16 against it, row by row (names match across widths)
B=("${A[@]}"); B[4]=16
"$SYNCO" bench step "${B[@]}" --moco-k 64 --layers --json > "$tmp/step16.json" 2> "$tmp/err" ||
  { cat "$tmp/err"; fail "bench step --width 16 --layers --json"; }
python3 tools/compare_layers.py "$tmp/step.json" "$tmp/step16.json" --top 5 > "$tmp/cmp" 2>&1 ||
  { cat "$tmp/cmp"; fail "compare_layers.py"; }
grep -q '^A: width 8 batch 8, .* B: width 16 batch 8, ' "$tmp/cmp" || { cat "$tmp/cmp"; fail "compare_layers: header"; }
# the 5 rows after the header, each ending in three numbers (A's ms, B's scaled, the excess); which rows they are
# depends on the timings, so only their form is checked
rows=$(sed -n '/^name  *op  *A ms/,$p' "$tmp/cmp" | tail -n +2)
[ "$(printf '%s\n' "$rows" | grep -cE ' [0-9]+\.[0-9]{3} +[0-9]+\.[0-9]{3} +-?[0-9]+\.[0-9]{3}$')" = 5 ] ||
  { cat "$tmp/cmp"; fail "compare_layers: not 5 rows"; }
out=$("$SYNCO" bench step "${A[@]}" --moco-k 64 --json 2>&1) || { echo "$out"; fail "bench step --json"; }
[[ "$out" != *'"layers"'* ]] || fail "a table without --layers: $out"

"$SYNCO" bench step "${A[@]}" --moco-k 64 --layers > "$tmp/step.txt" 2>&1 || { cat "$tmp/step.txt"; fail "bench step --layers"; }
grep -q '^  layers  : ms per iteration' "$tmp/step.txt" || { cat "$tmp/step.txt"; fail "no table header"; }
grep -qE '^ +layer3\.1\.conv2 +conv ' "$tmp/step.txt" || { cat "$tmp/step.txt"; fail "no row of layer3.1.conv2"; }
grep -qE '^  by op   : .*conv .* in all .* ms of a .* ms median iteration$' "$tmp/step.txt" ||
  { cat "$tmp/step.txt"; fail "no line by op"; }

"$SYNCO" bench fwdbwd "${A[@]}" --layers --json > "$tmp/fb.json" 2> "$tmp/err" || { cat "$tmp/err"; fail "bench fwdbwd --layers"; }
python3 - "$tmp/fb.json" <<'PY' || fail "bench fwdbwd --layers --json: $(cat "$tmp/fb.json")"
import json, sys
r = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
rows = {(x["name"], x["op"]): x for x in r["layers"]}
assert ("layer4.1.conv2", "conv") in rows and rows[("layer4.1.conv2", "conv")]["bwd_data_ms"] > 0
assert all(x["key_fwd_ms"] == 0 for x in r["layers"]), "a key encoder in fwdbwd"
assert not [k for k in rows if k[1] == "step"], "step pieces in fwdbwd"
PY
echo "bench_layers: ok"
