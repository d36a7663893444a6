#!/usr/bin/env bash
# Inputs that are not what their names say, refused at once with the file named (issue 22):
# - a FIFO or a device where a file is read: an ImageFolder's x.jpg, STL-10's train_y.bin, a CIFAR or idx file
#   (also as a link to /dev/zero), --ckpt of knn/export/analyze/embed, a log.jsonl given to plot; and where an
#   output goes (embed's and linear's --out), where it was replaced by a regular file. Opening a FIFO
#   once waited forever for a writer; every command here runs under `timeout 20`, so a regression fails the test
#   instead of hanging the suite.
# - image headers judged at open, every file's (no sampling): a JPEG header patched to 8192x8192 over 32x32 data,
#   PNGs 2^31-1 wide and 60000x60000, a JPEG 60000x60000; and a run that such data cannot start keeps the run
#   that --force would have replaced.
# - a 6 GB sparse file given as a checkpoint: its header is read first, so it is refused without reading 6 GB
#   (under a 3 GB address-space limit, where reading it whole cannot even be tried).
# - memory: an export of a checkpoint whose metadata says 4096 px builds no activations for that size (it runs under
#   a 1.5 GB address-space limit, and the export keeps the image size); SYNCO_MEMORY_LIMIT_MB=-5, abc, 12x, 0 or
#   1e3 is refused by name (it was ignored).
# Needs python3 (to craft the images).
set -euo pipefail
. "$(dirname "$0")/common.inc"
command -v python3 > /dev/null || skip "python3 not installed"
command -v mkfifo > /dev/null || skip "mkfifo not available"

expect_refused() { # expect_refused PATTERN CMD...: exits non-zero (not by the timeout) with PATTERN on stderr
  local pat=$1 rc=0; shift
  timeout 20 "$@" > "$tmp/o" 2> "$tmp/e" < /dev/null || rc=$?
  [ "$rc" -ne 124 ] || fail "hung (killed after 20 s): $*"
  [ "$rc" -ne 0 ] || { cat "$tmp/e"; fail "succeeded: $*"; }
  local err
  err=$(cat "$tmp/e")
  [[ "$err" == *"$pat"* ]] || { echo "$err"; fail "message lacks '$pat': $*"; }
}

model=(--random-init --cifar-stem --width 8 --threads 1 --batch 16)
mkdir -p "$tmp/if/a" "$tmp/if/b"
for c in a b; do cp $(first_files data/cifar10-small/train/airplane 4) "$tmp/if/$c/"; done

# ---- FIFOs and devices ----
mkfifo "$tmp/if/a/x.jpg"
expect_refused "x.jpg: is a FIFO, not a regular file" "$SYNCO" knn "${model[@]}" --train "$tmp/if" --holdout 1
rm "$tmp/if/a/x.jpg"

mkdir -p "$tmp/stl"
head -c $((2 * 3 * 96 * 96)) /dev/zero > "$tmp/stl/train_X.bin"
mkfifo "$tmp/stl/train_y.bin"
expect_refused "train_y.bin: is a FIFO, not a regular file" "$SYNCO" knn "${model[@]}" --train "$tmp/stl" --holdout 1

mkdir -p "$tmp/cifar_fifo" "$tmp/cifar_zero" "$tmp/idx_fifo" "$tmp/idx_zero"
mkfifo "$tmp/cifar_fifo/data_batch_1.bin" "$tmp/idx_fifo/train-images-idx3-ubyte"
ln -s /dev/zero "$tmp/cifar_zero/data_batch_1.bin"
ln -s /dev/zero "$tmp/idx_zero/train-images-idx3-ubyte"
expect_refused "data_batch_1.bin: is a FIFO, not a regular file" "$SYNCO" knn "${model[@]}" --train "$tmp/cifar_fifo" --holdout 1
expect_refused "data_batch_1.bin: is a character device, not a regular file" "$SYNCO" knn "${model[@]}" --train "$tmp/cifar_zero" --holdout 1
expect_refused "data_batch_1.bin: is a FIFO" "$SYNCO" knn "${model[@]}" --train "$tmp/cifar_fifo/data_batch_1.bin" --holdout 1
expect_refused "train-images-idx3-ubyte: is a FIFO" "$SYNCO" knn "${model[@]}" --train "$tmp/idx_fifo" --holdout 1
expect_refused "train-images-idx3-ubyte: is a character device" "$SYNCO" knn "${model[@]}" --train "$tmp/idx_zero" --holdout 1
expect_refused "/dev/zero: is a character device" "$SYNCO" knn "${model[@]}" --train /dev/zero --holdout 1

