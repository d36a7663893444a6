#!/usr/bin/env bash
# A width x batch sweep of `synco bench step` (ResNet-18, CIFAR stem), so that a performance cliff shows up in a
# benchmark: for each configuration the images/s and the images/s per GFLOP of one image's step (i.e. the GFLOP/s
# achieved, the direct convolution's operation count), and its ratio to the width-16 configuration of the same batch
# (the acceptance of issue 20: no configuration below 0.8x of it). Every run's kernel list (`--json`) is searched for
# one of oneDNN's reference kernels (ref:*); one found fails the sweep.
# usage: tools/bench_sweep.sh [SYNCO_BINARY] [OUT.jsonl]   (default build/synco, no file)
# environment: WIDTHS (default "8 16 24 32 64"), BATCHES ("32 64 128 256"), THREADS (2), MOCO_K (256), ITERS (10),
#              METHOD (synco)
set -euo pipefail
bin=${1:-build/synco}; out=${2:-}
py=${PYTHON:-/usr/bin/python3}
widths=(${WIDTHS:-8 16 24 32 64}); batches=(${BATCHES:-32 64 128 256})
common=(--arch resnet18 --cifar-stem --threads "${THREADS:-2}" --moco-k "${MOCO_K:-256}" --iters "${ITERS:-10}"
        --warmup 1 --method "${METHOD:-synco}" --json)
tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
for b in "${batches[@]}"; do
  for w in "${widths[@]}"; do
    line=$("$bin" bench step "${common[@]}" --width "$w" --batch "$b" | grep '^{')
    printf '%s\n' "$line" >> "$tmp"
  done
done
[ -z "$out" ] || cp "$tmp" "$out"
"$py" - "$tmp" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["width"], r["batch"]): r for r in runs}
bad, refs = [], []
print("%5s %5s %10s %12s %9s  %s" % ("width", "batch", "images/s", "GFLOP/s", "vs w16", "kernels"))
for r in runs:
    w, b = r["width"], r["batch"]
    eff = r["gflops_per_s"]  # images/s x GFLOP per image
    base = by.get((16, b))
    rel = eff / base["gflops_per_s"] if base else float("nan")
    ks = r.get("kernels", [])
    ref = [k for k in ks if any("ref" in str(v) for v in k.values())]
    refs += ref
    if base and rel < 0.8:
        bad.append((w, b, rel))
    print("%5d %5d %10.2f %12.2f %8.2fx  %d shapes%s" % (w, b, r["images_per_s"], eff, rel, len(ks),
                                                      ", REFERENCE KERNELS" if ref else ""))
print("below 0.8x of the width-16 neighbour: %s" % (", ".join("w%d b%d (%.2fx)" % x for x in bad) or "none"))
print("reference (ref:*) kernels: %s" % (json.dumps(refs) if refs else "none"))
sys.exit(1 if refs else 0)
PY
