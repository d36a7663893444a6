#!/usr/bin/env bash
# The command line as people expect it: every flag value out of range is refused with one line naming it (exit 2,
# nothing written), several problems are listed at once, --batch/--batch-size, --wd/--weight-decay and -j are
# accepted, info takes --threads, synthetic counts follow a small queue, the progress line fits a narrow
# terminal, and Ctrl-C stops a run cleanly (exit 130) saying where the last checkpoint is.
set -euo pipefail
. "$(dirname "$0")/common.inc"
img=$(small_cifar '000[01].jpg' "$tmp/data" 2)   # 20 images: 2 steps of 8
tiny=(--data "$img" --arch resnet18 --cifar-stem --width 8 --image-size 32 --threads 1 --bn-splits 2 -b 8)
neg=(--moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4)

# refused CMD_ARGS... MESSAGE: exit 2, exactly one line naming the value, the --out directory not created.
n=0
refused() {
  local msg=${*: -1} rc=0
  n=$((n + 1))
  timeout 120 "$SYNCO" "${@:1:$#-1}" > "$tmp/o" 2> "$tmp/e" || rc=$?   # a regression must not train for ever
  [ "$rc" = 2 ] || { cat "$tmp/e"; fail "exit $rc, not 2: ${*:1:$#-1}"; }
  grep -qF -- "$msg" "$tmp/e" || { cat "$tmp/e"; fail "no '$msg' in the error of: ${*:1:$#-1}"; }
  [ "$(wc -l < "$tmp/e")" = 1 ] || { cat "$tmp/e"; fail "not one line: ${*:1:$#-1}"; }
}
pre() { refused pretrain "${tiny[@]}" "${neg[@]}" --out "$tmp/r$n" "$@"; [ ! -e "$tmp/r$((n))" ] || fail "refused pretrain $* wrote $tmp/r$n"; }
pre --epochs 99999999999 "synco pretrain: --epochs 99999999999 is out of range"
pre --epochs 0 "--epochs 0 is out of range"
pre --threads -3 "--threads -3 is out of range"
pre --save-every -1 "--save-every -1 is out of range"
pre --stop-epoch -1 "--stop-epoch -1 is out of range"
pre -p 0 "-p 0 is out of range"
pre --workers -1 "--workers -1 is out of range"
pre -j -1 "-j -1 is out of range"
pre --knn-k 0 "--knn-k 0 is out of range"
pre --warmup-epochs -1 "--warmup-epochs -1 is out of range"
pre --lr -1 "--lr -1 is out of range (must be greater than 0)"
pre --lr nan "--lr nan is not a finite number"
pre --lr inf "--lr inf is not a finite number"
pre --moco-t 0 "--moco-t 0 is out of range"
pre --moco-m 1.5 "--moco-m 1.5 is out of range (0 to 1)"
pre --wd 1e999 "--wd 1e999 is out of range"
pre --batch-size 2147483648 "--batch-size 2147483648 is out of range"
pre -b 0 "-b 0 is out of range"
pre --width abc "--width expects an integer, got 'abc'"
pre --seed 1e3 "--seed expects an integer, got '1e3'"
pre --n1 -1 "--n1 -1 is out of range"
pre --schedule 5 8 "--schedule gives the step schedule's epochs, but the schedule is cosine (the default): add --no-cos"
pre --no-cos --schedule 5,x "--schedule expects an integer, got 'x'"
refused pretrain "${tiny[@]}" --out "" "--out is empty"
refused pretrain "${tiny[@]}" --data "" --out "$tmp/r-empty" "--data is empty"
# The aliases are the same option (a bad value through them is refused by the option's range) in every command.
refused knn --random-init --batch 0 "--batch 0 is out of range"
refused knn --random-init --batch-size -5 "--batch-size -5 is out of range"
refused linear --random-init --weight-decay -1 "--weight-decay -1 is out of range"
refused bench fwdbwd --batch-size 0 "--batch-size 0 is out of range"
refused bench fwdbwd --moco-k 7 "synco bench fwdbwd: --moco-k is bench step's (fwdbwd times the encoder alone)"
refused knn --random-init --threads -3 "--threads -3 is out of range"
refused knn --random-init --t 0 "--t 0 is out of range (must be greater than 0)"
refused knn --random-init --backend ref --precision bf16 "backend 'ref' computes in fp32 only"
refused bench step --backend ref --precision bf16 "backend 'ref' computes in fp32 only"
refused knn --random-init --precision tf32 "--precision tf32 is for GPUs (TF32 tensor cores); backend 'cpu' has none"
refused knn --random-init --t -1 "--t -1 is out of range (must be greater than 0)"
refused info --threads -1 "synco info: --threads -1 is out of range"

