#!/usr/bin/env bash
# Nothing a command writes damages what is there already (issue 22, "Damage"):
#  1. --force keeps the earlier run until the new run has its first checkpoint: a new run that fails before one
#     (a non-finite loss at step 0, images whose headers claim 60000x60000) puts it back byte-identical; a --force
#     run killed before one has it put back by the next start (removed if the new run had saved one).
#  2. No file is written through a link: links planted in a run directory (log.jsonl, last.safetensors.tmp,
#     config.json.tmp, .lock) or at an output's name are replaced or refused, never followed; a run directory
#     copied with hard links (cp -al) resumes without writing into the original.
#  3. An output that is an input, or another output, or the same file under another name, is refused in every
#     command that writes (embed, export, linear, finetune, analyze, plot, pretrain); so is an output inside a
#     folder of images read (--data, --train, --val) and an output file that is a run's own (last.safetensors,
#     config.json, ... beside a run's config.json or log.jsonl).
#  4. --resume CKPT --out DIR, where DIR holds another run, is refused as a fresh run is (--force replaces it).
#  5. An output path too long for the names made from it is refused with its length; one that fits is written
#     with its full names.
#  6. A file-size limit (ulimit -f) met while writing a checkpoint is an error naming the file (EFBIG, not
#     SIGXFSZ), and the last checkpoint is intact.
set -euo pipefail
. "$(dirname "$0")/common.inc"
SYNCO=$(cd "$(dirname "$SYNCO")" && pwd)/$(basename "$SYNCO")
data=$tmp/data
first_per_class data/cifar10-small/train "$data" 2
F8=(--arch resnet18 --cifar-stem --width 8 -b 8 --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4
    --threads 1 --epochs 1 --image-size 32 --bn-splits 2 --workers 1)
machine=(--threads 1 --workers 1)
run=$tmp/run
"$SYNCO" pretrain --data "$data" "${F8[@]}" --out "$run" > "$tmp/o" 2>&1 || { cat "$tmp/o"; fail "the first run failed"; }
ckpt=$run/last.safetensors

# The files of a folder and their hashes (not .lock, which holds the pid of the last run).
snapshot() { (cd "$1" && find . -type f ! -name .lock | sort | xargs -r sha256sum); }
# expect_kept PATTERN DIR CMD...: CMD fails saying PATTERN, and DIR's files are as they were.
expect_kept() {
  local pat=$1 dir=$2; shift 2
  snapshot "$dir" > "$tmp/before"
  if "$@" > "$tmp/o" 2> "$tmp/e"; then cat "$tmp/o" "$tmp/e"; fail "succeeded: $*"; fi
  grep -q -- "$pat" "$tmp/e" || { cat "$tmp/o" "$tmp/e"; fail "message lacks '$pat': $*"; }
  snapshot "$dir" > "$tmp/after"
  cmp -s "$tmp/before" "$tmp/after" || { diff "$tmp/before" "$tmp/after" || true; fail "$dir changed: $*"; }
}
expect_ok() { "$@" > "$tmp/o" 2> "$tmp/e" || { cat "$tmp/o" "$tmp/e"; fail "failed: $*"; }; }
said() { grep -q -- "$1" "$tmp/e" || { cat "$tmp/o" "$tmp/e"; fail "no word of '$1'"; }; }

# ---- 1. --force: the earlier run survives until the new run has a checkpoint ----
expect_kept "non-finite loss at step 0" "$run" "$SYNCO" pretrain --data "$data" "${F8[@]}" --moco-t 1e-45 --force --out "$run"
said "the earlier run is put back"
[ ! -e "$run/.replaced-run" ] || fail ".replaced-run left behind"
python3 - "$tmp/huge" <<'PY'
import os, struct, sys, zlib
def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b) & 0xffffffff)
png = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 60000, 60000, 8, 2, 0, 0, 0))
       + chunk(b'IDAT', zlib.compress(b'\0' * 100)) + chunk(b'IEND', b''))
for c in ('a', 'b'):
    os.makedirs(os.path.join(sys.argv[1], c))
    for i in range(8): open(os.path.join(sys.argv[1], c, '%d.png' % i), 'wb').write(png)
