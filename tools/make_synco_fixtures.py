#!/usr/bin/python3
"""Writes the SynCo loss and SGD parity fixtures (tests/fixtures/synco_negatives.safetensors,
tests/fixtures/synco_sgd.safetensors) with PyTorch, the way the authors' builder (giakoumoglou/synco,
synco/builder.py) computes the synthetic negatives: hard set = torch.topk of q·Qᵀ (sorted, so position p is the
p-th largest), per-type draws of positions in that set, every synthetic built from detached tensors and
L2-normalized (F.normalize), its logit q·s appended after the queue logits in type order 1..6, all logits / T,
cross-entropy with label 0. Types 5 and 6 use docs/method.md's closed forms (s = n + δ·q, s = n + η·sign(q)).
Every random draw is made here and written out, so the C test feeds the same draws to
synco_negatives_logits(). Run with Debian's /usr/bin/python3 (torch 1.13):
    /usr/bin/python3 tools/make_synco_fixtures.py [out_dir]
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

B, DIM, K, N_HARD, T = 8, 16, 64, 16, 0.2
COUNTS = [8, 8, 8, 4, 4, 4]


def write_safetensors(path, tensors):
    """Minimal safetensors writer: sorted names, contiguous data, header padded to 8 bytes."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dtype = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def make_data(gen):
    """q, k, queue with a clear gap between consecutive sorted queue logits, so the hard-set order cannot
    depend on rounding differences between GEMM implementations."""
    while True:
        q = F.normalize(torch.randn(B, DIM, generator=gen), dim=1)
        k = F.normalize(q + 0.3 * torch.randn(B, DIM, generator=gen), dim=1)
        queue = F.normalize(torch.randn(K, DIM, generator=gen), dim=1)
        srt = torch.sort(q @ queue.T, dim=1, descending=True).values[:, : N_HARD + 1]
        if (srt[:, :-1] - srt[:, 1:]).min() > 1e-5:
            return q, k, queue


def make_draws(gen, counts, sigma):
    n1, n2, n3, n4, n5, n6 = counts
    d = {}
    d["pos1"] = torch.randint(0, N_HARD, (B, n1), generator=gen, dtype=torch.int32)
    d["alpha"] = torch.rand(B, n1, generator=gen) * 0.5
    d["pos2"] = torch.randint(0, N_HARD, (B, n2), generator=gen, dtype=torch.int32)
    d["beta"] = 1 + torch.rand(B, n2, generator=gen) * 0.5
    d["pos3"] = torch.randint(0, N_HARD, (B, n3, 2), generator=gen, dtype=torch.int32)
    d["gamma"] = torch.rand(B, n3, generator=gen)
    d["pos4"] = torch.randint(0, N_HARD, (B, n4), generator=gen, dtype=torch.int32)
    d["noise"] = torch.randn(B, n4, DIM, generator=gen) * sigma
    d["pos5"] = torch.randint(0, N_HARD, (B, n5), generator=gen, dtype=torch.int32)
    d["pos6"] = torch.randint(0, N_HARD, (B, n6), generator=gen, dtype=torch.int32)
    return d


def subset(draws, counts):
    """The draws of the types switched on, cut to their counts (types off get zero-sized arrays)."""
    n1, n2, n3, n4, n5, n6 = counts
    return {"pos1": draws["pos1"][:, :n1], "alpha": draws["alpha"][:, :n1],
            "pos2": draws["pos2"][:, :n2], "beta": draws["beta"][:, :n2],
            "pos3": draws["pos3"][:, :n3], "gamma": draws["gamma"][:, :n3],
            "pos4": draws["pos4"][:, :n4], "noise": draws["noise"][:, :n4],
            "pos5": draws["pos5"][:, :n5], "pos6": draws["pos6"][:, :n6]}