mkfifo "$tmp/ck.safetensors"
expect_refused "ck.safetensors: is a FIFO, not a safetensors file" "$SYNCO" knn --ckpt "$tmp/ck.safetensors" --train "$tmp/if" --holdout 1
expect_refused "ck.safetensors: is a FIFO, not a safetensors file" "$SYNCO" export --ckpt "$tmp/ck.safetensors" --out "$tmp/e.safetensors"
expect_refused "ck.safetensors: is a FIFO, not a safetensors file" "$SYNCO" embed --ckpt "$tmp/ck.safetensors" --data "$tmp/if" --out "$tmp/f.npy"
expect_refused "ck.safetensors: is a FIFO, not a safetensors file" "$SYNCO" analyze --ckpt "$tmp/ck.safetensors" --data "$tmp/if" --out "$tmp/an"
mkfifo "$tmp/log.jsonl"
expect_refused "log.jsonl: is a FIFO, not a regular file" "$SYNCO" plot "$tmp/log.jsonl" --out "$tmp/p.png"
# ... and where an output is written: refused, the FIFO or device left as it was (unlinking one, as root with
# --out /dev/null, removed the device)
mkfifo "$tmp/out.npy" "$tmp/out.safetensors"
expect_refused "out.npy: is a FIFO; synco writes its outputs as regular files" "$SYNCO" embed "${model[@]}" --data "$tmp/if" --out "$tmp/out.npy"
expect_refused "out.safetensors: is a FIFO; synco writes its outputs" "$SYNCO" linear "${model[@]}" --train "$tmp/if" --holdout 1 --fast --out "$tmp/out.safetensors"
[ -p "$tmp/out.npy" ] && [ -p "$tmp/out.safetensors" ] || fail "an output FIFO was replaced"
ln -s "$tmp/out.npy" "$tmp/link.npy" # a link to one (as /dev/stdout is to a device): refused, the link kept
expect_refused "link.npy: is a link to a FIFO; synco writes its outputs" "$SYNCO" embed "${model[@]}" --data "$tmp/if" --out "$tmp/link.npy"
[ -L "$tmp/link.npy" ] || fail "a link to a FIFO at an output's name was replaced"
if mknod "$tmp/null" c 1 3 2> /dev/null; then # root (or CAP_MKNOD): a copy of /dev/null
  expect_refused "null: is a character device; synco writes its outputs" "$SYNCO" embed "${model[@]}" --data "$tmp/if" --out "$tmp/null"
  [ -c "$tmp/null" ] || fail "an output device was replaced"
fi

# ---- image headers, every file's, at open ----
python3 - "$tmp/bad" data/cifar10-small/train/airplane <<'PY'
import glob, os, struct, sys, zlib
out, src = sys.argv[1], sys.argv[2]
os.makedirs(out)
jpg = open(sorted(glob.glob(src + '/*.jpg'))[0], 'rb').read()
def patch_jpeg(w, h):  # the frame header's size, the data left as it was (32x32)
    b = bytearray(jpg); i = 2
    while True:
        m, n = b[i + 1], (b[i + 2] << 8) | b[i + 3]
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            struct.pack_into('>HH', b, i + 5, h, w)
            return bytes(b)
        i += 2 + n
def png(w, h):
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    rows = zlib.compress(b''.join(b'\0' + b'\x80' * 12 for _ in range(4)))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
            chunk(b'IDAT', rows) + chunk(b'IEND', b''))
for name, data in [('j8192.jpg', patch_jpeg(8192, 8192)), ('j60000.jpg', patch_jpeg(60000, 60000)),
                   ('pwide.png', png(2**31 - 1, 1)), ('p60000.png', png(60000, 60000))]:
    open(os.path.join(out, name), 'wb').write(data)