PY
expect_kept "huge/" "$run" "$SYNCO" pretrain --data "$tmp/huge" "${F8[@]}" --force --out "$run"
[ ! -e "$run/.replaced-run" ] || fail ".replaced-run left behind"
# A --force run killed before its first checkpoint (the state SIGKILL leaves: the earlier run set aside, the new
# run's config.json and log.jsonl, no checkpoint): the next start puts the earlier run back and resumes it.
snapshot "$run" > "$tmp/old"
mkdir "$run/.replaced-run"
ev=("$run"/events.out.tfevents.*) # TensorBoard's event files are the run's too (with protobuf-c)
[ -e "${ev[0]}" ] || ev=()
mv "$run/config.json" "$run/log.jsonl" "$ckpt" "${ev[@]}" "$run/.replaced-run/"
echo '{"new": 1}' > "$run/config.json"
: > "$run/log.jsonl"
# Before that start, a reader of the folder is pointed at the earlier run's checkpoint, not told there is none.
if "$SYNCO" export --ckpt "$run" --out "$tmp/x.safetensors" > /dev/null 2> "$tmp/e"; then fail "export of a folder without last.safetensors"; fi
grep -q "stopped before its first checkpoint; the earlier run's is $run/.replaced-run/last.safetensors" "$tmp/e" \
  || { cat "$tmp/e"; fail "export did not point at .replaced-run"; }
expect_ok "$SYNCO" pretrain --resume "$run" --stop-epoch 1 --epochs 2 "${machine[@]}"
said "put back the earlier run ($((3 + ${#ev[@]})) files) that an interrupted --force run had set aside"
snapshot "$run" > "$tmp/now"
cmp -s "$tmp/old" "$tmp/now" || { diff "$tmp/old" "$tmp/now" || true; fail "the earlier run was not put back as it was"; }
# ... killed after its first checkpoint: the earlier run's files go.
mkdir "$run/.replaced-run"
cp "$ckpt" "$run/.replaced-run/checkpoint_0009.safetensors"
expect_ok "$SYNCO" pretrain --resume "$run" --stop-epoch 1 --epochs 2 "${machine[@]}"
said "removed the earlier run (1 files) that an interrupted --force run replaced"
[ ! -e "$run/.replaced-run" ] && [ ! -e "$run/checkpoint_0009.safetensors" ] || fail "the replaced run was not removed"
# A --force run that reaches its checkpoint removes the earlier run then.
cp -r "$run" "$tmp/forced"
echo old > "$tmp/forced/checkpoint_0005.safetensors"
ev=("$tmp/forced"/events.out.tfevents.*)
[ -e "${ev[0]}" ] || ev=()
expect_ok "$SYNCO" pretrain --data "$data" "${F8[@]}" --force --out "$tmp/forced"
said "the earlier run's $((4 + ${#ev[@]})) files are removed"
[ ! -e "$tmp/forced/.replaced-run" ] && [ ! -e "$tmp/forced/checkpoint_0005.safetensors" ] || fail "--force kept the earlier run"

# ---- 2. no file is written through a link ----
echo precious > "$tmp/precious.txt"
echo x > "$tmp/x"
keep() { [ "$(cat "$tmp/precious.txt")" = precious ] && [ "$(cat "$tmp/x")" = x ] || fail "a file outside was written: $*"; }
regular() { for f; do [ -f "$f" ] && [ ! -L "$f" ] || fail "$f is not a regular file"; done; }
links=$tmp/links
mkdir -p "$links"
ln -s ../precious.txt "$links/log.jsonl"
ln -s ../x "$links/last.safetensors.tmp"
ln -s ../precious.txt "$links/config.json.tmp"
expect_ok "$SYNCO" pretrain --data "$data" "${F8[@]}" --force --out "$links"
keep "pretrain with links in its run directory"
regular "$links/log.jsonl" "$links/last.safetensors" "$links/config.json"
rm "$links/log.jsonl"
ln -s ../precious.txt "$links/log.jsonl"
expect_kept "log.jsonl: cannot open: it is a symbolic link" "$links" "$SYNCO" pretrain --resume "$links" --epochs 2 "${machine[@]}"
keep "--resume with log.jsonl a link"
rm "$links/log.jsonl" "$links/.lock"
: > "$links/log.jsonl"
ln -s ../precious.txt "$links/.lock"
expect_kept ".lock: cannot create the lock file: it is a symbolic link" "$links" \
  "$SYNCO" pretrain --resume "$links" --epochs 2 "${machine[@]}"
