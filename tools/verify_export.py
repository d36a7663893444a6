#!/usr/bin/python3
"""Shows that an encoder exported by `synco export` is a torchvision ResNet: loads the export into torchvision's
ResNet class (tools/synco_resnet.py; CIFAR stem when conv1 is 3x3), computes features of the images synco
embedded, in eval mode with the same evaluation transform, and compares them with `synco embed`'s .npy.

    synco export --ckpt run/last.safetensors --out enc.safetensors [--head]
    synco embed  --ckpt enc.safetensors --data IMAGES --out feats.npy
    synco embed  --ckpt enc.safetensors --data IMAGES --out head.npy --head        # with an export made with --head
    /usr/bin/python3 tools/verify_export.py --export enc.safetensors --data IMAGES --features feats.npy \
        [--head-features head.npy]
    /usr/bin/python3 tools/verify_export.py --detectron2 enc_d2.safetensors --export enc.safetensors
    /usr/bin/python3 tools/verify_export.py --export enc.safetensors --data IMAGES --features feats.npy --recipe README.md
    synco linear --ckpt enc.safetensors --train T --val IMAGES --out cls.safetensors --json     # prints top1
    /usr/bin/python3 tools/verify_export.py --classifier cls.safetensors --data IMAGES --top1 TOP1 [--recipe README.md]

--recipe README.md also runs the README's `synco_model(path)` (the ```python block that defines it: the recipe for
any width) on the export and checks its outputs the same way (features, or with a --head export the head's, then
against --head-features). The block runs as written, so it needs the `safetensors` package (README says how to get
it on Debian 12: a venv with --system-site-packages); without it --recipe stops with exit 2. It also checks that the recipe and tools/synco_resnet.py's synco_model
(the copy the tools import) build the same model from the file: the same modules in the same order, the same
state_dict, and bit-identical outputs, transform included. --classifier checks a `synco linear/finetune --out`
file: torchvision (resnetXX(num_classes=C) at width 64; with --recipe the recipe and tools/synco_resnet.py too)
loads it with strict=True and classifies the ImageFolder --data with the top-1 accuracy synco reported (within
one image); with --features (`synco embed --ckpt CLASSIFIER` of --data) its backbone gives synco's features. The
file's "synco.preprocess" metadata (mean, std, resize) is the transform used throughout.

The network is tools/synco_resnet.py's: torchvision's ResNet class at base width w (torchvision fixes its stage
widths at 64/128/256/512, so the stem and the four stages with w, 2w, 4w, 8w planes are made through torchvision's
own _make_layer, BasicBlock and Bottleneck; forward() is torchvision's); at w = 64 with the ImageNet stem it has
the modules of torchvision.models.resnetXX(), which tools/make_fixtures.py asserts. --classifier at width 64 loads
the file into torchvision.models.resnetXX(num_classes=C) itself as well.

Pass criterion, per element: |synco - torch| <= atol + rtol*|torch| with rtol = 1e-4 and atol = 1e-4 * max|torch|
(features after ReLU and average pooling have exact zeros, so a purely relative bound would be meaningless there).
Exit status 0 when every check passes, 1 on a mismatch, 2 on bad usage or unreadable input.

safetensors is read by a small pure-Python reader (read_safetensors below; the `safetensors` package is not
needed), which also serves tools/safetensors_to_detectron2.py.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # synco_resnet (imported where torch is needed)

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
           "BOOL": np.bool_, "BF16": None}
_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "U16": 2,
          "U32": 4, "U64": 8, "BOOL": 1}


def read_safetensors(path):
    """Returns ({name: numpy array}, {metadata}). BF16 is widened to float32. Raises ValueError on a malformed file."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: shorter than the 8-byte header length" % path)
    n = struct.unpack("<Q", blob[:8])[0]
    if n > len(blob) - 8:
        raise ValueError("%s: header length %d past the end of the file (%d bytes)" % (path, n, len(blob)))
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, e in header.items():
        dt, shape, (b, end) = e["dtype"], e["shape"], e["data_offsets"]
        if dt not in _SIZES:
            raise ValueError("%s: tensor '%s' has unknown dtype %s" % (path, name, dt))
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= b <= end <= len(data)) or end - b != count * _SIZES[dt]:
            raise ValueError("%s: tensor '%s': offsets [%d, %d) do not hold %s %s" % (path, name, b, end, dt, shape))
        raw = data[b:end]
        if dt == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dt]).newbyteorder("<")).astype(_DTYPES[dt])
        out[name] = a.reshape(shape).copy()
    return out, meta


