#!/usr/bin/python3
"""The reference for `synco bench data`: MoCo's torchvision/PIL data pipeline (ImageFolder, PIL decode,
aug-plus as main_moco.py builds it, two views per image, ToTensor + Normalize, default collate) with one
DataLoader worker process per thread, in two-view pairs per second after one warm-up batch.
Usage: /usr/bin/python3 tools/bench_torch_data.py --data DIR [--threads N] [--seconds S] [--size 32] [--blur] [--json]"""
import argparse, json, os, random, sys, time

import torch
import torchvision.datasets as datasets
import torchvision.transforms as T
from PIL import ImageFilter


class GaussianBlur:  # moco/loader.py
    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, x):
        return x.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.sigma[0], self.sigma[1])))


class TwoCrops:  # moco/loader.py TwoCropsTransform
    def __init__(self, t):
        self.t = t

    def __call__(self, x):
        return [self.t(x), self.t(x)]


def worker_init(_):
    torch.set_num_threads(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--blur", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    root = os.path.join(a.data, "train") if os.path.isdir(os.path.join(a.data, "train")) else a.data
    probe = datasets.ImageFolder(root)
    w, h = probe.loader(probe.samples[0][0]).size
    size = a.size or (min(w, h) if max(w, h) <= 96 else 224)
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    aug = [T.RandomResizedCrop(size, scale=(0.2, 1.0)),
           T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
           T.RandomGrayscale(p=0.2)]
    if a.blur:
        aug.append(T.RandomApply([GaussianBlur([0.1, 2.0])], p=0.5))
    aug += [T.RandomHorizontalFlip(), T.ToTensor(), normalize]
    ds = datasets.ImageFolder(root, TwoCrops(T.Compose(aug)))
    torch.set_num_threads(1)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=a.threads,
                                     drop_last=False, worker_init_fn=worker_init, persistent_workers=True,
                                     prefetch_factor=2)
    pairs, t0, t1, warm = 0, 0.0, 0.0, False
    done = False
    while not done:
        for (x, _) in dl:
            if not warm:
                warm, t0 = True, time.perf_counter()
                continue
            pairs += x[0].shape[0]
            t1 = time.perf_counter()
            if t1 - t0 >= a.seconds:
                done = True
                break
    rate = pairs / (t1 - t0)
    if a.json:
        print(json.dumps({"pairs_per_s": round(rate, 1), "threads": a.threads, "pairs_per_s_per_thread":
                          round(rate / a.threads, 1), "images": len(ds), "size": size, "blur": int(a.blur),
                          "batch": a.batch, "seconds": round(t1 - t0, 3), "torch": torch.__version__}))
    else:
        print("bench_torch_data: %.0f pairs/s with %d workers (%.0f per worker); %d images, size %d, batch %d"
              % (rate, a.threads, rate / a.threads, len(ds), size, a.batch))


if __name__ == "__main__":
    main()
