#!/usr/bin/env bash
# What one competing process costs each program: `synco bench step` and tools/bench_torch.py (same sizes, same
# thread count), each alone and beside one `yes >/dev/null`, alternated for ROUNDS rounds; prints each run, the
# medians, and the share of its speed each program loses to the competitor (issue 20's acceptance: synco's share
# no larger than PyTorch's). Static OpenMP splitting makes every thread wait for the one that shares its core.
# usage: tools/bench_straggler.sh [SYNCO_BINARY] [ROUNDS] [METHOD]   (default build/synco 3 synco)
# environment: WIDTH (64), BATCH (128), MOCO_K (4096), THREADS (2), PRECISION (fp32; bf16: synco --precision bf16 and
# PyTorch under bf16 autocast, as in tools/bench_step_pairs.sh), ITERS and WARMUP (both programs' --iters and
# --warmup; their defaults 5 and 2), SYNCO_ALSO (flags of a second synco run in each round, e.g. --no-adapt-threads
# for the static split; the default's governor needs a few windows of half a second: give WARMUP 20 or more at width
# 8; printed as "synco+")
set -euo pipefail
bin=${1:-build/synco}; rounds=${2:-3}; method=${3:-synco}
py=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
common=(--cifar-stem --width "${WIDTH:-64}" --batch "${BATCH:-128}" --moco-k "${MOCO_K:-4096}" --threads "${THREADS:-2}"
        --method "$method" --precision "${PRECISION:-fp32}" --iters "${ITERS:-5}" --warmup "${WARMUP:-2}" --json)
read -r -a also <<< "${SYNCO_ALSO:-}"
progs=(synco); [ -z "${SYNCO_ALSO:-}" ] || progs+=(synco+); progs+=(torch)
ips='import json,sys; print(json.load(sys.stdin)["images_per_s"])'
yes_pid=
stop_yes() { if [ -n "$yes_pid" ]; then kill "$yes_pid" 2>/dev/null || true; wait "$yes_pid" 2>/dev/null || true; yes_pid=; fi; }
trap stop_yes EXIT
run() { # run PROGRAM COMPETE: images/s
  [ "$2" = 0 ] || { yes > /dev/null & yes_pid=$!; }
  case $1 in
    synco) "$bin" bench step "${common[@]}" | grep '^{' | "$py" -c "$ips" ;;
    synco+) "$bin" bench step "${common[@]}" "${also[@]}" | grep '^{' | "$py" -c "$ips" ;;
    torch) "$py" "$here/bench_torch.py" step "${common[@]}" --no-gemm | grep '^{' | "$py" -c "$ips" ;;
  esac
  stop_yes
}
echo "precision ${PRECISION:-fp32}; synco+ is synco ${SYNCO_ALSO:-(not run)}; $(sed -n 's/^model name.*: //p' /proc/cpuinfo | head -1); oneDNN ISA $("$bin" info | sed -n 's/^cpu isa (oneDNN): //p')"
declare -A v
for r in $(seq 1 "$rounds"); do
  for prog in "${progs[@]}"; do
    for c in 0 1; do
      x=$(run "$prog" "$c")
      printf 'round %d %-6s %-10s %8.2f images/s  (load %s)\n' "$r" "$prog" "$([ "$c" = 0 ] && echo alone || echo "beside yes")" \
        "$x" "$(cut -d' ' -f1 /proc/loadavg)"
      v[$prog$c]="${v[$prog$c]:-} $x"
    done
  done
done
for prog in "${progs[@]}"; do
  "$py" - "$prog" "${v[${prog}0]}" "${v[${prog}1]}" <<'PY'
import statistics, sys
name = {"synco": "synco", "synco+": "synco+", "torch": "pytorch"}[sys.argv[1]]
a, b = (statistics.median(float(x) for x in s.split()) for s in sys.argv[2:4])
print("%-7s median alone %.2f, beside yes %.2f images/s: loses %.1f %%" % (name, a, b, 100 * (1 - b / a)))
PY
done