# Several problems: all listed, one per line, exit 2, nothing written.
rc=0
"$SYNCO" pretrain "${tiny[@]}" --epochs -1 --lr -1 --method foo --moco-k 100 --bn-splits 3 --out "$tmp/several" \
  > "$tmp/o" 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] || fail "several problems: exit $rc"
for m in "--epochs -1 is out of range" "--lr -1 is out of range" "--method must be synco, mochi or moco" \
         "--moco-k 100 is not a multiple of the batch size 8" "not a multiple of --bn-splits 3"; do
  grep -qF -- "$m" "$tmp/e" || { cat "$tmp/e"; fail "several problems: '$m' not listed"; }
done
[ "$(wc -l < "$tmp/e")" = 5 ] || { cat "$tmp/e"; fail "several problems: not one line each"; }
[ ! -e "$tmp/several" ] || fail "a refused pretrain created its run directory"

# --method moco with a synthetic count given trains with those negatives: said (the banner reads "moco")
"$SYNCO" pretrain "${tiny[@]}" --moco-k 64 --method moco --n1 4 --epochs 1 --out "$tmp/mn1" > "$tmp/o" 2> "$tmp/e" \
  || { cat "$tmp/e"; fail "--method moco --n1 4"; }
grep -q "method moco with --n1 4: it trains with those synthetic negatives" "$tmp/e" || { cat "$tmp/e"; fail "--method moco --n1 4: not said"; }

# Problems of the training config itself, judged by the library's validator, come together as well, before the
# data is read (there is none here): the queue against the keys of a symmetric loss, Split-BN, a synthetic count
# above n_hard, the crop; and the data path that is not there, with them.
rc=0
"$SYNCO" pretrain "${tiny[@]}" "${neg[@]}" --data "$tmp/no-such-data" --symmetric --moco-k 72 --bn-splits 3 --n1 40 \
  --image-size 4 --out "$tmp/config" > "$tmp/o" 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] || { cat "$tmp/e"; fail "config problems: exit $rc"; }
for m in "--moco-k 72 is not a multiple of the 16 keys enqueued per step" "not a multiple of --bn-splits 3" \
         "--n1 40 must be between 0 and --n-hard 32" "--image-size 4 is too small (at least 8)" \
         "--data $tmp/no-such-data: No such file or directory"; do
  grep -qF -- "$m" "$tmp/e" || { cat "$tmp/e"; fail "config problems: '$m' not listed"; }
done
[ "$(wc -l < "$tmp/e")" = 5 ] || { cat "$tmp/e"; fail "config problems: not one line each"; }
[ ! -e "$tmp/config" ] || fail "a refused pretrain created its run directory"

# info --threads
"$SYNCO" info --threads 3 > "$tmp/info"
grep -q "^threads: 3 " "$tmp/info" || { cat "$tmp/info"; fail "info --threads 3 not reported"; }

# Idle threads: synco sets libgomp's spin count itself (wait_policy.c) unless the user chose a wait policy, and the
# programs it starts (here a stand-in for --compare-torch's python) see the user's environment, not synco's.
grep -q "idle threads wait: spin 3000 turns" "$tmp/info" || { cat "$tmp/info"; fail "info: no default spin count"; }
OMP_WAIT_POLICY=passive "$SYNCO" info > "$tmp/info"
grep -q "idle threads wait: OMP_WAIT_POLICY, as set" "$tmp/info" || { cat "$tmp/info"; fail "info: user's policy not kept"; }
cat > "$tmp/fakepy" <<EOF
#!/bin/sh
env > "$tmp/child.env"
echo "\$*" > "$tmp/child.args"
echo '{"images_per_s": 1.0, "peak_rss_mb": 1.0}'
EOF
chmod +x "$tmp/fakepy"
bench_tiny=(bench step --cifar-stem --width 8 --batch 8 --moco-k 64 --iters 1 --warmup 0 --threads 1 --compare-torch)
"$SYNCO" "${bench_tiny[@]}" --python "$tmp/fakepy" > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/e"; fail "bench --compare-torch failed"; }
[ -s "$tmp/child.env" ] || fail "the stand-in python did not run"
# PyTorch times the same step: precision, image size, Split-BN, iterations and the synthetic counts resolved for K 64
for want in "step --arch resnet18 --cifar-stem --width 8 --batch 8 --image-size 32 --threads 1 --precision fp32" \
            "--bn-splits 8 --warmup 0 --iters 1 --method synco --moco-k 64 --n-hard 16 --n1 16 --n2 16 --n3 16 --n4 16"; do
  grep -qF -- "$want" "$tmp/child.args" || { cat "$tmp/child.args"; fail "--compare-torch: '$want' not passed"; }
