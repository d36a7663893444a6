#!/usr/bin/env bash
# Alternates `synco bench step` and tools/bench_torch.py (same sizes, same thread count) for ROUNDS rounds and
# prints each run and the median ratio per method. On a shared VM the speed of both programs drifts by 10-30 %
# over minutes; alternating them and taking medians keeps that drift out of the ratio.
# PRECISION=bf16 runs both in bf16: synco --precision bf16 and PyTorch under torch.autocast("cpu", torch.bfloat16)
# (bench_torch.py --precision bf16); the default is fp32 for both. Each round prints the load average before it
# (the machine may be shared: compare rounds of like load).
# usage: [PRECISION=fp32|bf16] tools/bench_step_pairs.sh [SYNCO_BINARY] [ROUNDS] [METHODS...]
#        (default build/synco 3 synco moco)
set -euo pipefail
bin=${1:-build/synco}; rounds=${2:-3}; shift $(( $# > 2 ? 2 : $# )) || true
methods=("$@"); [ ${#methods[@]} -gt 0 ] || methods=(synco moco)
py=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
prec=${PRECISION:-fp32}
common=(--cifar-stem --batch 128 --threads 2 --precision "$prec")
echo "precision $prec; $(sed -n 's/^model name.*: //p' /proc/cpuinfo | head -1); oneDNN ISA $("$bin" info | sed -n 's/^cpu isa (oneDNN): //p')"
fields='import json,sys; d=json.load(sys.stdin); print(d["images_per_s"], d["peak_rss_mb"])'
declare -A s t
for r in $(seq 1 "$rounds"); do
  echo "round $r: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  for m in "${methods[@]}"; do
    a=$("$bin" bench step "${common[@]}" --method "$m" --json | grep '^{')
    b=$("$py" "$here/bench_torch.py" step "${common[@]}" --method "$m" --json --no-gemm | grep '^{')
    read -r ia ra < <(printf '%s' "$a" | "$py" -c "$fields")
    read -r ib rb < <(printf '%s' "$b" | "$py" -c "$fields")
    printf 'round %d %-6s %s synco %7.2f images/s (%s MB)  pytorch %7.2f images/s (%s MB)  ratio %.2fx\n' \
      "$r" "$m" "$prec" "$ia" "$ra" "$ib" "$rb" "$("$py" -c "print($ia/$ib)")"
    s[$m]="${s[$m]:-} $ia"; t[$m]="${t[$m]:-} $ib"
  done
done
for m in "${methods[@]}"; do
  "$py" - "$m" "${s[$m]}" "${t[$m]}" "$prec" <<'PY'
import statistics, sys
m, a, b = sys.argv[1], [float(v) for v in sys.argv[2].split()], [float(v) for v in sys.argv[3].split()]
print("%-6s %s median synco %.2f images/s, pytorch %.2f images/s: %.2fx (per-round ratios %s)" % (
    m, sys.argv[4], statistics.median(a), statistics.median(b), statistics.median(a) / statistics.median(b),
    ", ".join("%.2f" % (x / y) for x, y in zip(a, b))))
PY
done
