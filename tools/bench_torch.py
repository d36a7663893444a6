#!/usr/bin/python3
"""PyTorch comparison program for synco's benchmarks (`synco bench fwdbwd|step`).

It does the same work as the C benchmarks, in PyTorch, so `bench/` can print both and their ratio
(README.md, "Performance"). Run it with Debian's /usr/bin/python3 (python3-torch 1.13,
python3-torchvision 0.14); the `python3` on PATH has no torch.

  fwdbwd  forward + backward of one encoder (ResNet backbone + MoCo-v2 MLP head) on random images.
          FLOPs counted as 3 x forward MACs x 2 per image.
  step    one full MoCo-v2 pretraining step with the authors' semantics (MoCo's builder and CIFAR demo,
          SynCo's builder for the synthetic negatives), on random images and a random unit-row queue.
          FLOPs counted as 4 x forward MACs x 2 per image (3x for the query side, 1x for the keys).

Choices that make it the same work as synco's `bench step`:
  - BatchNorm: SplitBatchNorm with 8 splits (MoCo's CIFAR demo) in BOTH encoders, plus the demo's
    single-device batch shuffle/unshuffle of the key images (cheap; keeps the demo's semantics).
    `fwdbwd` uses plain BatchNorm2d (bn_splits 1) unless --bn-splits says otherwise.
  - Order inside a step as in the authors' builder: q forward; no_grad { EMA of key params (m), shuffle,
    k forward, unshuffle }; logits [l_pos | l_neg | synthetic] / T; enqueue; cross-entropy; zero_grad;
    backward; SGD step (torch.optim.SGD, momentum 0.9, weight decay on all parameters).
  - Synthetic negatives (--method synco / mochi) as SynCo's builder: top-n_hard of l_neg (unsorted),
    per-type draws with replacement from those, each synthetic vector L2-normalized and detached.
    Types 5 and 6 in closed form (n + delta*q, n + eta*sign(q)) by default; --authors-loop runs the
    authors' per-column autograd loop instead. Each type is governed by its own count (the authors'
    swapped type-4/5 flags are not copied; harmless with the default counts anyway). The initial
    queue has unit rows (the authors normalize over the wrong axis).
  - bf16: torch.autocast(device, dtype=torch.bfloat16) around the two encoder forwards; normalize,
    logits, loss, SGD and EMA stay fp32.
  - --device cuda[:N]: the same program on a GPU (every tensor and draw on the device, a
    torch.cuda.synchronize() ending each timed iteration); --channels-last keeps the images and the
    encoders in channels_last (the usual fast GPU setting, with --precision bf16).
Timing: images/s = batch / median of the timed iterations (after the warm-up ones). Peak RSS is
ru_maxrss of this process (includes the Python + torch import, ~200-300 MB).
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synco_resnet import ARCH, synco_resnet  # noqa: E402

DEV = torch.device("cpu")  # --device
MEMFMT = torch.contiguous_format  # --channels-last


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize(DEV)


ARCHS = {"resnet%d" % depth: depth for depth in ARCH}

# Per-method default counts (n1..n6); explicit --n1..--n6 override them.
METHOD_COUNTS = {
    "moco": (0, 0, 0, 0, 0, 0),
    "mochi": (256, 0, 256, 0, 0, 0),
    "synco": (256, 256, 256, 64, 64, 64),
}


class SplitBatchNorm(nn.BatchNorm2d):
    """MoCo's CIFAR-demo Split-BN: in training, statistics over num_splits groups of the batch."""

    def __init__(self, num_features, num_splits, **kw):
        super().__init__(num_features, **kw)
        self.num_splits = num_splits

    def forward(self, input):
        N, C, H, W = input.shape
        if self.training or not self.track_running_stats:
            running_mean_split = self.running_mean.repeat(self.num_splits)
            running_var_split = self.running_var.repeat(self.num_splits)
            outcome = F.batch_norm(
                input.reshape(-1, C * self.num_splits, H, W), running_mean_split, running_var_split,
                self.weight.repeat(self.num_splits), self.bias.repeat(self.num_splits),
                True, self.momentum, self.eps).reshape(N, C, H, W)
            self.running_mean.data.copy_(running_mean_split.view(self.num_splits, C).mean(dim=0))
            self.running_var.data.copy_(running_var_split.view(self.num_splits, C).mean(dim=0))
            return outcome
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                            False, self.momentum, self.eps)