done
# a python path with a space and a quote is one word to the shell
cp "$tmp/fakepy" "$tmp/fa ke'py"; rm -f "$tmp/child.args"
"$SYNCO" "${bench_tiny[@]}" --python "$tmp/fa ke'py" > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/e"; fail "bench --python with a space"; }
[ -s "$tmp/child.args" ] || { cat "$tmp/o"; fail "--python with a space and a quote did not run"; }
printf '#!/bin/sh\necho "ValueError: need n_i <= n_hard" >&2\nexit 1\n' > "$tmp/failpy"; chmod +x "$tmp/failpy"
"$SYNCO" "${bench_tiny[@]}" --python "$tmp/failpy" > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/e"; fail "bench with a failing comparison"; }
grep -q "pytorch : not compared: ValueError: need n_i <= n_hard" "$tmp/o" || { cat "$tmp/o"; fail "--compare-torch: its failure's reason not said"; }
! grep -q "SPINCOUNT" "$tmp/child.env" || { grep SPINCOUNT "$tmp/child.env"; fail "synco's spin count leaked to a child"; }
GOMP_SPINCOUNT=77 "$SYNCO" "${bench_tiny[@]}" --python "$tmp/fakepy" > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/e"; fail "bench failed"; }
grep -qx "GOMP_SPINCOUNT=77" "$tmp/child.env" || fail "the user's GOMP_SPINCOUNT did not reach a child"
# the one-process commands started by an MPI launcher (its environment, as mpirun -np 2 sets it) refuse: the
# copies raced on the same output files
rc=0; OMPI_COMM_WORLD_SIZE=2 "$SYNCO" export --ckpt "$tmp/none" --out "$tmp/mpi.safetensors" > "$tmp/o" 2> "$tmp/e" || rc=$?
[ "$rc" = 2 ] && grep -q "synco export: started as 2 processes by an MPI launcher, but it runs as one" "$tmp/e" \
  || { cat "$tmp/e"; fail "export under a 2-process launcher: exit $rc"; }
OMPI_COMM_WORLD_SIZE=1 "$SYNCO" export --ckpt "$tmp/none" --out "$tmp/mpi.safetensors" > "$tmp/o" 2> "$tmp/e" || true
grep -q "started as" "$tmp/e" && { cat "$tmp/e"; fail "export under a 1-process launcher refused"; }
# bench data without --data times the bundled training images, found beside the program from any folder
(S=$(realpath "$SYNCO"); cd "$tmp" && "$S" bench data --seconds 0.2 -j 1 --json > "$tmp/bd.json" 2> "$tmp/e") || { cat "$tmp/e"; fail "bench data from another folder"; }
python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); assert d['images'] == 5000 and d['pairs_per_s'] > 0, d" \
  "$tmp/bd.json" || fail "bench data: not the bundled 5,000 training images"
# bench --json names the matrix products outside the convolutions as synco info does, and which one
# SYNCO_HOST_GEMM chose
"$SYNCO" bench step --cifar-stem --width 8 --batch 8 --moco-k 64 --iters 1 --warmup 0 --threads 1 --json > "$tmp/o"
python3 - "$tmp/o" "$("$SYNCO" info)" <<'PY' || fail "bench --json: no host_gemm, or not synco info's"
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert d["host_gemm"] and "): " + d["host_gemm"] + ";" in sys.argv[2], (d.get("host_gemm"), sys.argv[2])
PY
SYNCO_HOST_GEMM=openblas "$SYNCO" bench step --cifar-stem --width 8 --batch 8 --moco-k 64 --iters 1 --warmup 0 \
  --threads 1 --json > "$tmp/o"
