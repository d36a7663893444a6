#!/usr/bin/env bash
# End to end: `cmake --install` of the build that made $SYNCO into a temporary prefix; the installed layout
# (program, static and shared library, header, pkg-config file, man page, the docs, examples and the PyTorch-side
# tools); examples/ built with pkg-config against the installed library (shared and static); the example encodes
# two bundled images with an encoder exported by the installed program, and its features equal `synco embed`'s.
# pkg-config's --cflags is the include path alone (no cairo/glib leaking in); a tiny CMake project finds the
# package (find_package(synco), target synco::synco) when cmake is there; the installed program finds its bundled demo images from any folder, and
# says plainly that --data is needed where they are absent. Skipped (77) without pkg-config, make or a C compiler.
set -euo pipefail
. "$(dirname "$0")/common.inc"
command -v pkg-config > /dev/null || skip "pkg-config not installed"
command -v make > /dev/null || skip "make not installed"
command -v cc > /dev/null || skip "no C compiler (cc)"
build=$(cd "$(dirname "$SYNCO")" && pwd)
[ -f "$build/cmake_install.cmake" ] || skip "$SYNCO is not in a CMake build directory"
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" > "$tmp/install.txt" 2>&1 || { cat "$tmp/install.txt"; fail "cmake --install"; }
for f in bin/synco lib/libsynco.a lib/libsynco.so include/synco.h lib/pkgconfig/synco.pc share/man/man1/synco.1 \
         lib/cmake/synco/synco-config.cmake lib/cmake/synco/synco-config-version.cmake \
         share/synco/cifar10-small/train/airplane share/synco/cifar10-small/val/truck \
         share/synco/tools/verify_export.py share/synco/tools/synco_resnet.py share/synco/tools/bench_torch.py \
         share/doc/synco/README.md share/doc/synco/logs.md share/doc/synco/examples/encode.c; do
  [ -e "$prefix/$f" ] || fail "install lacks $f"
done
bin=$prefix/bin/synco
"$bin" --version > /dev/null || fail "installed synco does not run"
# Outputs are captured before grep reads them: `cmd | grep -q` under pipefail fails at random when grep exits
# first and the writer dies of SIGPIPE.
libdeps=$(ldd "$prefix/lib/libsynco.so")
if grep -q "not found" <<<"$libdeps"; then echo "$libdeps"; fail "libsynco.so has unresolved dependencies"; fi
if command -v man > /dev/null; then
  manpage=$(MANWIDTH=80 man -l "$prefix/share/man/man1/synco.1" 2> "$tmp/man.err") || true
  grep -q "synco pretrain" <<<"$manpage" || { cat "$tmp/man.err"; fail "man page does not render"; }
