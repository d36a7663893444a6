#!/usr/bin/python3
"""Writes tests/fixtures/data/aug_fixtures.safetensors: torchvision 0.14 / PIL 9 reference outputs for each
deterministic augmentation op with fixed parameters (PIL bilinear crop+resize, eval resize + center crop,
ColorJitter's functional tensor ops, RandomGrayscale as PIL's convert("L"), PIL GaussianBlur, and one whole
aug-plus view with fixed parameters), plus decoded pixels of a JPEG and PNG variants (PIL's convert("RGB"))
and the distribution of RandomResizedCrop's sampled boxes. Run with Debian's /usr/bin/python3."""
import json, os, struct, sys
import numpy as np
import torch
from PIL import Image, ImageFilter
import torchvision.transforms as T
import torchvision.transforms.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "data")
tensors = {}

def put(name, arr):
    arr = np.ascontiguousarray(arr)
    assert arr.dtype in (np.uint8, np.float32, np.int32), arr.dtype
    tensors[name] = arr

def write_safetensors(path):
    header, blobs, off = {}, [], 0
    for k, a in tensors.items():
        b = a.tobytes()
        header[k] = {"dtype": {np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[a.dtype],
                     "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        pad = (-len(b)) % 8  # keep every tensor 8-byte aligned
        blobs.append(b + bytes(pad)); off += len(b) + pad
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)

rng = np.random.RandomState(0)
# a smooth synthetic image with texture: low-frequency colour fields plus noise
H, W = 47, 61
yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
src = np.stack([128 + 100 * np.sin(xx / 7.0 + yy / 11.0), 128 + 90 * np.cos(yy / 5.0 - xx / 13.0),
                128 + 80 * np.sin((xx + yy) / 9.0)], -1) + rng.normal(0, 20, (H, W, 3))
src = np.clip(src, 0, 255).astype(np.uint8)
put("src", src)
pil = Image.fromarray(src)

# PIL bilinear crop + resize, as RandomResizedCrop applies it: (x, y, w, h, size)
crops = np.array([[0, 0, 61, 47, 32], [5, 7, 20, 15, 32], [10, 3, 40, 40, 24], [3, 2, 50, 30, 17], [0, 0, 32, 32, 32]],
                 np.int32)
put("crops", crops)
for k, (x, y, w, h, s) in enumerate(crops):
    out = F.resized_crop(pil, int(y), int(x), int(h), int(w), [int(s), int(s)], T.InterpolationMode.BILINEAR)
    put("crop_%d" % k, np.asarray(out))
# evaluation transform: Resize(int(32/0.875)) + CenterCrop(32)
ev = T.Compose([T.Resize(int(32 / 0.875)), T.CenterCrop(32)])(pil)
put("eval32", np.asarray(ev))

base = F.resized_crop(pil, 0, 0, 47, 61, [32, 32], T.InterpolationMode.BILINEAR)
base_t = F.to_tensor(base)  # [3, 32, 32] in [0, 1]
ops = [("brightness", F.adjust_brightness, [0.6, 1.37]), ("contrast", F.adjust_contrast, [0.62, 1.4]),
       ("saturation", F.adjust_saturation, [0.65, 1.33]), ("hue", F.adjust_hue, [-0.1, 0.043, 0.09, 0.4, -0.37])]
for name, fn, factors in ops:
    put(name + "_factors", np.array(factors, np.float32))
    for k, f in enumerate(factors):
        put("%s_%d" % (name, k), fn(base_t, f).numpy().astype(np.float32))
put("gray", np.asarray(base.convert("L").convert("RGB")))
sigmas = [0.1, 0.55, 1.2, 2.0]
put("blur_sigmas", np.array(sigmas, np.float32))
for k, s in enumerate(sigmas):
    put("blur_%d" % k, np.asarray(base.filter(ImageFilter.GaussianBlur(radius=s))))

# one aug-plus view with fixed parameters (no blur): crop, jitter in a given order, grayscale, flip, normalize
mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
cx, cy, cw, ch, S = 7, 4, 44, 35, 32
order = [2, 0, 3, 1]
fac = [1.21, 0.77, 1.3, -0.06]
t = F.to_tensor(F.resized_crop(pil, cy, cx, ch, cw, [S, S], T.InterpolationMode.BILINEAR))
fns = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
for o in order:
    t = fns[o](t, fac[o])
g = 0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]
t = torch.stack([g, g, g])
t = F.hflip(t)
t = F.normalize(t, mean, std)
put("pipe_params", np.array([cx, cy, cw, ch, S] + order, np.int32))
put("pipe_factors", np.array(fac, np.float32))
put("pipe_out", t.numpy().astype(np.float32))

