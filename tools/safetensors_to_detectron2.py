#!/usr/bin/python3
"""Writes the .pkl that detectron2's DetectionCheckpointer loads (MODEL.WEIGHTS) from a synco export:

    synco export --ckpt run/last.safetensors --out r50_d2.safetensors --format detectron2
    python3 tools/safetensors_to_detectron2.py r50_d2.safetensors r50_d2.pkl

A torchvision-named export (plain `synco export`) is accepted too: it is renamed here with MoCo's
convert-pretrain-to-detectron2.py rules. The output is what that script writes:
{"model": {name: numpy array}, "__author__": ..., "matching_heuristics": True}. Needs only numpy.
"""
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from verify_export import moco_detectron2_name, read_safetensors  # noqa: E402


def main():
    if len(sys.argv) != 3:
        print("usage: %s EXPORT.safetensors OUT.pkl" % sys.argv[0], file=sys.stderr)
        return 2
    src, dst = sys.argv[1:]
    try:
        state, meta = read_safetensors(src)
    except (OSError, ValueError) as e:
        print("safetensors_to_detectron2: %s" % e, file=sys.stderr)
        return 1
    if meta.get("synco.format") != "detectron2":
        if "conv1.weight" not in state:
            print("%s: neither a detectron2 nor a torchvision-named export" % src, file=sys.stderr)
            return 1
        # The projection head is not part of a detection backbone.
        state = {moco_detectron2_name(k): v for k, v in state.items() if not k.startswith("fc.")}
    if "stem.conv1.weight" in state and state["stem.conv1.weight"].shape[-1] != 7:
        print("warning: %s has the CIFAR stem (3x3 conv1); detectron2's ResNet stem is 7x7" % src, file=sys.stderr)
    with open(dst, "wb") as f:
        pickle.dump({"model": state, "__author__": "synco", "matching_heuristics": True}, f)
    print("wrote %s: %d tensors under detectron2 names" % (dst, len(state)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
