#!/usr/bin/env python3
"""Where one configuration's step loses to another's, layer by layer.

Reads two `synco bench step --layers --json` (or `bench fwdbwd`) outputs, A and B, and prints for every row of A's
table its time, B's time scaled to A's work (B's ms x A's GFLOP per image / B's, times A's batch / B's: what B's
layer would take at B's efficiency for A's FLOPs), and the excess: the rows where A is less efficient per FLOP than B,
largest first. For issue 20's width sweep: A = width 8, B = width 16 at the same batch; a row with a large excess is
where width 8 falls below width 16's GFLOP/s. Rows are matched by name and op (torchvision's module names).

usage: tools/compare_layers.py A.json B.json [--top N]
"""
import argparse
import json


def load(path):
    with open(path) as f:
        lines = [l for l in f if l.startswith("{")]
    if not lines:
        raise SystemExit("%s: no JSON line (run bench with --json --layers)" % path)
    r = json.loads(lines[-1])
    if "layers" not in r:
        raise SystemExit("%s: no \"layers\" (run bench with --layers)" % path)
    return r


def total(row):
    return row["fwd_ms"] + row["key_fwd_ms"] + row["bwd_data_ms"] + row["bwd_weights_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--top", type=int, default=25)
    o = ap.parse_args()
    a, b = load(o.a), load(o.b)
    gflop = lambda r: r["gflops_per_s"] / r["images_per_s"]  # per image
    scale = gflop(a) * a["batch"] / (gflop(b) * b["batch"])
    rb = {(x["name"], x["op"]): x for x in b["layers"]}
    print("A: width %d batch %d, %.1f images/s, %.1f GFLOP/s;  B: width %d batch %d, %.1f images/s, %.1f GFLOP/s"
          % (a["width"], a["batch"], a["images_per_s"], a["gflops_per_s"], b["width"], b["batch"], b["images_per_s"],
             b["gflops_per_s"]))
    print("A's GFLOP/s / B's: %.3f; B's times below are scaled by %.4f (A's work / B's)"
          % (a["gflops_per_s"] / b["gflops_per_s"], scale))
    rows = []
    for x in a["layers"]:
        y = rb.get((x["name"], x["op"]))
        ta, tb = total(x), (total(y) * scale if y else float("nan"))
        rows.append((ta - tb if y else ta, x["name"], x["op"], ta, tb))
    sa = sum(r[3] for r in rows)
    sb = sum(r[4] for r in rows if r[4] == r[4])
    print("sum of the rows: A %.2f ms, B scaled %.2f ms (A's ops at B's efficiency: %.3f of A's time)"
          % (sa, sb, sb / sa if sa else 0))
    print("%-36s %-9s %9s %9s %9s" % ("name", "op", "A ms", "B scaled", "excess"))
    for ex, name, op, ta, tb in sorted(rows, key=lambda r: -r[0])[: o.top]:
        print("%-36s %-9s %9.3f %9.3f %9.3f" % (name, op, ta, tb, ex))


if __name__ == "__main__":
    main()
