#!/usr/bin/python3
"""Writes the encoder parity fixtures under tests/fixtures/ (run with Debian's /usr/bin/python3: torch 1.13,
torchvision 0.14).

torchvision's ResNet has no base-width option, so the network is tools/synco_resnet.py's: torchvision's ResNet
class with the stages made at w, 2w, 4w, 8w planes by torchvision's own _make_layer, BasicBlock and Bottleneck
(the module names, and hence the state_dict keys, are torchvision's). At width 64 the script asserts that the
keys, shapes and outputs equal torchvision.models.resnet18/34/50 given the same weights. Then, for a small
width, it runs one train-mode step in float64 (the reference; the C side computes in fp32): out =
head(backbone(x)), loss = sum(normalize(out) * G), backward, and stores the input, G, every weight and BN buffer
before the step (torchvision names), the head output, the loss, every parameter gradient ("grad.<name>") and the
updated BN running statistics ("updated.<name>").

Split-BN follows the synco contract (src/tensor/backend.h): the batch is cut into `groups` CONTIGUOUS equal
parts, each normalized with its own statistics, and the running statistics become the mean over the groups of
each group's update. (MoCo's SplitBatchNorm groups images n with equal n % groups instead.)

    /usr/bin/python3 tools/make_fixtures.py            # writes tests/fixtures/resnet*_*.safetensors
    /usr/bin/python3 tools/make_fixtures.py --out DIR  # writes them to DIR instead (to compare with the committed)
    /usr/bin/python3 tools/make_fixtures.py --counts   # prints the torchvision parameter counts test_encoder.c uses
"""
import argparse
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")
sys.path.insert(0, HERE)
from synco_resnet import synco_resnet  # noqa: E402