def forward_macs_per_image(model, image_size):
    """Exact multiply-accumulates of one image's forward pass, counted by hooking every Conv2d and
    Linear (BN, ReLU, pooling, adds are not counted)."""
    total = [0]

    def conv_hook(m, inp, out):
        kh, kw = m.kernel_size
        total[0] += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m, inp, out):
        total[0] += m.in_features * m.out_features * (out.numel() // out.shape[0] // m.out_features)

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total[0]


class MoCoStep(nn.Module):
    """MoCo-v2 with SynCo's synthetic negatives, following the authors' builders (MoCo's builder,
    MoCo's CIFAR demo for Split-BN and the single-device shuffle, SynCo's builder for the negatives)."""

    def __init__(self, make_encoder, dim, K, m, T, n_hard, counts, sigma, delta, eta, authors_loop,
                 shuffle, precision):
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.n_hard = n_hard
        self.n1, self.n2, self.n3, self.n4, self.n5, self.n6 = counts
        self.hard_alpha, self.hard_beta, self.hard_gamma = 0.5, 1.5, 1.0
        self.sigma, self.delta, self.eta = sigma, delta, eta
        self.authors_loop = authors_loop
        self.shuffle = shuffle
        self.precision = precision
        if any(counts) and not max(counts) <= n_hard <= K:
            sys.exit("bench_torch.py: need n_i <= n_hard <= K (counts %s, n_hard %d, K %d)"
                     % (list(counts), n_hard, K))
        self.encoder_q = make_encoder()
        self.encoder_k = make_encoder()
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data.copy_(param_q.data)
            param_k.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(K, dim), dim=1))  # unit rows
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data = param_k.data * self.m + param_q.data * (1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        batch_size = keys.shape[0]
        ptr = int(self.queue_ptr)
        assert self.K % batch_size == 0
        self.queue[ptr:ptr + batch_size] = keys
        self.queue_ptr[0] = (ptr + batch_size) % self.K

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(DEV.type, dtype=torch.bfloat16)
        return torch.autocast(DEV.type, enabled=False)

    # --- synthetic negatives (SynCo's builder) ---
    def _draw(self, idxs_hard, n):
        idxs = torch.randint(0, self.n_hard, size=(idxs_hard.shape[0], n), device=DEV)
        return self.queue[torch.gather(idxs_hard, dim=1, index=idxs)].clone().detach()

    def _type1(self, q, idxs_hard):  # interpolated
        alpha = torch.rand(size=(q.shape[0], self.n1, 1), device=DEV) * self.hard_alpha
        h = alpha * q.clone().detach()[:, None] + (1 - alpha) * self._draw(idxs_hard, self.n1)
        return F.normalize(h, dim=-1).detach()

    def _type2(self, q, idxs_hard):  # extrapolated
        beta = 1 + torch.rand(size=(q.shape[0], self.n2, 1), device=DEV) * (self.hard_beta - 1)
        qd = q.clone().detach()[:, None]
        h = qd + beta * (self._draw(idxs_hard, self.n2) - qd)
        return F.normalize(h, dim=-1).detach()

    def _type3(self, q, idxs_hard):  # mixup
        idxs1, idxs2 = torch.randint(0, self.n_hard, size=(2, q.shape[0], self.n3), device=DEV)
        gamma = torch.rand(size=(q.shape[0], self.n3, 1), device=DEV) * self.hard_gamma
        h1 = self.queue[torch.gather(idxs_hard, dim=1, index=idxs1)].clone().detach()
        h2 = self.queue[torch.gather(idxs_hard, dim=1, index=idxs2)].clone().detach()
        return F.normalize(gamma * h1 + (1 - gamma) * h2, dim=-1).detach()

    def _type4(self, q, idxs_hard):  # noise-injected
        h = self._draw(idxs_hard, self.n4)
        return F.normalize(h + torch.randn_like(h) * self.sigma, dim=-1).detach()

    def _type5(self, q, idxs_hard):  # perturbed: n + delta * grad_n(q.n) = n + delta * q
        h = self._draw(idxs_hard, self.n5)
        if not self.authors_loop:
            return F.normalize(h + self.delta * q.detach()[:, None], dim=-1)
        out = []
        for i in range(h.size(1)):
            neighbor = h[:, i, :].detach().clone().requires_grad_(True)
            similarity = torch.einsum("nc,nc->n", [q, neighbor])
            grad = torch.autograd.grad(similarity.sum(), neighbor, create_graph=False)[0]
            out.append((neighbor + self.delta * grad).detach())
        return F.normalize(torch.stack(out, dim=1), dim=-1).detach()

    def _type6(self, q, idxs_hard):  # adversarial: n + eta * sign(grad_n(q.n)) = n + eta * sign(q)
        h = self._draw(idxs_hard, self.n6)
        if not self.authors_loop:
            return F.normalize(h + self.eta * torch.sign(q.detach())[:, None], dim=-1)
        out = []
        for i in range(h.size(1)):
            neighbor = h[:, i, :].detach().clone().requires_grad_(True)
            similarity = torch.einsum("nc,nc->n", [q, neighbor])
            grad = torch.autograd.grad(similarity.sum(), neighbor, create_graph=False)[0]
            out.append((neighbor + self.eta * grad.sign()).detach())
        return F.normalize(torch.stack(out, dim=1), dim=-1).detach()

    def forward(self, im_q, im_k):
        with self._autocast():
            q = self.encoder_q(im_q)
        q = F.normalize(q.float(), dim=1)

        with torch.no_grad():
            self._momentum_update_key_encoder()
            if self.shuffle:  # MoCo CIFAR demo, _batch_shuffle_single_gpu
                idx_shuffle = torch.randperm(im_k.shape[0], device=DEV)
                idx_unshuffle = torch.argsort(idx_shuffle)
                im_k = im_k[idx_shuffle]
            with self._autocast():
                k = self.encoder_k(im_k)
            k = F.normalize(k.float(), dim=1)
            if self.shuffle:
                k = k[idx_unshuffle]

        l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", [q, self.queue.T.clone().detach()])
        if any((self.n1, self.n2, self.n3, self.n4, self.n5, self.n6)):
            _, idxs_hard = torch.topk(l_neg.clone().detach(), k=self.n_hard, dim=-1, sorted=False)
            parts = [l_neg]
            for n, fn in ((self.n1, self._type1), (self.n2, self._type2), (self.n3, self._type3),
                          (self.n4, self._type4), (self.n5, self._type5), (self.n6, self._type6)):
                if n > 0:
                    parts.append(torch.einsum("nc,nkc->nk", [q, fn(q, idxs_hard)]))
            l_neg = torch.cat(parts, dim=1)
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=DEV)
        self._dequeue_and_enqueue(k)
        return logits, labels


