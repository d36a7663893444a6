#!/usr/bin/env bash
# --adapt-threads, on by default, through the commands (when the governor switches depends on the machine's other
# work: its decisions and the replanned steps are tested in tests/unit/test_thread_governor.c, and that a switch
# changes no bit in tests/unit/test_fixed_sums.c):
# - pretrain says it is on, config.json and the checkpoint keep it, log.jsonl's step rows give the threads, and a
#   plain --resume keeps it (--no-adapt-threads turns it off, and says so); a run started with --no-adapt-threads
#   has it off;
# - with one thread it says there is nothing to adapt when the flag is given, and nothing when it is not;
# - bench step reports the threads it ended on, and nothing of it with --no-adapt-threads.
set -euo pipefail
. "$(dirname "$0")/common.inc"
two_classes "$tmp/d" 16
F8=(--arch resnet18 --cifar-stem --width 8 -b 8 --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4
    --image-size 32 --bn-splits 2 --workers 1 --print-freq 2 --knn-every 0)
"$SYNCO" pretrain "${F8[@]}" --threads 2 --epochs 1 --data "$tmp/d" --out "$tmp/a" > "$tmp/o" 2>&1 ||
  { cat "$tmp/o"; fail "pretrain"; }
grep -q 'threads: 2, fewer while other processes take cores (--no-adapt-threads: always 2)' "$tmp/o" ||
  { cat "$tmp/o"; fail "no line"; }
grep -q '"adapt_threads": *1' "$tmp/a/config.json" || fail "config.json lacks adapt_threads 1"
rows=$(grep -c '"kind": *"step"' "$tmp/a/log.jsonl" || true)
with=$(grep '"kind": *"step"' "$tmp/a/log.jsonl" | grep -cE '"threads": *[12][,}]' || true)
[ "$rows" -ge 2 ] && [ "$with" = "$rows" ] || { cat "$tmp/a/log.jsonl"; fail "step rows without threads ($with of $rows)"; }

# a plain resume keeps it; --no-adapt-threads turns it off
"$SYNCO" pretrain --resume "$tmp/a" --epochs 2 --data "$tmp/d" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "resume"; }
grep -q 'fewer while other processes take cores' "$tmp/o" || { cat "$tmp/o"; fail "resume dropped --adapt-threads"; }
"$SYNCO" pretrain --resume "$tmp/a" --epochs 3 --no-adapt-threads --data "$tmp/d" > "$tmp/o" 2>&1 ||
  { cat "$tmp/o"; fail "resume --no-adapt-threads"; }
grep -q 'adapt-threads' "$tmp/o" || { cat "$tmp/o"; fail "the change is not said"; }
if grep -q 'fewer while other processes take cores' "$tmp/o"; then cat "$tmp/o"; fail "still adapting"; fi
last=$(grep '"kind": *"step"' "$tmp/a/log.jsonl" | tail -1)
[[ "$last" != *'"threads"'* ]] || fail "a row of the run without it gives threads: $last"

"$SYNCO" pretrain "${F8[@]}" --threads 2 --epochs 1 --no-adapt-threads --data "$tmp/d" --out "$tmp/c" > "$tmp/o" 2>&1 ||
  { cat "$tmp/o"; fail "pretrain --no-adapt-threads"; }
if grep -q 'fewer while other processes take cores' "$tmp/o"; then cat "$tmp/o"; fail "adapting after --no-adapt-threads"; fi
grep -q '"adapt_threads": *0' "$tmp/c/config.json" || fail "config.json lacks adapt_threads 0"

"$SYNCO" pretrain "${F8[@]}" --threads 1 --epochs 1 --adapt-threads --data "$tmp/d" --out "$tmp/b" > "$tmp/o" 2>&1 ||
  { cat "$tmp/o"; fail "pretrain --threads 1 --adapt-threads"; }
grep -q -- '--adapt-threads: nothing to adapt (one compute thread)' "$tmp/o" || { cat "$tmp/o"; fail "one thread"; }
"$SYNCO" pretrain "${F8[@]}" --threads 1 --epochs 1 --data "$tmp/d" --out "$tmp/b2" > "$tmp/o" 2>&1 ||
  { cat "$tmp/o"; fail "pretrain --threads 1"; }
if grep -q 'adapt' "$tmp/o"; then cat "$tmp/o"; fail "one thread, no flag: said something of adapting"; fi

out=$("$SYNCO" bench step --cifar-stem --width 8 -b 8 --moco-k 64 --iters 3 --warmup 1 --threads 2 --json)
[[ "$out" == *'"adapt_threads":1,"threads_at_end":'[12]* ]] || fail "bench step: $out"
out=$("$SYNCO" bench step --cifar-stem --width 8 -b 8 --moco-k 64 --iters 3 --warmup 1 --threads 2 --no-adapt-threads --json)
[[ "$out" != *'adapt_threads'* ]] || fail "bench step --no-adapt-threads: $out"
echo "adapt_threads: ok"