keep "--resume with .lock a link"
rm "$links/.lock"
# A copy made with hard links (cp -al) continues without writing into the original's log or lock.
cp -al "$run" "$tmp/hardcopy"
snapshot "$run" > "$tmp/old"
lock=$(cat "$run/.lock")
expect_ok "$SYNCO" pretrain --resume "$tmp/hardcopy" --epochs 2 "${machine[@]}"
snapshot "$run" > "$tmp/now"
cmp -s "$tmp/old" "$tmp/now" && [ "$(cat "$run/.lock")" = "$lock" ] || fail "resuming a cp -al copy wrote into the original"
mkdir "$tmp/out"
ln -s ../precious.txt "$tmp/out/f.npy"
ln -s ../x "$tmp/out/f.npy.tmp"
ln -s ../precious.txt "$tmp/out/f.files.txt.tmp"
expect_ok "$SYNCO" embed --ckpt "$ckpt" --data "$data" --out "$tmp/out/f.npy" --threads 1
keep "embed onto links"
regular "$tmp/out/f.npy" "$tmp/out/f.files.txt"
ln -s ../precious.txt "$tmp/out/e.safetensors.tmp"
expect_ok "$SYNCO" export --ckpt "$ckpt" --out "$tmp/out/e.safetensors"
keep "export onto a link"
regular "$tmp/out/e.safetensors"
if "$SYNCO" plot "$run" --out "$tmp/out/p.png" > "$tmp/o" 2>&1; then
  ln -s ../precious.txt "$tmp/out/q.png.tmp"
  ln -s ../x "$tmp/out/q.png"
  expect_ok "$SYNCO" plot "$run" --out "$tmp/out/q.png"
  keep "plot onto links"
  regular "$tmp/out/q.png"
fi

# ---- 3. an output is never an input, nor another output, nor the same file under another name ----
ln -s "$run" "$tmp/alias"
ln "$ckpt" "$tmp/out/hard.safetensors"
expect_kept "--out $ckpt is the --ckpt file itself" "$run" "$SYNCO" embed --ckpt "$ckpt" --data "$data" --out "$ckpt"
expect_kept "is the --ckpt file itself" "$run" "$SYNCO" embed --ckpt "$ckpt" --data "$data" --out "$tmp/alias/last.safetensors"
expect_kept "is the --ckpt file itself" "$run" "$SYNCO" export --ckpt "$tmp/out/hard.safetensors" --out "$ckpt"
expect_kept "--labels-out $tmp/out/./f.npy is the --out file itself" "$tmp/out" \
  "$SYNCO" embed --ckpt "$ckpt" --data "$data" --out "$tmp/out/f.npy" --labels-out "$tmp/out/./f.npy"
expect_kept "--labels-out $tmp/out/f.files.txt is the --out's row names file itself" "$tmp/out" \
  "$SYNCO" embed --ckpt "$ckpt" --data "$data" --out "$tmp/out/f.npy" --labels-out "$tmp/out/f.files.txt"
echo idx > "$tmp/out/train-images-idx3-ubyte"
expect_kept "--out $tmp/out/train-images-idx3-ubyte is the --train file itself" "$tmp/out" \
  "$SYNCO" linear --ckpt "$ckpt" --train "$tmp/out/train-images-idx3-ubyte" --out "$tmp/out/train-images-idx3-ubyte"
expect_kept "--out $tmp/out/train-images-idx3-ubyte is the --train file itself" "$tmp/out" \
  "$SYNCO" finetune --ckpt "$ckpt" --train "$tmp/out/train-images-idx3-ubyte" --out "$tmp/out/train-images-idx3-ubyte"