def cpu_info():
    info = {"cpu_model": platform.processor() or "", "avx2": False, "avx512f": False, "avx512_bf16": False}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not info["cpu_model"]:
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    info["avx2"] = "avx2" in flags
                    info["avx512f"] = "avx512f" in flags
                    info["avx512_bf16"] = "avx512_bf16" in flags
                    break
    except OSError:
        pass
    info["nproc"] = os.cpu_count()
    return info


def gemm_gflops(precision, n=2048, reps=3):
    """The GEMM ceiling of this run: n^3 matmul through torch, best of reps after one warm-up."""
    dt = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n).to(DEV, dt)
    b = torch.randn(n, n).to(DEV, dt)
    torch.mm(a, b)
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def time_iters(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def make_encoder_factory(args, bn_splits):
    """torchvision's ResNet (tools/synco_resnet.py: same parameter names and init) at the base width, with the
    optional CIFAR stem and the MoCo-v2 MLP head (or one Linear) in place of fc; Split-BN with bn_splits > 1."""
    norm = (lambda c: SplitBatchNorm(c, bn_splits)) if bn_splits > 1 else None

    def make():
        return synco_resnet(ARCHS[args.arch], args.width, args.cifar_stem, "linear" if args.no_mlp else "mlp",
                            args.dim, norm_layer=norm)
    return make


def run_fwdbwd(args):
    bn_splits = args.bn_splits if args.bn_splits is not None else 1
    torch.manual_seed(args.seed)
    model = make_encoder_factory(args, bn_splits)()
    model.train()
    macs = forward_macs_per_image(model, args.image_size)
    model.to(DEV, memory_format=MEMFMT)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size).to(DEV, memory_format=MEMFMT)
    gout = torch.randn(args.batch, args.dim).to(DEV)
    autocast = (torch.autocast(DEV.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else torch.autocast(DEV.type, enabled=False))

    def one():
        for p in model.parameters():
            p.grad = None
        with autocast:
            out = model(x)
        out.float().backward(gout)

    times = time_iters(one, args.warmup, args.iters)
    return {"bn_splits": bn_splits, "forward_macs_per_image": macs,
            "flop_per_image": 3 * macs * 2, "flop_rule": "3 x forward MACs x 2"}, times, one


def run_step(args):
    bn_splits = args.bn_splits if args.bn_splits is not None else 8
    if args.batch % bn_splits:
        sys.exit("bench_torch.py: --batch must be a multiple of --bn-splits")
    counts = list(METHOD_COUNTS[args.method])
    for i in range(6):
        v = getattr(args, "n%d" % (i + 1))
        if v is not None:
            counts[i] = v
    torch.manual_seed(args.seed)
    model = MoCoStep(make_encoder_factory(args, bn_splits), args.dim, args.moco_k, args.moco_m, args.moco_t,
                     args.n_hard, tuple(counts), args.sigma, args.delta, args.eta, args.authors_loop,
                     not args.no_shuffle, args.precision)
    model.train()
    macs = forward_macs_per_image(model.encoder_q, args.image_size)
    model.to(DEV, memory_format=MEMFMT)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.encoder_q.parameters(), args.lr, momentum=0.9, weight_decay=args.wd)
    im_q = torch.randn(args.batch, 3, args.image_size, args.image_size).to(DEV, memory_format=MEMFMT)
    im_k = torch.randn(args.batch, 3, args.image_size, args.image_size).to(DEV, memory_format=MEMFMT)
    last = {}

    def one():
        logits, labels = model(im_q, im_k)
        loss = criterion(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        last["loss"] = float(loss.detach())
        last["n_logits"] = logits.shape[1]

    times = time_iters(one, args.warmup, args.iters)
    return {"method": args.method, "counts": counts, "n_hard": args.n_hard, "moco_k": args.moco_k,
            "moco_m": args.moco_m, "moco_t": args.moco_t, "lr": args.lr, "wd": args.wd,
            "bn_splits": bn_splits, "bn": "SplitBatchNorm(%d) both encoders" % bn_splits,
            "key_shuffle": not args.no_shuffle,
            "types56": "authors autograd loop" if args.authors_loop else "closed form",
            "logits_per_query": last.get("n_logits"), "last_loss": last.get("loss"),
            "forward_macs_per_image": macs, "flop_per_image": 4 * macs * 2,
            "flop_rule": "4 x forward MACs x 2"}, times, one


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["fwdbwd", "step"])
    ap.add_argument("--arch", default="resnet18", choices=sorted(ARCHS))
    ap.add_argument("--cifar-stem", action="store_true", help="3x3/s1 stem conv, no max-pool")
    ap.add_argument("--width", type=int, default=64, help="base width (64 = torchvision)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dim", type=int, default=128, help="output dimension of the head")
    ap.add_argument("--no-mlp", action="store_true", help="single Linear head instead of the MoCo-v2 MLP")
    ap.add_argument("--bn-splits", type=int, default=None, help="Split-BN groups (default: fwdbwd 1, step 8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--channels-last", action="store_true", help="images and encoders in channels_last")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--out", help="also append the JSON object as one line to this file")
    ap.add_argument("--no-gemm", action="store_true", help="skip the 2048^3 matmul ceiling measurement")
    ap.add_argument("--profile", action="store_true", help="profile one extra iteration, table to stderr")
    g = ap.add_argument_group("step")
    g.add_argument("--method", choices=sorted(METHOD_COUNTS), default="synco")
    g.add_argument("--moco-k", type=int, default=4096)
    g.add_argument("--moco-m", type=float, default=0.99)
    g.add_argument("--moco-t", type=float, default=0.1)
    g.add_argument("--lr", type=float, default=0.06)
    g.add_argument("--wd", type=float, default=5e-4)
    g.add_argument("--n-hard", type=int, default=1024)
    for i in range(1, 7):
        g.add_argument("--n%d" % i, type=int, default=None)
    g.add_argument("--sigma", type=float, default=0.01)
    g.add_argument("--delta", type=float, default=0.01)
    g.add_argument("--eta", type=float, default=0.01)
    g.add_argument("--authors-loop", action="store_true",
                   help="types 5 and 6 through the authors' per-column autograd loop")
    g.add_argument("--no-shuffle", action="store_true", help="skip the key-batch shuffle of the CIFAR demo")
    args = ap.parse_args()
    if args.iters < 1 or args.warmup < 0:
        sys.exit("bench_torch.py: --iters >= 1, --warmup >= 0")

    global DEV, MEMFMT
    DEV = torch.device(args.device)
    if DEV.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_torch.py: --device %s, but torch sees no GPU" % args.device)
    MEMFMT = torch.channels_last if args.channels_last else torch.contiguous_format
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t_start = time.time()
    if args.mode == "fwdbwd":
        extra, times, one = run_fwdbwd(args)
    else:
        extra, times, one = run_step(args)
    load_after = os.getloadavg()
    prof_info = {}
    if args.profile:
        # one more (warm) iteration under the profiler, kept out of the timings
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            one()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)
        # Convolution kernels as PyTorch sees them (their self time includes oneDNN's own reorders).
        conv_ops = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
                    "aten::_slow_conv2d_backward", "aten::thnn_conv2d")
        ka = prof.key_averages()
        prof_info = {"profile_conv_ms": round(sum(e.self_cpu_time_total for e in ka if e.key in conv_ops) / 1e3, 1),
                     "profile_total_ms": round(sum(e.self_cpu_time_total for e in ka) / 1e3, 1)}
    gemm = None if args.no_gemm else gemm_gflops(args.precision)

    med = statistics.median(times)
    ips = args.batch / med
    gflops = extra["flop_per_image"] * ips / 1e9
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    res = {
        "program": "pytorch", "mode": args.mode, "images_per_s": round(ips, 3),
        "gflops_per_s": round(gflops, 3), "peak_rss_mb": round(peak_rss_mb, 1),
        "threads": args.threads, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "batch": args.batch, "arch": args.arch, "width": args.width, "cifar_stem": args.cifar_stem,
        "image_size": args.image_size, "mlp_head": not args.no_mlp, "dim": args.dim,
        "precision": args.precision, "warmup": args.warmup, "iters": args.iters,
        "step_s_median": round(med, 4), "step_s": [round(t, 4) for t in times],
        "gemm_gflops_per_s": None if gemm is None else round(gemm, 1),
        "gemm_share": None if gemm is None else round(gflops / gemm, 3),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in load_after],
        "unix_time": int(t_start),
        "device": str(DEV), "channels_last": args.channels_last,
    }
    if DEV.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(DEV)
    res.update(extra)
    res.update(prof_info)
    res.update(cpu_info())
    res["torch_cpu_capability"] = torch.__config__.show().split("CPU capability usage:")[-1].split("\n")[0].strip()
    line = json.dumps(res)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "a") as f:
            f.write(line + "\n")
    if args.json:
        print(line)
    else:
        what = args.mode if args.mode == "fwdbwd" else "step --method %s" % args.method
        print("pytorch %s %s %s batch %d, %d threads, %s: %.2f images/s (median of %d, %.3f s/iter), "
              "%.1f GFLOP/s%s, peak RSS %.0f MB, load %.2f->%.2f"
              % (what, args.arch, "cifar-stem" if args.cifar_stem else "imagenet-stem", args.batch,
                 args.threads, args.precision, ips, args.iters, med, gflops,
                 "" if gemm is None else " (%.0f%% of %.0f GFLOP/s GEMM)" % (100 * gflops / gemm, gemm),
                 peak_rss_mb, load_before[0], load_after[0]))


if __name__ == "__main__":
    main()