grep -q '"host_gemm":"OpenBLAS' "$tmp/o" || { cat "$tmp/o"; fail "bench --json with SYNCO_HOST_GEMM=openblas"; }

# Scaled synthetic counts with --moco-k 256 (no --n-hard/--nK), the long aliases and -j, --schedule 5,9 12, in a 60-column terminal
# when script(1) can give the run one: the progress redraws never exceed 59 columns.
run=(pretrain --data "$img" --arch resnet18 --cifar-stem --width 8 --image-size 32 --threads 1 --bn-splits 2
     --batch 8 --moco-k 256 --weight-decay 2e-4 -j 1 --warmup-epochs 0 --epochs 1 --no-cos --schedule 5,9 12
     --out "$tmp/k256")
if command -v script > /dev/null && script -qec true /dev/null > /dev/null 2>&1; then
  script -qec "stty cols 60 2>/dev/null; $(printf '%q ' "$SYNCO" "${run[@]}")" "$tmp/tty.txt" > /dev/null 2>&1 \
    || { cat "$tmp/tty.txt"; fail "the --moco-k 256 run failed"; }
  python3 - "$tmp/tty.txt" <<'PY' || fail "a progress line is wider than the terminal"
import re, sys
s = open(sys.argv[1], 'rb').read().decode('utf-8', 'replace').replace('\x1b[K', '')
lines = [x for x in re.split(r'[\r\n]+', s) if x.startswith('epoch ')]
if len(lines) < 2:
    sys.exit('no progress redraws in the terminal output:\n' + s)
wide = [x for x in lines if len(x) > 59]
if wide:
    sys.exit('wider than 59 columns: %r' % wide)
PY
else
  echo "no script(1): the narrow-terminal check is skipped"
  "$SYNCO" "${run[@]}" > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/e"; fail "the --moco-k 256 run failed"; }
fi
python3 - "$tmp/k256/config.json" <<'PY' || fail "--moco-k 256: counts or aliases not as expected"
import json, sys
c = json.load(open(sys.argv[1]))
want = {'n_hard': 64, 'n1': 64, 'n2': 64, 'n3': 64, 'n4': 64, 'n5': 64, 'n6': 64, 'batch_size': 8, 'workers': 1}
bad = {k: c[k] for k in want if c[k] != want[k]}
if bad or abs(c['wd'] - 2e-4) > 1e-12 or c['schedule'] != [5, 9, 12]:
    sys.exit('config: %r (wd %r, schedule %r)' % (bad, c['wd'], c['schedule']))
PY
[ -f "$tmp/k256/last.safetensors" ] || fail "--moco-k 256 run wrote no checkpoint"

# Ctrl-C: a background run is interrupted once its first checkpoint exists; it stops between two steps, says
# where that checkpoint is and how to continue, and exits 130.
"$SYNCO" pretrain "${tiny[@]}" "${neg[@]}" --warmup-epochs 0 --epochs 50 --out "$tmp/int" > "$tmp/int.out" 2> "$tmp/int.err" &
pid=$!
for _ in $(seq 600); do [ -f "$tmp/int/last.safetensors" ] || ! kill -0 "$pid" 2> /dev/null && break; sleep 0.1; done
[ -f "$tmp/int/last.safetensors" ] || { kill -9 "$pid" 2> /dev/null || true; cat "$tmp/int.err"; fail "no first checkpoint"; }
kill -INT "$pid"
for _ in $(seq 600); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2> /dev/null; then kill -9 "$pid"; fail "SIGINT did not stop the run"; fi
rc=0
wait "$pid" || rc=$?
[ "$rc" = 130 ] || { cat "$tmp/int.err"; fail "interrupted run: exit $rc, not 130"; }
grep -qE "^synco pretrain: interrupted at epoch [0-9]+ step [0-9]+; the last checkpoint is $tmp/int/last.safetensors \(epoch [0-9]+\); continue with --resume $tmp/int/last.safetensors$" "$tmp/int.err" \
  || { cat "$tmp/int.err"; fail "interrupted run: no message naming the checkpoint"; }
echo "cli_args: $n refused values, aliases, info --threads, wait policy, scaled counts, narrow terminal, Ctrl-C: ok"
