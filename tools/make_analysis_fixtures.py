#!/usr/bin/python3
"""Writes tests/fixtures/analysis/*.npy: inputs and float64 NumPy references for src/eval/analysis.c.

Definitions (as in src/eval/analysis.h, Wang & Isola 2020 for alignment / uniformity):
  alignment  = mean_i ||x_i - x+_i||^2
  uniformity = log mean_{i<j} exp(-2 ||x_i - x_j||^2)
  ratio_i    = mean_{j: y_j != y_i} ||x_i - x_j|| / mean_{j != i: y_j == y_i} ||x_i - x_j||
  probs      = mean over queries of sort_desc(softmax(q . Q^T / T)), first min(K, 1024)
  proxy      = 100 * mean_i [ q_i . k_i > max_j q_i . Q_j ]
Run: /usr/bin/python3 tools/make_analysis_fixtures.py
"""
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "analysis")


def unit(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def main():
    rng = np.random.default_rng(1234)
    n, d, C, K, nq, T = 300, 16, 5, 600, 64, 0.2
    centers = rng.normal(size=(C, d))
    y = np.arange(n) % C
    x = unit(centers[y] + 0.9 * rng.normal(size=(n, d)))
    xp = unit(x + 0.3 * rng.normal(size=(n, d)))
    queue = unit(rng.normal(size=(K, d)))
    q = unit(rng.normal(size=(nq, d)))
    # Positives close to their queries, so some rank first and some do not.
    k = unit(q + 0.35 * rng.normal(size=(nq, d)))

    X, XP = x.astype(np.float64), xp.astype(np.float64)
    align = np.mean(np.sum((X - XP) ** 2, axis=1))
    D2 = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=2)
    iu = np.triu_indices(n, 1)
    unif = np.log(np.mean(np.exp(-2.0 * D2[iu])))
    D = np.sqrt(D2)
    ratio = np.empty(n)
    for i in range(n):
        same = (y == y[i])
        same_o = same.copy()
        same_o[i] = False
        ratio[i] = D[i, ~same].mean() / D[i, same_o].mean()
    L = q.astype(np.float64) @ queue.astype(np.float64).T / T
    P = np.exp(L - L.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    probs = np.mean(-np.sort(-P, axis=1), axis=0)[: min(K, 1024)]
    pos = np.sum(q.astype(np.float64) * k.astype(np.float64), axis=1)
    neg = (q.astype(np.float64) @ queue.astype(np.float64).T).max(axis=1)
    proxy = 100.0 * np.mean(pos > neg)

    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "x.npy"), x)
    np.save(os.path.join(OUT, "x_pos.npy"), xp)
    np.save(os.path.join(OUT, "labels.npy"), y.astype(np.int64))
    np.save(os.path.join(OUT, "queue.npy"), queue)
    np.save(os.path.join(OUT, "q.npy"), q)
    np.save(os.path.join(OUT, "k.npy"), k)
    np.save(os.path.join(OUT, "ratio.npy"), ratio.astype(np.float32))
    np.save(os.path.join(OUT, "probs.npy"), probs.astype(np.float32))
    np.save(os.path.join(OUT, "scalars.npy"), np.array([align, unif, proxy, T], dtype=np.float32))
    print(f"alignment {align:.6f} uniformity {unif:.6f} proxy {proxy:.2f}% ratio mean {ratio.mean():.4f}")


if __name__ == "__main__":
    main()
