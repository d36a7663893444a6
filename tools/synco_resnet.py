"""synco's encoder as a torchvision ResNet, and the loader of a synco .safetensors file (one copy for tools/).

synco's ResNet-18/34/50 is torchvision's at any base width w: the stem and the four stages at w, 2w, 4w, 8w planes
(torchvision fixes them at 64/128/256/512: width_per_group changes only a Bottleneck's inner width, and
BasicBlock refuses it), optionally the CIFAR stem (3x3 stride-1 conv1, no max-pool), and in place of fc one of
three heads: none (fc = Identity: the 8w-d, for ResNet-50 32w-d, features), a linear one (a classifier, or the
projection head without --mlp) or MoCo-v2's MLP.

    import sys; sys.path.insert(0, "tools")         # from a synco checkout
    from synco_resnet import synco_model, synco_resnet
    model, tf = synco_model("enc.safetensors")        # any synco export / linear / finetune --out file
    m = synco_resnet(18, width=8, cifar_stem=True, head="mlp", dim=128, norm_layer=MySplitBN)  # a fresh one

The README's synco_model() (section "Weights in and out of PyTorch") is this file's synco_model as one block
a user without a synco checkout can paste; `tools/verify_export.py --recipe README.md` checks that the two build
the same model from the same file (tests/e2e/verify_export.sh runs it). Works with torch 1.13 / torchvision 0.14
(Debian's python3-torch) and torch 2.x.
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torchvision.transforms as T
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

ARCH = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}
HEADS = (None, "linear", "mlp")


class SyncoResNet(ResNet):
    """torchvision.models.resnet.ResNet at base width `width`, with the optional CIFAR stem.

    The modules are made as ResNet.__init__ makes them, in its order and with its initialization (kaiming-normal
    convolutions, BN weight 1 and bias 0), the stages through torchvision's own _make_layer; forward() is
    torchvision's. So the state_dict keys are torchvision's and, from the same seed, so are the initial weights:
    at width 64 with the ImageNet stem this is torchvision.models.resnetXX(num_classes=...) (tools/make_fixtures.py
    asserts it). ResNet.__init__ itself is not called: it would first make, and draw the weights of, the width-64
    network. num_classes None: fc = Identity. norm_layer: a BatchNorm2d-like class or factory of one argument
    (the channels), as torchvision's norm_layer.
    """

    def __init__(self, depth, width=64, cifar_stem=False, num_classes=1000, norm_layer=None):
        nn.Module.__init__(self)
        block, layers = ARCH[depth]
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # torchvision's width_per_group: a Bottleneck's inner width = planes
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        d = 8 * width * block.expansion
        self.fc = nn.Identity() if num_classes is None else nn.Linear(d, num_classes)
        for m in self.modules():  # torchvision's initialization
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def synco_resnet(depth, width=64, cifar_stem=False, head=None, dim=128, norm_layer=None):
    """A fresh synco encoder: ResNet-`depth` at base width `width` with fc the `head`:
    None: Identity (the features); "linear": Linear(d, dim); "mlp": MoCo-v2's Sequential(Linear(d, d), ReLU,
    Linear(d, dim)) ("fc.0", "fc.2"), made as MoCo's builder makes it, by wrapping the network's fc."""
    if head not in HEADS:
        raise ValueError("head %r: one of %s" % (head, HEADS))
    m = SyncoResNet(depth, width, cifar_stem, num_classes=dim if head else None, norm_layer=norm_layer)
    if head == "mlp":
        d = m.fc.in_features
        m.fc = nn.Sequential(nn.Linear(d, d), nn.ReLU(), m.fc)
    return m


def arch_of(state, meta):
    """(depth, width, cifar_stem, image_size or None) of a state_dict: from the "synco.encoder" metadata, else
    from the tensors (conv1's shape, the number of blocks, Bottleneck's conv3)."""
    if "synco.encoder" in meta:
        c = json.loads(meta["synco.encoder"])
        return int(c["depth"]), int(c["width"]), bool(c["cifar_stem"]), c.get("image_size")
    w = state["conv1.weight"]
    blocks = [len({k.split(".")[1] for k in state if k.startswith("layer%d." % i)}) for i in range(1, 5)]
    bottleneck = any(k.endswith("conv3.weight") for k in state)
    depth = 50 if bottleneck else (18 if blocks == [2, 2, 2, 2] else 34)
    return depth, int(w.shape[0]), w.shape[2] == 3, None


def head_of(state):
    """(head, dim) that synco_resnet needs for the fc tensors of a state_dict: a classifier (linear / finetune
    --out) is "linear", an export with --head "mlp" (or "linear" when pretrained without --mlp), none None."""
    if "fc.0.weight" in state:
        return "mlp", int(state["fc.2.weight"].shape[0])
    if "fc.weight" in state:
        return "linear", int(state["fc.weight"].shape[0])
    return None, 0


def eval_transform(mean, std, size, resize):
    """synco's evaluation transform of one PIL image: resize (shorter side to `resize`, PIL bilinear) and
    center-crop only an image not already size x size; then ToTensor and Normalize(mean, std)."""
    norm = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    crop = T.Compose([T.Resize(resize), T.CenterCrop(size)])
    return lambda img: norm(img if img.size == (size, size) else crop(img))


def read_file(path):
    """({name: torch tensor}, {metadata}) of a .safetensors file: through the `safetensors` package when it is
    installed, else through tools/verify_export.py's pure-Python reader."""
    try:
        import safetensors
        import safetensors.torch
    except ImportError:
        here = os.path.dirname(os.path.abspath(__file__))
        if here not in sys.path:
            sys.path.insert(0, here)
        from verify_export import read_safetensors
        state, meta = read_safetensors(path)
        return {k: torch.from_numpy(v) for k, v in state.items()}, meta
    with safetensors.safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    return safetensors.torch.load_file(path), meta


def synco_model(path):
    """(torchvision ResNet with the file's weights, strict, in eval mode; its image transform) for a synco
    file: an export (with or without --head) or a linear / finetune --out classifier. The README's recipe."""
    state, meta = read_file(path)
    depth, width, cifar_stem, _ = arch_of(state, meta)
    head, dim = head_of(state)
    m = synco_resnet(depth, width, cifar_stem, head, dim)
    m.load_state_dict(state, strict=True)
    p = json.loads(meta["synco.preprocess"])
    return m.eval(), eval_transform(p["mean"], p["std"], p["image_size"], p["resize"])