def moco_detectron2_name(k):
    """MoCo's detection/convert-pretrain-to-detectron2.py renaming, verbatim, for a torchvision key."""
    if "layer" not in k:
        k = "stem." + k
    for t in [1, 2, 3, 4]:
        k = k.replace("layer{}".format(t), "res{}".format(t + 1))
    for t in [1, 2, 3]:
        k = k.replace("bn{}".format(t), "conv{}.norm".format(t))
    k = k.replace("downsample.0", "shortcut")
    k = k.replace("downsample.1", "shortcut.norm")
    return k


def norm_stats(image_size):
    """src/cli/common.c synco_cli_norm_stats: CIFAR's mean/std up to 64 pixels, ImageNet's above."""
    if image_size <= 64:
        return (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    return (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def preprocess(meta, size):
    """(mean, std, resize) from the file's "synco.preprocess" metadata, which must agree with synco's transform."""
    if "synco.preprocess" not in meta:
        mean, std = norm_stats(size)
        return mean, std, int(size / 0.875)
    p = json.loads(meta["synco.preprocess"])
    mean, std = norm_stats(p["image_size"])
    if p["image_size"] != size or p["resize"] != int(size / 0.875) or \
            not np.allclose(p["mean"], mean, atol=1e-4) or not np.allclose(p["std"], std, atol=1e-4):
        raise ValueError("synco.preprocess %s disagrees with synco's evaluation transform at %d px (mean %s, std %s)"
                         % (meta["synco.preprocess"], size, mean, std))
    return p["mean"], p["std"], p["resize"]


def load_recipe(readme):
    """The README's synco_model function (its ```python block), run as written (it imports safetensors itself)."""
    import re
    text = open(readme, encoding="utf-8").read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def synco_model(" in b]
    if len(blocks) != 1:
        raise ValueError("%s: %d ```python blocks define synco_model (want 1)" % (readme, len(blocks)))
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        print("%s lacks the safetensors package the README block imports; see README (python3 -m venv "
              "--system-site-packages V, then V/bin/pip install safetensors)" % sys.executable, file=sys.stderr)
        sys.exit(2)
    ns = {}
    exec(compile(blocks[0], readme + ":synco_model", "exec"), ns)
    return ns["synco_model"]


def image_folder_outputs(model, tf, data):
    """model(tf(image)) for every image of the ImageFolder `data`, in synco's order; and the labels."""
    import torch
    import torchvision
    ds = torchvision.datasets.ImageFolder(data, transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=False, num_workers=0)
    out, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            out.append(model(x))
            labels.append(y)
    return torch.cat(out).numpy(), torch.cat(labels).numpy()


def recipe_and_module(readme, path):
    """((model, transform) of the README recipe, (model, transform) of tools/synco_resnet.py's synco_model) for
    the synco file `path`. Raises ValueError unless the two models have the same modules in the same order (type
    and settings) and the same state_dict (names, order, values)."""
    import torch
    import synco_resnet
    model, tf = load_recipe(readme)(path)
    mine, mine_tf = synco_resnet.synco_model(path)
    mods = [[(n, type(m).__name__, m.extra_repr()) for n, m in list(x.named_modules())[1:]] for x in (model, mine)]
    if mods[0] != mods[1]:
        diff = [(a, b) for a, b in zip(*mods) if a != b] or [(mods[0][len(mods[1]):], mods[1][len(mods[0]):])]
        raise ValueError("%s: the README recipe and tools/synco_resnet.py build different models: %d vs %d modules, "
                         "first difference %s" % (path, len(mods[0]), len(mods[1]), diff[0]))
    sa, sb = model.state_dict(), mine.state_dict()
    if list(sa) != list(sb) or any(not torch.equal(sa[k], sb[k]) for k in sa):
        raise ValueError("%s: the README recipe's state_dict differs from tools/synco_resnet.py's" % path)
    print("README recipe: %s from %s's metadata (synco.encoder %s); tools/synco_resnet.py's synco_model builds "
          "the same (%d modules, %d state_dict tensors)" % (type(model).__name__, path,
                                                             read_safetensors(path)[1].get("synco.encoder"),
                                                             len(mods[0]), len(sa)))
    return (model, tf), (mine, mine_tf)


def verify_recipe(args):
    """The README recipe's model and transform give synco embed's features (the head's with a --head export),
    and tools/synco_resnet.py's give the very same outputs."""
    state, _ = read_safetensors(args.export)
    head = any(k.startswith("fc.") for k in state)
    ref = args.head_features if head else args.features
    if not ref:
        raise ValueError("--recipe: %s %s, so give --%s" % (args.export, "has a head" if head else "has no head",
                                                             "head-features" if head else "features"))
    (model, tf), (mine, mine_tf) = recipe_and_module(args.recipe, args.export)
    what = "head outputs" if head else "features"
    feats, _ = image_folder_outputs(model, lambda img: tf(img.convert("RGB")), args.data)
    ok = check("%s (README recipe)" % what, np.load(ref), feats, args.rtol)
    feats_mine, _ = image_folder_outputs(mine, lambda img: mine_tf(img.convert("RGB")), args.data)
    same = np.array_equal(feats, feats_mine)
    print("%s (tools/synco_resnet.py): %s the README recipe's" % (what, "identical to" if same else "DIFFERENT from"))
    return ok and same


def verify_classifier(args):
    """A linear/finetune --out file: strict torchvision load, and synco's top-1 on --data."""
    import torch
    import torchvision
    import synco_resnet
    state, meta = read_safetensors(args.classifier)
    if meta.get("synco.format") != "classifier" or "fc.weight" not in state or "fc.bias" not in state:
        raise ValueError("%s: not a classifier file (synco.format %s)" % (args.classifier, meta.get("synco.format")))
    classes = json.loads(meta["synco.classes"])
    depth, width, cifar_stem, size = synco_resnet.arch_of(state, meta)
    C = state["fc.weight"].shape[0]
    if len(classes) != C:
        raise ValueError("%s: %d class names for %d outputs" % (args.classifier, len(classes), C))
    mean, std, resize = preprocess(meta, size)
    models = []
    if width == 64:  # torchvision's own class, as a user would build it
        m = getattr(torchvision.models, "resnet%d" % depth)(num_classes=C)
        if cifar_stem:
            m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            m.maxpool = torch.nn.Identity()
        m.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
        tf = synco_resnet.eval_transform(mean, std, size, resize)
        models.append(("torchvision.models.resnet%d(num_classes=%d), strict=True" % (depth, C), m.eval(),
                       lambda img, tf=tf: tf(img.convert("RGB"))))
    if args.recipe:
        for what, (m, tf) in zip(("README recipe (strict=True)", "tools/synco_resnet.py synco_model (strict=True)"),
                                 recipe_and_module(args.recipe, args.classifier)):
            models.append((what, m, lambda img, tf=tf: tf(img.convert("RGB"))))
    if not models:
        raise ValueError("width %d: torchvision's own ResNet has no such width; give --recipe README.md" % width)
    ok = True
    for what, m, tf in models:
        logits, labels = image_folder_outputs(m, tf, args.data)
        top1 = 100.0 * float((logits.argmax(1) == labels).mean())
        tol = 100.0 / len(labels) + 1e-9
        good = abs(top1 - args.top1) <= tol
        print("classifier %s (%d classes %s, resnet%d width %d) via %s: top-1 %.2f%% on %d images, synco %.2f%%: %s"
              % (args.classifier, C, classes, depth, width, what, top1, len(labels), args.top1,
                 "ok" if good else "DIFFERENT"))
        ok = ok and good
        if args.features:  # `synco embed --ckpt CLASSIFIER`: the saved backbone (BN statistics included)
            fc, m.fc = m.fc, torch.nn.Identity()
            feats, _ = image_folder_outputs(m, tf, args.data)
            m.fc = fc
            ok = check("backbone features of %s via %s" % (args.classifier, what), np.load(args.features), feats,
                       args.rtol) and ok
    return 0 if ok else 1


def check(name, got, ref, rtol):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        print("%s: shape mismatch: synco %s, torchvision %s" % (name, got.shape, ref.shape))
        return False
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    atol = rtol * scale
    err = np.abs(got - ref)
    bound = atol + rtol * np.abs(ref)
    bad = int((err > bound).sum())
    rel = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
    print("%s: %d x %d, max|ref| %.4g, max abs err %.3g, max err/(atol+rtol|ref|) %.3g, relative Frobenius err %.3g, "
          "%d element(s) out of tolerance (rtol %g, atol %.3g)"
          % (name, got.shape[0], got.shape[1] if got.ndim > 1 else 1, scale, float(err.max()) if err.size else 0.0,
             float((err / bound).max()) if err.size and atol > 0 else 0.0, rel, bad, rtol, atol))
    return bad == 0


def torch_features(export, data, image_size, head):
    """Features of every image of the ImageFolder `data` through the export loaded into torchvision (eval mode)."""
    import torch
    import torchvision
    import torchvision.transforms as T
    import synco_resnet

    state, meta = read_safetensors(export)
    if "conv1.weight" not in state:
        raise ValueError("%s: no 'conv1.weight': not an encoder export under torchvision names" % export)
    depth, width, cifar_stem, size = synco_resnet.arch_of(state, meta)
    size = image_size or size or (32 if cifar_stem else 224)
    if head and not any(k.startswith("fc.") for k in state):
        raise ValueError("%s has no projection head (export it with --head)" % export)
    kind, dim = synco_resnet.head_of(state) if head else (None, 0)
    model = synco_resnet.synco_resnet(depth, width, cifar_stem, kind, dim)
    tensors = {k: torch.from_numpy(v) for k, v in state.items() if head or not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    print("loaded %s into torchvision resnet%d (width %d, %s stem%s): %d tensors, missing %s, unexpected %s"
          % (export, depth, width, "CIFAR" if cifar_stem else "ImageNet", ", with head" if head else "",
             len(tensors), missing or "none", unexpected or "none"))
    model.eval()

    mean, std, resize = preprocess(meta, size)
    tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    ds = torchvision.datasets.ImageFolder(data)
    first = ds[0][0]
    if first.size != (size, size):
        # synco resizes the shorter side to size/0.875 and centre-crops; its resampling is close to, not
        # bit-identical with, PIL's, so the tolerance may not hold for such images.
        print("note: images are %dx%d, not %d: Resize(%d) + CenterCrop(%d) applied (resampling may differ)"
              % (first.size[0], first.size[1], size, resize, size))
        tf = T.Compose([T.Resize(resize), T.CenterCrop(size), tf])
    ds.transform = tf
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=False, num_workers=0)
    feats = []
    with torch.no_grad():
        for x, _ in loader:
            feats.append(model(x))
    return torch.cat(feats).numpy(), not missing and not unexpected


def verify_features(args):
    ok = True
    for what, path, head in (("backbone", args.features, False), ("head", args.head_features, True)):
        if not path:
            continue
        ref, loaded = torch_features(args.export, args.data, args.image_size, head)
        ok = check("features (%s)" % what, np.load(path), ref, args.rtol) and loaded and ok
    if args.recipe:
        ok = verify_recipe(args) and ok
    return 0 if ok else 1


def verify_detectron2(args):
    """The detectron2 export must be MoCo's renaming of the torchvision export, tensor for tensor."""
    d2, d2meta = read_safetensors(args.detectron2)
    tv, _ = read_safetensors(args.export)
    want = {moco_detectron2_name(k): v for k, v in tv.items() if not k.startswith("fc.")}
    ok = True
    if set(d2) != set(want):
        print("detectron2 keys differ from MoCo's renaming: extra %s, missing %s"
              % (sorted(set(d2) - set(want))[:8], sorted(set(want) - set(d2))[:8]))
        ok = False
    for k in sorted(set(d2) & set(want)):
        if d2[k].shape != want[k].shape or not np.array_equal(d2[k], want[k]):
            print("detectron2 tensor %s differs from the torchvision export's" % k)
            ok = False
    print("detectron2 export %s: %d tensors, names %s MoCo's convert-pretrain-to-detectron2 renaming; metadata %s"
          % (args.detectron2, len(d2), "match" if ok else "DO NOT match", d2meta))
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export", help="encoder from `synco export` (torchvision names)")
    p.add_argument("--data", help="ImageFolder that `synco embed` encoded")
    p.add_argument("--features", help="`synco embed` output (.npy) for --data")
    p.add_argument("--head-features", help="`synco embed --head` output (.npy) for --data (export with --head)")
    p.add_argument("--image-size", type=int, default=0, help="input side (default: the export's)")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--detectron2", help="also check a `synco export --format detectron2` file against --export")
    p.add_argument("--recipe", help="README.md: also check its synco_model() recipe (any width)")
    p.add_argument("--classifier", help="a `synco linear/finetune --out` file to check on --data against --top1")
    p.add_argument("--top1", type=float, help="with --classifier: the top-1 accuracy synco reported on --data")
    args = p.parse_args()
    feats = args.features or args.head_features
    if args.classifier:
        if not args.data or args.top1 is None or args.export or args.head_features or args.detectron2:
            p.error("--classifier goes with --data and --top1 (and optionally --recipe, --features) only")
        try:
            rc = verify_classifier(args)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            print("verify_export: %s" % e, file=sys.stderr)
            return 2
        print("verify_export: %s" % ("ok" if rc == 0 else "MISMATCH"))
        return rc
    if not args.export:
        p.error("give --export (or --classifier)")
    if not args.detectron2 and not (args.data and feats):
        p.error("give --data with --features and/or --head-features, or --detectron2")
    if bool(args.data) != bool(feats):
        p.error("--data goes with --features / --head-features")
    try:
        rc = 0
        if args.data:
            rc = max(rc, verify_features(args))
        if args.detectron2:
            rc = max(rc, verify_detectron2(args))
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        print("verify_export: %s" % e, file=sys.stderr)
        return 2
    print("verify_export: %s" % ("ok" if rc == 0 else "MISMATCH"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