def synco_loss(q_in, k, queue, counts, draws, delta, eta):
    q = q_in.clone().requires_grad_(True)
    l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
    l_neg = torch.einsum("nc,ck->nk", [q, queue.T.clone().detach()])
    idxs_hard = torch.topk(l_neg.clone().detach(), k=N_HARD, dim=-1, sorted=True).indices
    qd = q.clone().detach()[:, None]

    def rows(pos):
        return queue[torch.gather(idxs_hard, 1, pos.long())].clone().detach()

    syn = []
    if counts[0]:
        a = draws["alpha"][..., None]
        syn.append(a * qd + (1 - a) * rows(draws["pos1"]))
    if counts[1]:
        b = draws["beta"][..., None]
        syn.append(qd + b * (rows(draws["pos2"]) - qd))
    if counts[2]:
        g = draws["gamma"][..., None]
        syn.append(g * rows(draws["pos3"][..., 0]) + (1 - g) * rows(draws["pos3"][..., 1]))
    if counts[3]:
        syn.append(rows(draws["pos4"]) + draws["noise"])
    if counts[4]:
        syn.append(rows(draws["pos5"]) + delta * qd)
    if counts[5]:
        syn.append(rows(draws["pos6"]) + eta * torch.sign(qd))
    parts = [l_pos, l_neg]
    syn_logits = torch.zeros(B, 0)
    if syn:
        s = F.normalize(torch.cat(syn, dim=1), dim=-1).detach()
        syn_raw = torch.einsum("nc,nkc->nk", [q, s])
        parts.append(syn_raw)
        syn_logits = syn_raw.detach() / T
    logits = torch.cat(parts, dim=1) / T
    loss = F.cross_entropy(logits, torch.zeros(B, dtype=torch.long))
    loss.backward()
    acc = (logits.argmax(dim=1) == 0).float().mean()
    return {"hard": idxs_hard.to(torch.int32), "syn_logits": syn_logits, "logits": logits.detach(),
            "loss": loss.detach().reshape(1), "acc": acc.reshape(1), "dq": q.grad.detach()}


def negatives_fixture(path):
    gen = torch.Generator().manual_seed(20241003)
    q, k, queue = make_data(gen)
    small = make_draws(gen, COUNTS, 0.01)
    big = make_draws(gen, COUNTS, 0.1)
    cases = [("all", COUNTS, small, 0.01, 0.01, 0.01)]
    for t in range(6):
        c = [0] * 6
        c[t] = COUNTS[t]
        cases.append((f"type{t + 1}", c, small, 0.01, 0.01, 0.01))
    cases.append(("none", [0] * 6, small, 0.01, 0.01, 0.01))
    cases.append(("all_big", COUNTS, big, 0.1, 0.1, 0.1))
    out = {"q": q, "k": k, "queue": queue, "n_hard": torch.tensor([N_HARD], dtype=torch.int32),
           "T": torch.tensor([T]), "n_cases": torch.tensor([len(cases)], dtype=torch.int32)}
    for ci, (name, counts, draws, sigma, delta, eta) in enumerate(cases):
        d = subset(draws, counts)
        res = synco_loss(q, k, queue, counts, d, delta, eta)
        p = f"c{ci}."
        out[p + "counts"] = torch.tensor(counts, dtype=torch.int32)
        out[p + "params"] = torch.tensor([sigma, delta, eta])
        for key, v in d.items():
            if v.numel():
                out[p + key] = v
        for key, v in res.items():
            if v.numel():
                out[p + key] = v
        print(f"case {ci} {name:8s} counts {counts} loss {res['loss'].item():.6f} acc {res['acc'].item():.3f}")
    write_safetensors(path, out)


def sgd_fixture(path):
    gen = torch.Generator().manual_seed(7)
    n, lrs, mom, wd = 37, [0.1, 0.05, 0.02], 0.9, 1e-4
    p0 = torch.randn(n, generator=gen)
    grads = [torch.randn(n, generator=gen) for _ in lrs]
    p = torch.nn.Parameter(p0.clone())
    opt = torch.optim.SGD([p], lr=lrs[0], momentum=mom, weight_decay=wd)
    out = {"p0": p0, "lrs": torch.tensor(lrs), "hyper": torch.tensor([mom, wd])}
    for i, lr in enumerate(lrs):
        for g in opt.param_groups:
            g["lr"] = lr
        p.grad = grads[i].clone()
        opt.step()
        out[f"grad{i}"] = grads[i]
        out[f"p{i + 1}"] = p.detach().clone()
        out[f"buf{i + 1}"] = opt.state[p]["momentum_buffer"].clone()
    write_safetensors(path, out)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    negatives_fixture(os.path.join(out_dir, "synco_negatives.safetensors"))
    sgd_fixture(os.path.join(out_dir, "synco_sgd.safetensors"))


if __name__ == "__main__":
    main()