fi

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
version=$("$bin" --version)
[[ $version =~ [0-9]+\.[0-9]+\.[0-9]+ ]] || fail "synco --version prints no version: $version"
[ "$(pkg-config --modversion synco)" = "${BASH_REMATCH[0]}" ] || fail "pkg-config version differs from synco --version"
# Only synco's own include path: the header includes nothing of the private dependencies.
cflags=$(pkg-config --cflags synco)
read -ra cflag_words <<<"$cflags"
[ ${#cflag_words[@]} -eq 1 ] && [ "$(cd "${cflag_words[0]#-I}" && pwd)" = "$(cd "$prefix/include" && pwd)" ] \
  || fail "pkg-config --cflags synco is '$cflags', not just -I$prefix/include"
static_libs=$(pkg-config --static --libs synco)
grep -q -- "-lturbojpeg" <<<"$static_libs" || fail "pkg-config --static --libs lacks the private dependencies: $static_libs"
# The public header stands alone and is warning-free.
printf '#include <synco.h>\nint main(void) { return synco_version() == 0; }\n' > "$tmp/h.c"
cc -std=c11 -Wall -Wextra -Werror -pedantic $(pkg-config --cflags synco) -c "$tmp/h.c" -o "$tmp/h.o" || fail "synco.h does not compile alone"
cp -r examples "$tmp/examples"
# A sanitizer build's library needs the sanitizer runtimes linked into the example too.
san=()
grep -q "SYNCO_SANITIZE:BOOL=ON" "$build/CMakeCache.txt" 2>/dev/null && san=(LDFLAGS="-fsanitize=address,undefined")
make -C "$tmp/examples" "${san[@]}" > "$tmp/make.txt" 2>&1 || { cat "$tmp/make.txt"; fail "examples do not build against the installed library"; }
deps=$(ldd "$tmp/examples/encode")
grep -q "$prefix/.*libsynco.so" <<<"$deps" || { echo "$deps"; fail "example not linked to the installed libsynco.so"; }
deps=$(ldd "$tmp/examples/encode-static")
grep -q libsynco <<<"$deps" && fail "static example links libsynco.so"

# find_package(synco) in a CMake project against the prefix: synco::synco links and runs.
if command -v cmake > /dev/null; then
  mkdir -p "$tmp/cm"
  printf '#include <synco.h>\n#include <stdio.h>\nint main(void) { printf("%%s\\n", synco_version()); return 0; }\n' > "$tmp/cm/main.c"
  cat > "$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(use_synco C)
find_package(synco 0.1 REQUIRED)
add_executable(use_synco main.c)
target_link_libraries(use_synco PRIVATE synco::synco)
CM
  cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$prefix" "${san[@]/#LDFLAGS=/-DCMAKE_EXE_LINKER_FLAGS=}" \
    > "$tmp/cm.txt" 2>&1 && cmake --build "$tmp/cm/build" >> "$tmp/cm.txt" 2>&1 || { cat "$tmp/cm.txt"; fail "find_package(synco) project"; }
  cm_version=$("$tmp/cm/build/use_synco") || fail "the find_package(synco) program does not run"
  [ "$cm_version" = "${BASH_REMATCH[0]}" ] || fail "find_package(synco) program prints '$cm_version'"
fi

# The installed program finds its demo images from a folder without ./data (one batch too big: it stops right
# after opening them, naming the folder), and without them says that --data is needed.
mkdir -p "$tmp/elsewhere"
rc=0; (cd "$tmp/elsewhere" && "$bin" pretrain -b 8192 --moco-k 8192 --width 8 --threads 1) > "$tmp/demo.txt" 2>&1 || rc=$?
grep -q "$prefix/share/synco/cifar10-small/train" "$tmp/demo.txt" || { cat "$tmp/demo.txt"; fail "installed synco does not find its bundled data (rc $rc)"; }
mkdir -p "$tmp/bare/bin"
cp "$bin" "$tmp/bare/bin/synco"
rc=0; (cd "$tmp/elsewhere" && "$tmp/bare/bin/synco" pretrain) > "$tmp/demo.txt" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q "pass --data" "$tmp/demo.txt" || { cat "$tmp/demo.txt"; fail "without bundled data: rc $rc, no plain --data message"; }
[ ! -e "$tmp/elsewhere/runs" ] || fail "a refused demo run created runs/"

# An encoder from the installed program: a 2-step run on 32 bundled images.
imgs=$tmp/imgs
for c in airplane bird; do
  mkdir -p "$imgs/$c"
  for f in $(first_files "data/cifar10-small/val/$c" 16); do ln -s "$PWD/$f" "$imgs/$c/"; done
done
"$bin" pretrain --data "$imgs" --arch resnet18 --width 8 --cifar-stem --image-size 32 --epochs 1 -b 16 --bn-splits 2 \
  --moco-k 32 --n-hard 16 --n1 4 --n2 4 --n3 4 --n4 4 --n5 4 --n6 4 --warmup-epochs 0 --threads 2 --workers 1 \
  --out "$tmp/run" > "$tmp/pre.txt" 2>&1 || { cat "$tmp/pre.txt"; fail "pretrain"; }
"$bin" export --ckpt "$tmp/run/last.safetensors" --out "$tmp/enc.safetensors" > /dev/null || fail "export"

# Two images, in ImageFolder order (airplane, bird), through the example and through synco embed.
one=$tmp/one
a=$(basename "$(first_files data/cifar10-small/val/airplane 1)")
b=$(basename "$(first_files data/cifar10-small/val/bird 1)")
mkdir -p "$one/airplane" "$one/bird"
cp "data/cifar10-small/val/airplane/$a" "$one/airplane/"
cp "data/cifar10-small/val/bird/$b" "$one/bird/"
"$bin" embed --ckpt "$tmp/enc.safetensors" --data "$one" --out "$tmp/ref.npy" --threads 2 > /dev/null 2>&1 || fail "embed"
for exe in encode encode-static; do
  "$tmp/examples/$exe" "$tmp/enc.safetensors" "$one/airplane/$a" "$one/bird/$b" > "$tmp/$exe.txt" \
    || fail "$exe exited non-zero"
  python3 - "$tmp/$exe.txt" "$tmp/ref.npy" <<'PY' || fail "$exe: features differ from synco embed's"
import ast, struct, sys
lines = [l.split() for l in open(sys.argv[1]) if not l.startswith('#')]
with open(sys.argv[2], 'rb') as f:
    assert f.read(6) == b'\x93NUMPY'
    major = f.read(2)[0]
    hlen = struct.unpack('<H' if major == 1 else '<I', f.read(2 if major == 1 else 4))[0]
    h = ast.literal_eval(f.read(hlen).decode('latin1'))
    assert h['descr'] == '<f4' and not h['fortran_order'], h
    n, d = h['shape']
    ref = struct.unpack('<%df' % (n * d), f.read(4 * n * d))
assert len(lines) == n == 2, (len(lines), n)
worst = 0.0
scale = max(abs(v) for v in ref)
for i, l in enumerate(lines):
    got = [float(v) for v in l[1:]]
    assert len(got) == d, (len(got), d)
    for j in range(d):
        r = ref[i * d + j]
        worst = max(worst, abs(got[j] - r) / (1e-5 * scale + 1e-5 * abs(r)))
print('%s: %d images x %d features, max error / tolerance %.3g' % (sys.argv[1].rsplit('/', 1)[-1], n, d, worst))
sys.exit(0 if worst <= 1 else 1)
PY
done
# Errors come back through synco_last_error with the file named.
if "$tmp/examples/encode" "$tmp/enc.safetensors" "$tmp/missing.jpg" 2> "$tmp/err.txt" > /dev/null; then fail "missing image accepted"; fi
grep -q "missing.jpg" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "error does not name the file"; }
head -c 100 "$one/airplane/$a" > "$tmp/trunc.jpg"
if "$tmp/examples/encode" "$tmp/enc.safetensors" "$tmp/trunc.jpg" 2> "$tmp/err.txt" > /dev/null; then fail "truncated image accepted"; fi
grep -q "trunc.jpg" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "error does not name the truncated file"; }
echo "install: ok"