class SplitBN(nn.BatchNorm2d):
    """BatchNorm2d whose train mode normalizes `splits` contiguous parts of the batch separately."""

    splits = 1

    def forward(self, x):
        if not self.training or self.splits == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        s = self.splits
        # [N, C, H, W] -> [1, s*C, N/s*H... ]: move the split index into the channel dim, contiguous parts.
        xs = x.view(s, n // s, c, h, w).transpose(0, 1).reshape(n // s, s * c, h, w)
        rm = self.running_mean.repeat(s)
        rv = self.running_var.repeat(s)
        y = F.batch_norm(xs, rm, rv, self.weight.repeat(s), self.bias.repeat(s), True, self.momentum, self.eps)
        with torch.no_grad():
            self.running_mean.copy_(rm.view(s, c).mean(0))
            self.running_var.copy_(rv.view(s, c).mean(0))
        return y.view(n // s, s, c, h, w).transpose(0, 1).reshape(n, c, h, w)


def check_against_torchvision():
    """At width 64 the parameterized network IS torchvision's: same keys, shapes and outputs."""
    for depth, ctor in ((18, torchvision.models.resnet18), (34, torchvision.models.resnet34),
                        (50, torchvision.models.resnet50)):
        torch.manual_seed(0)
        tv = ctor().eval()
        mine = synco_resnet(depth, head="linear", dim=1000).eval()
        a, b = tv.state_dict(), mine.state_dict()
        assert list(a.keys()) == list(b.keys()), depth
        assert all(a[k].shape == b[k].shape for k in a), depth
        assert [n for n, _ in tv.named_parameters()] == [n for n, _ in mine.named_parameters()]
        assert [n for n, _ in tv.named_buffers()] == [n for n, _ in mine.named_buffers()]
        mine.load_state_dict(a)
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(tv(x), mine(x)), depth
    # The CIFAR stem as the MoCo CIFAR demo makes it from torchvision's resnet18.
    torch.manual_seed(0)
    tv = torchvision.models.resnet18()
    tv.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    tv.maxpool = nn.Identity()
    mine = synco_resnet(18, cifar_stem=True, head="linear", dim=1000)
    assert [(k, v.shape) for k, v in tv.state_dict().items()] == [(k, v.shape) for k, v in mine.state_dict().items()]


def param_counts():
    """Parameter / buffer counts (num_batches_tracked excluded) that tests/unit/test_encoder.c hard-codes."""
    rows = []
    for depth, ctor in ((18, torchvision.models.resnet18), (34, torchvision.models.resnet34),
                        (50, torchvision.models.resnet50)):
        m = ctor()
        m.fc = nn.Identity()
        p = sum(t.numel() for t in m.parameters())
        b = sum(t.numel() for n, t in m.named_buffers() if not n.endswith("num_batches_tracked"))
        np_ = len(list(m.parameters()))
        nb = len([n for n, _ in m.named_buffers() if not n.endswith("num_batches_tracked")])
        full = sum(t.numel() for t in ctor().parameters())
        mlp = synco_resnet(depth, head="mlp", dim=128)
        pm = sum(t.numel() for t in mlp.parameters())
        rows.append((depth, p, np_, b, nb, full, pm))
        print(f"resnet{depth}: backbone params {p} ({np_} tensors), buffers {b} ({nb} tensors), "
              f"with fc(1000) {full}, with MoCo mlp head dim 128 {pm}")
    return rows


# ---- a tiny safetensors writer (json header + raw little-endian data) --------------------------------------
def write_safetensors(path, tensors, meta):
    header = {"__metadata__": meta}
    blobs = []
    off = 0
    for name, t in tensors:
        t = t.detach().to(torch.float32).contiguous()
        raw = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def run_step(depth, width, cifar_stem, mlp, dim, bn_splits, batch, size, dtype):
    """One train step from the seed-0 model; returns (model before, x, G, model after, out, loss)."""
    torch.manual_seed(0)

    def norm(c):
        bn = SplitBN(c)
        bn.splits = bn_splits
        return bn

    model = synco_resnet(depth, width, cifar_stem, "mlp" if mlp else "linear", dim, norm_layer=norm)
    # Non-trivial BN affine parameters and running statistics, so that a swapped gamma/beta or mean/var shows.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(batch, 3, size, size)
    G = torch.randn(batch, dim)
    before = [(k, v.clone()) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    model = model.to(dtype).train()
    out = model(x.to(dtype))
    loss = (F.normalize(out, dim=1) * G.to(dtype)).sum()
    loss.backward()
    return before, x, G, model, out, loss


def rel_dev(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def make_fixture(out_dir, name, depth, width, cifar_stem, mlp, dim, bn_splits, batch, size):
    args = (depth, width, cifar_stem, mlp, dim, bn_splits, batch, size)
    # float64 reference: the C side runs fp32, so the stored refs carry (almost) no error of their own.
    before, x, G, model, out, loss = run_step(*args, torch.float64)
    # PyTorch's own fp32 run measures how well conditioned this tiny network is (a near-constant BN channel
    # makes fp32 gradients noisy at the 1e-2 level); the C test scales its tolerance by it, and a badly
    # conditioned fixture is refused here.
    _, _, _, m32, out32, _ = run_step(*args, torch.float32)
    params = dict(model.named_parameters())
    p32 = dict(m32.named_parameters())
    pnames = [n for n, _ in model.named_parameters()]
    bnames = [n for n, _ in model.named_buffers() if not n.endswith("num_batches_tracked")]
    sd, sd32 = model.state_dict(), m32.state_dict()
    dev_out = rel_dev(out32, out)
    dev_grad = max(rel_dev(p32[n].grad, params[n].grad) for n in pnames)
    dev_stats = max(rel_dev(sd32[n], sd[n]) for n in bnames)
    assert dev_grad < 1e-3 and dev_out < 1e-4, (name, dev_out, dev_grad)

    tensors = [("x", x), ("G", G)]
    tensors += before
    tensors += [("out", out), ("loss", loss.reshape(1))]
    tensors += [("grad." + n, params[n].grad) for n in pnames]
    tensors += [("updated." + n, sd[n]) for n in bnames]
    meta = {"depth": str(depth), "width": str(width), "cifar_stem": str(int(cifar_stem)), "mlp": str(int(mlp)),
            "dim": str(dim), "bn_splits": str(bn_splits), "batch": str(batch), "image_size": str(size),
            "params": ",".join(pnames), "buffers": ",".join(bnames),
            "torch_fp32_dev_out": "%.3e" % dev_out, "torch_fp32_dev_grad": "%.3e" % dev_grad,
            "torch_fp32_dev_stats": "%.3e" % dev_stats,
            "generator": "tools/make_fixtures.py (torch %s, torchvision %s)" % (torch.__version__,
                                                                               torchvision.__version__)}
    path = os.path.join(out_dir, name)
    write_safetensors(path, tensors, meta)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"{name}: {nparams} params, loss {loss.item():.6f}, {os.path.getsize(path)} bytes; torch fp32 vs fp64 "
          f"(max err / max ref): out {dev_out:.1e}, grads {dev_grad:.1e}, running stats {dev_stats:.1e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", action="store_true")
    ap.add_argument("--out", default=FIXTURES, help="folder to write the fixtures to (default tests/fixtures)")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    check_against_torchvision()
    if args.counts:
        param_counts()
        return
    os.makedirs(args.out, exist_ok=True)
    # Width 8 / 4 keep each fixture near 1 MB (weights + gradients are stored in full fp32). Split-BN is
    # exercised on ResNet-18: with the torchvision stem at 64x64, ResNet-50's layer4 is 2x2, and groups of
    # 2 images leave 8 values per BN channel, too few for fp32 gradients to be meaningful (dev ~1e-1).
    make_fixture(args.out, "resnet18_w8_cifar_split2.safetensors", 18, 8, True, True, 32, 2, 4, 32)
    make_fixture(args.out, "resnet50_w4.safetensors", 50, 4, False, True, 32, 1, 4, 64)


if __name__ == "__main__":
    sys.exit(main())