PY
set_with() { # an ImageFolder of 200 good images and the bad one: a sample of headers would likely miss it
  rm -rf "$tmp/hd"
  mkdir -p "$tmp/hd/a" "$tmp/hd/b"
  for c in a b; do cp $(first_files data/cifar10-small/train/bird 100) "$tmp/hd/$c/"; done
  cp "$tmp/bad/$1" "$tmp/hd/a/$1"
}
for f in j8192.jpg j60000.jpg pwide.png p60000.png; do
  set_with $f
  case $f in
    j8192.jpg) pat="$f: header says 8192x8192, more than its" ;;
    j60000.jpg) pat="$f: unsupported image size 60000x60000" ;;
    pwide.png) pat="$f: unsupported image size 2147483647x1" ;;
    p60000.png) pat="$f: unsupported image size 60000x60000" ;;
  esac
  expect_refused "$pat" "$SYNCO" knn "${model[@]}" --train "$tmp/hd" --holdout 1
done
# ... and before --force has removed the run that the new one would replace
F8=(--arch resnet18 --cifar-stem --width 8 -b 8 --moco-k 64 --n-hard 32 --n1 8 --n2 8 --n3 8 --n4 4 --n5 4 --n6 4
    --threads 1 --epochs 1 --image-size 32 --bn-splits 2 --workers 1)
set_with j8192.jpg
mkdir -p "$tmp/run"
echo '{"epoch": 1}' > "$tmp/run/log.jsonl"
echo '{"kept": true}' > "$tmp/run/config.json"
expect_refused "j8192.jpg: header says 8192x8192" "$SYNCO" pretrain "${F8[@]}" --data "$tmp/hd" --out "$tmp/run" --force
[ -f "$tmp/run/log.jsonl" ] && [ -f "$tmp/run/config.json" ] || fail "a pretrain that could not start removed the earlier run"

# ---- a huge file that is not a checkpoint: refused from its first bytes ----
if truncate -s 6G "$tmp/sparse.safetensors" 2> /dev/null; then
  # ASan's shadow memory needs terabytes of address space: a sanitized build runs without the limit.
  if [ "${SYNCO_SANITIZED:-0}" = 1 ]; then limit=unlimited; else limit=3000000; fi
  (ulimit -v "$limit"; expect_refused "sparse.safetensors: header is not a JSON object" "$SYNCO" knn --ckpt "$tmp/sparse.safetensors" --train "$tmp/if" --holdout 1)
  rm -f "$tmp/sparse.safetensors"
fi
# ---- an export needs the weights, not a forward pass: a checkpoint of 4096 px is written in megabytes ----
# (an encoder built for the checkpoint's image size took 11 GB of activations to write 2 MB)
python3 - tests/fixtures/resnet18_w8_cifar_split2.safetensors "$tmp/px4096.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
h['__metadata__'] = {'synco.encoder': json.dumps({'depth': 18, 'width': 8, 'cifar_stem': 1, 'head': 1, 'mlp': 1,
                                                  'dim': 32, 'image_size': 4096})}
hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8 + n:])
PY
if [ "${SYNCO_SANITIZED:-0}" = 1 ]; then limit=unlimited; else limit=1500000; fi
(ulimit -v "$limit"; timeout 60 "$SYNCO" export --ckpt "$tmp/px4096.safetensors" --out "$tmp/x4096.safetensors" \
  > "$tmp/o" 2> "$tmp/e") || { cat "$tmp/e"; fail "export of a 4096 px checkpoint under a 1.5 GB address-space limit"; }
meta=$(python3 - "$tmp/x4096.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; m = json.loads(b[8:8 + n])['__metadata__']
print(json.loads(m['synco.encoder'])['image_size'], json.loads(m['synco.preprocess'])['image_size'])
PY
)
[ "$meta" = "4096 4096" ] || fail "the export does not keep the checkpoint's image size: $meta"

# ---- a memory cap that cannot be read is refused, by every command, before anything runs ----
for v in -5 abc 12x 0 1e3; do
  SYNCO_MEMORY_LIMIT_MB=$v expect_refused "SYNCO_MEMORY_LIMIT_MB=$v is not a whole number of megabytes" \
    "$SYNCO" pretrain --data "$tmp/if" --out "$tmp/memcap" "${F8[@]}"
  [ ! -e "$tmp/memcap" ] || fail "SYNCO_MEMORY_LIMIT_MB=$v: pretrain wrote its run directory"
  SYNCO_MEMORY_LIMIT_MB=$v expect_refused "SYNCO_MEMORY_LIMIT_MB=$v is not" "$SYNCO" knn "${model[@]}" --train "$tmp/if" --holdout 1
done
echo "special_inputs: ok"