expect_kept "--out $data is the --data folder itself" "$data" "$SYNCO" analyze --ckpt "$ckpt" --data "$data" --out "$data"
expect_kept "--out $data/ is the --data folder itself" "$data" "$SYNCO" pretrain --data "$data" "${F8[@]}" --out "$data/"
# ... nor inside a folder of images read (a training image overwritten; a report or run folder read as a class
# next time), nor a run's own file (an export onto last.safetensors lost what --resume reads)
img1=$(ls "$data"/*/*.jpg | head -1)
expect_kept "--out $img1 is inside the --train folder $data, whose files are read as its images" "$data" \
  "$SYNCO" linear --ckpt "$ckpt" --train "$data" --holdout 1 --fast --out "$img1"
expect_kept "--out $data/a/f.npy is inside the --data folder $data" "$data" "$SYNCO" embed --ckpt "$ckpt" --data "$data" --out "$data/a/f.npy"
expect_kept "--out $data/new/report is inside the --data folder $data" "$data" "$SYNCO" analyze --ckpt "$ckpt" --data "$data" --out "$data/new/report"
expect_kept "--out $data/run is inside the --data folder $data" "$data" "$SYNCO" pretrain --data "$data" "${F8[@]}" --out "$data/run"
# ... also through folders not there yet and ".." (the command makes them, then writes into the data)
expect_kept "--out $tmp/new/../data/run is inside the --data folder $data" "$data" "$SYNCO" pretrain --data "$data" "${F8[@]}" --out "$tmp/new/../data/run"
expect_kept "--out $tmp/new/../data is the --data folder itself" "$data" "$SYNCO" analyze --ckpt "$ckpt" --data "$data" --out "$tmp/new/../data"
[ ! -e "$tmp/new" ] || fail "a refused output made its folders"
cp "$ckpt" "$tmp/other.safetensors"
expect_kept "--out $run/./last.safetensors is a file of the run in its folder" "$run" "$SYNCO" export --ckpt "$tmp/other.safetensors" --out "$run/./last.safetensors"
expect_kept "--out $run/config.json is a file of the run in its folder" "$run" "$SYNCO" export --ckpt "$ckpt" --out "$run/config.json"
expect_ok "$SYNCO" export --ckpt "$ckpt" --out "$run/encoder.safetensors" # any other name beside the run: written
rm "$run/encoder.safetensors"
if [ -f "$tmp/out/p.png" ]; then
  expect_kept "--out $run/log.jsonl is the run log file itself" "$run" "$SYNCO" plot "$run" --out "$run/log.jsonl"
fi

# ---- 4. --resume into a folder holding another run ----
w16=$tmp/w16
F16=("${F8[@]}")
F16[4]=16 # --width 16
expect_ok "$SYNCO" pretrain --data "$data" "${F16[@]}" --out "$w16"
expect_kept "$w16 holds another run than $ckpt's (its width 16, not 8)" "$w16" \
  "$SYNCO" pretrain --resume "$ckpt" --out "$w16" --epochs 3 "${machine[@]}"
cp "$ckpt" "$tmp/copy.safetensors" # a copy of a run's own checkpoint resumes into it (e2e/resume)
expect_ok "$SYNCO" pretrain --resume "$tmp/copy.safetensors" --out "$run" --epochs 2 "${machine[@]}"
expect_ok "$SYNCO" pretrain --resume "$tmp/copy.safetensors" --out "$w16" --epochs 2 --force "${machine[@]}"
python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["width"] == 8' "$w16/config.json" \
  || fail "--resume --force did not replace the other run"

# ---- 5. paths too long for the names made from them ----
long=$tmp/L
for c in a b c d; do long=$long/$(printf "$c%.0s" $(seq 240)); done
fit=$long/$(printf 'e%.0s' $(seq $((1000 - ${#long} - 1))))
[ ${#fit} -eq 1000 ] || fail "the test's path is ${#fit} characters"
expect_ok "$SYNCO" pretrain --data "$data" "${F8[@]}" --save-every 1 --out "$fit"
regular "$fit/last.safetensors" "$fit/checkpoint_0001.safetensors" "$fit/config.json" "$fit/log.jsonl"
expect_kept "path too long (1001 characters" "$tmp/L" "$SYNCO" pretrain --data "$data" "${F8[@]}" --out "${fit}x"
[ ! -e "${fit}x" ] || fail "a refused run created its directory"
expect_kept "path too long (1004 characters" "$tmp/L" "$SYNCO" export --ckpt "$ckpt" --out "${fit}.npy"
expect_kept "--out $tmp/L/a.*path too long (1005 characters" "$tmp/L" "$SYNCO" embed --ckpt "$ckpt" --data "$data" --out "${fit}x.npy"

# ---- 6. a file-size limit met while writing a checkpoint ----
snapshot "$run" > "$tmp/before"
rc=0
(ulimit -f 200; exec "$SYNCO" pretrain --resume "$run" --epochs 3 "${machine[@]}") > "$tmp/o" 2> "$tmp/e" || rc=$?
[ "$rc" -eq 1 ] || { cat "$tmp/o" "$tmp/e"; fail "a file-size limit ended pretrain with $rc, not 1"; }
said "$ckpt: cannot write: File too large"
[ "$(grep -c 'File too large' "$tmp/e")" -eq 1 ] || { cat "$tmp/e"; fail "not one line about the file-size limit"; }
[ ! -e "$ckpt.tmp" ] || fail "the partial checkpoint was left"
cmp -s <(grep last.safetensors "$tmp/before") <(snapshot "$run" | grep last.safetensors) || fail "the last checkpoint changed"
echo "run_damage: ok"
