"""The FID InceptionV3 of pytorch-fid (the paper's FID [48]), loaded from a local weights file.

pytorch-fid uses the TensorFlow FID Inception graph ported to PyTorch: torchvision's Inception3 layout
with 1008 classes and four changes in the mixed blocks' pooling branch (average pools that do not count
the padding in Mixed_5b-d, 6b-e and 7b; a max pool in Mixed_7c). Its weights file
`pt_inception-2015-12-05-6726825d.pth` is a state dict in torchvision's key names. The feature is the
2048-d global average pool; inputs are resized bilinearly to 299 and scaled to [-1, 1].
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from .common import make_card, require_file

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
HOW_TO_GET = (f"Put pytorch-fid's FID Inception weights there: the file '{FID_WEIGHTS_FILE}' (~91 MB, from the "
              "pytorch-fid GitHub release v0.2.1), e.g. in $AF_WEIGHTS_DIR (default <repo>/data/weights/). "
              "Without it FID uses the embedded frame encoder and says so in every result.")


def _pool_branch(x, kind):
    if kind == "max":
        return F.max_pool2d(x, 3, stride=1, padding=1)
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _fwd_a(self, x, pool="avg"):  # InceptionA (Mixed_5b/c/d)
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([b1, b5, b3, self.branch_pool(_pool_branch(x, pool))], 1)


def _fwd_c(self, x, pool="avg"):  # InceptionC (Mixed_6b..e)
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = x
    for i in range(1, 6):
        bd = getattr(self, f"branch7x7dbl_{i}")(bd)
    return torch.cat([b1, b7, bd, self.branch_pool(_pool_branch(x, pool))], 1)


def _fwd_e(self, x, pool="avg"):  # InceptionE (Mixed_7b avg, Mixed_7c max)
    b1 = self.branch1x1(x)
    b3 = self.branch3x3_1(x)
    b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
    return torch.cat([b1, b3, bd, self.branch_pool(_pool_branch(x, pool))], 1)


class FIDInception(nn.Module):
    """(N, 3, H, W) float in [0, 1] -> (N, 2048) pool features, pytorch-fid's network."""
    num_features = 2048  # torchmetrics reads this instead of probing with a dummy image

    def __init__(self):
        super().__init__()
        from torchvision.models import (
            inception_v3,  # architecture only; no weights are requested
        )

        net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
        for name, fwd, pool in [("Mixed_5b", _fwd_a, "avg"), ("Mixed_5c", _fwd_a, "avg"), ("Mixed_5d", _fwd_a, "avg"),
                                ("Mixed_6b", _fwd_c, "avg"), ("Mixed_6c", _fwd_c, "avg"), ("Mixed_6d", _fwd_c, "avg"),
                                ("Mixed_6e", _fwd_c, "avg"), ("Mixed_7b", _fwd_e, "avg"), ("Mixed_7c", _fwd_e, "max")]:
            block = getattr(net, name)
            block.forward = types.MethodType(lambda self, x, f=fwd, p=pool: f(self, x, p), block)
        self.net = net

    def forward(self, x):
        n = self.net
        x = F.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        x = F.max_pool2d(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))), 3, 2)
        x = F.max_pool2d(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)), 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def load_fid_inception(path) -> tuple[FIDInception, dict]:
    """The FID Inception with weights from `path` (pytorch-fid's state dict; strict key and shape check)."""
    path = require_file(path, f"FID Inception weights ({FID_WEIGHTS_FILE})", HOW_TO_GET)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = FIDInception()
    own = model.net.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{path} does not match pytorch-fid's Inception layout: missing {missing[:5]} "
                         f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), wrong shapes {wrong[:5]}")
    model.net.load_state_dict(state)
    return model.eval(), make_card("inception-v3-fid", "real", source=path,
                                   notes="pytorch-fid FID Inception (TF 2015-12-05 graph), pool3 2048-d")