# RandomResizedCrop box distribution (torchvision's own sampler)
torch.manual_seed(0)
stats = []
for (w, h, lo) in [(32, 32, 0.2), (61, 47, 0.2), (32, 32, 0.08)]:
    img = torch.zeros(3, h, w)
    a, r = [], []
    for _ in range(100000):
        i, j, ch_, cw_ = T.RandomResizedCrop.get_params(img, (lo, 1.0), (3 / 4, 4 / 3))
        a.append(cw_ * ch_ / (w * h)); r.append(cw_ / ch_)
    a, r = np.array(a), np.array(r)
    stats.append([w, h, lo, a.mean(), a.std(), r.mean(), r.std()])
put("crop_stats", np.array(stats, np.float32))

# decoding: a CIFAR JPEG and PNG variants, as PIL's convert("RGB") sees them
jpg = os.path.join(OUT, "img.jpg")
put("jpg_rgb", np.asarray(Image.open(jpg).convert("RGB")))
Image.fromarray(src).save(os.path.join(OUT, "rgb.png"))
Image.fromarray(src).convert("L").save(os.path.join(OUT, "gray.png"))
Image.fromarray(src).convert("P", palette=Image.ADAPTIVE, colors=64).save(os.path.join(OUT, "palette.png"))
rgba = np.concatenate([src, rng.randint(0, 256, (H, W, 1)).astype(np.uint8)], -1)
Image.fromarray(rgba, "RGBA").save(os.path.join(OUT, "rgba.png"))
Image.fromarray(src).convert("L").save(os.path.join(OUT, "gray.jpg"), quality=90)
for name in ["rgb", "gray", "palette", "rgba"]:
    put("png_" + name, np.asarray(Image.open(os.path.join(OUT, name + ".png")).convert("RGB")))
put("jpg_gray", np.asarray(Image.open(os.path.join(OUT, "gray.jpg")).convert("RGB")))

write_safetensors(os.path.join(OUT, "aug_fixtures.safetensors"))
print("wrote", len(tensors), "tensors")

# ---- tests/fixtures/bad: a corpus of broken inputs (each must fail with the file named) ----
BAD = os.path.join(ROOT, "tests", "fixtures", "bad")
os.makedirs(os.path.join(BAD, "cifar"), exist_ok=True)
jpg_bytes = open(jpg, "rb").read()
open(os.path.join(BAD, "truncated.jpg"), "wb").write(jpg_bytes[: len(jpg_bytes) * 6 // 10])
png_bytes = bytearray(open(os.path.join(OUT, "rgb.png"), "rb").read())
i = png_bytes.index(b"IDAT") + 40
png_bytes[i:i + 16] = bytes(16)  # zeroed compressed data: CRC mismatch
open(os.path.join(BAD, "corrupt.png"), "wb").write(bytes(png_bytes))
open(os.path.join(BAD, "empty.jpg"), "wb").close()
open(os.path.join(BAD, "text.jpg"), "w").write("this is a text file, not a JPEG\n")
open(os.path.join(BAD, "cifar", "data_batch_1.bin"), "wb").write(bytes(3073 * 2 + 5))
open(os.path.join(BAD, "bad-images-idx3-ubyte"), "wb").write(struct.pack(">IIII", 0x0803 + 0x100, 1, 2, 2) + bytes(4))
print("wrote the bad-input corpus")
