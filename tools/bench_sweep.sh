#!/usr/bin/env bash
# A width x batch sweep of `synco bench step` (ResNet-18, CIFAR stem), so that a performance cliff shows up in a
# benchmark: for each configuration the images/s and the images/s per GFLOP of one image's step (i.e. the GFLOP/s
# achieved, the direct convolution's operation count), and its ratio to the width-16 configuration of the same batch
# (the acceptance of issue 20: no configuration below 0.8x of it). Every run's kernel list (`--json`) is searched for
# one of oneDNN's reference kernels (ref:*); one found fails the sweep.
# With TORCH=1 each configuration is also run by tools/bench_torch.py (the same model, step and synthetic counts:
# n_hard = min(1024, K/4), each count at most n_hard, as `synco bench step` scales them), right after synco's, and
# PyTorch's GFLOP/s and its own ratio to its width-16 neighbour are printed beside synco's: how much of a narrow
# network's lower rate is the network's (memory-bound layers, per-layer costs) and not synco's.
# REPEAT=N runs every batch's widths N times, alternated (w8 w16 ... w8 w16 ...), and reports each configuration's
# median, with the range of its per-round ratio to width 16: on a VM whose speed jumps by 30 % from one minute to the
# next, one run per configuration can put a width 8 anywhere from 0.5x to 0.9x of its neighbour.
# usage: tools/bench_sweep.sh [SYNCO_BINARY] [OUT.jsonl]   (default build/synco, no file)
# LAYERS=1 times every layer too (bench step --layers) and, for each configuration below 0.8x, lists the 5 rows of its
# step furthest from its width-16 neighbour's efficiency (tools/compare_layers.py's excess, from the last round).
# environment: WIDTHS (default "8 16 24 32 64"), BATCHES ("32 64 128 256"), THREADS (2), MOCO_K (256), ITERS (10),
#              REPEAT (1), METHOD (synco), PRECISION (fp32; bf16: synco --precision bf16, PyTorch under bf16
#              autocast), TORCH (0), LAYERS (0), PYTHON (/usr/bin/python3: a python with torch)
set -euo pipefail
bin=${1:-build/synco}; out=${2:-}
py=${PYTHON:-/usr/bin/python3}
widths=(${WIDTHS:-8 16 24 32 64}); batches=(${BATCHES:-32 64 128 256})
common=(--arch resnet18 --cifar-stem --threads "${THREADS:-2}" --moco-k "${MOCO_K:-256}" --iters "${ITERS:-10}"
        --warmup 1 --method "${METHOD:-synco}" --precision "${PRECISION:-fp32}" --json)
[ "${LAYERS:-0}" = 1 ] && common+=(--layers)
tmp=$(mktemp); ttmp=$(mktemp); trap 'rm -f "$tmp" "$ttmp"' EXIT
K=${MOCO_K:-256}
nh=$(( K / 4 > 1 ? K / 4 : 1 )); nh=$(( nh < 1024 ? nh : 1024 ))
counts=(); i=1
for d in 256 256 256 64 64 64; do counts+=(--n$i $(( d < nh ? d : nh ))); i=$((i + 1)); done
for b in "${batches[@]}"; do
  for rep in $(seq 1 "${REPEAT:-1}"); do for w in "${widths[@]}"; do
    line=$("$bin" bench step "${common[@]}" --width "$w" --batch "$b" | grep '^{')
    printf '%s\n' "$line" >> "$tmp"
    if [ "${TORCH:-0}" = 1 ]; then
      "$py" "$(dirname "$0")/bench_torch.py" step --arch resnet18 --cifar-stem --width "$w" --batch "$b" \
        --threads "${THREADS:-2}" --moco-k "$K" --n-hard "$nh" "${counts[@]}" --method "${METHOD:-synco}" \
        --precision "${PRECISION:-fp32}" --iters "${ITERS:-10}" --warmup 2 --no-gemm --json 2>/dev/null | grep '^{' | tail -1 >> "$ttmp" || true
    fi
  done; done
done
[ -z "$out" ] || cp "$tmp" "$out"
"$py" - "$tmp" "$ttmp" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}  # (width, batch) -> its runs, in round order
for r in runs:
    by.setdefault((r["width"], r["batch"]), []).append(r)
torch = {}
for l in open(sys.argv[2]):
    try:
        t = json.loads(l)
        torch.setdefault((t["width"], t["batch"]), []).append(t["gflops_per_s"])
    except (ValueError, KeyError):
        pass
med = lambda xs: statistics.median(xs)
bad, refs = [], []
print("%5s %5s %10s %12s %9s  %s" % ("width", "batch", "images/s", "GFLOP/s", "vs w16", "kernels") +
      ("   pytorch GFLOP/s  vs its w16" if torch else ""))
for (w, b), rs in by.items():
    eff = med([r["gflops_per_s"] for r in rs])  # images/s x GFLOP per image
    base = by.get((16, b))
    rel = eff / med([r["gflops_per_s"] for r in base]) if base else float("nan")
    rounds = ""
    if base and len(rs) > 1:
        per = [r["gflops_per_s"] / r16["gflops_per_s"] for r, r16 in zip(rs, base)]
        rounds = " (rounds %.2f-%.2f)" % (min(per), max(per))
    ks = [k for r in rs for k in r.get("kernels", [])]
    ref = [k for k in ks if any("ref" in str(v) for v in k.values())]
    refs += ref
    if base and rel < 0.8:
        bad.append((w, b, rel))
    t, t16 = torch.get((w, b)), torch.get((16, b))
    tcol = ""
    if t and t16:
        tcol = "   %15.2f  %10.2fx" % (med(t), med(t) / med(t16))
    elif torch:
        tcol = "   %15s" % "failed"
    print("%5d %5d %10.2f %12.2f %8.2fx  %d shapes%s%s%s" % (w, b, med([r["images_per_s"] for r in rs]), eff, rel,
                                                          len(rs[0].get("kernels", [])), rounds,
                                                          ", REFERENCE KERNELS" if ref else "", tcol))
print("below 0.8x of the width-16 neighbour: %s" % (", ".join("w%d b%d (%.2fx)" % x for x in bad) or "none"))
def total(x):
    return x["fwd_ms"] + x["key_fwd_ms"] + x["bwd_data_ms"] + x["bwd_weights_ms"]
for w, b, rel in bad:  # LAYERS=1: where the step loses, as tools/compare_layers.py counts it
    a, n = by[(w, b)][-1], by[(16, b)][-1]
    if "layers" not in a or "layers" not in n:
        continue
    gpi = lambda r: r["gflops_per_s"] / r["images_per_s"]
    scale = gpi(a) / gpi(n)  # the same batch: the work per image
    rn = {(x["name"], x["op"]): x for x in n["layers"]}
    ex = sorted(((total(x) - total(rn[(x["name"], x["op"])]) * scale, x["name"]) for x in a["layers"]
                 if (x["name"], x["op"]) in rn), reverse=True)[:5]
    print("  w%d b%d, ms above width 16's efficiency: %s" % (w, b, ", ".join("%s %.2f" % (nm, e) for e, nm in ex)))
print("reference (ref:*) kernels: %s" % (json.dumps(refs) if refs else "none"))
sys.exit(1 if refs else 0)
PY
