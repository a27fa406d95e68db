"""CSIM: cosine similarity of identity embeddings between the reference image and generated frames.

Three encoders behind one call, `csim(reference, frames, encoder)`:
* ArcFace (the paper's): an IResNet in insightface arcface_torch's `backbone.pth` layout, when that file
  is local (`load_arcface`); input 112 x 112 aligned RGB faces (align real faces with
  landmarks.align_arcface). Depth (r18/r34/r50/r100) is read from the state dict.
* dlib's face-recognition ResNet (ships in face-recognition-models): real faces, no download
  (`DlibIdentity`); it finds and aligns the face itself.
* the embedded identity encoder, trained on renders of random identities with random expressions, poses
  and backgrounds (`train_identity_encoder`), for the cartoon corpus.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .common import (
    fit,
    image_trunk,
    load_extractor,
    make_card,
    package_dir,
    require_file,
    require_package,
    save_extractor,
    to_float_images,
    torch_threads,
)
from .renders import render_bank

NAME = "embedded-identity-v1"


def csim(reference, frames, encoder) -> dict:
    """Mean cosine similarity between the embedding of `reference` (H, W, 3) uint8 and those of `frames`
    (N, H, W, 3) uint8. Frames where the encoder finds no face (dlib) are skipped and counted."""
    ref = np.asarray(encoder.embed(np.asarray(reference)[None]))[0]
    emb = np.asarray(encoder.embed(np.asarray(frames)))
    ok = np.isfinite(emb).all(1)
    if not np.isfinite(ref).all() or not ok.any():
        raise ValueError(f"{encoder.card['name']} found no face in the reference or in any frame")
    cos = emb[ok] @ ref / (np.linalg.norm(emb[ok], axis=1) * np.linalg.norm(ref) + 1e-12)
    return {"csim": float(cos.mean()), "per_frame": cos.tolist(), "frames_without_face": int((~ok).sum()),
            "extractor": encoder.card["name"], "extractor_card": encoder.card}


# ---------------------------------------------------------------------------- embedded identity encoder

class IdentityNet(nn.Module):
    """(N, 3, 64, 64) in [0, 1] -> (N, dim) unit vectors; `classifier` (cosine, training only) over identities."""

    def __init__(self, dim: int = 64, width: int = 24, n_classes: int = 1):
        super().__init__()
        self.trunk = image_trunk(width)
        self.embed = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, dim))
        self.classifier = nn.Parameter(torch.randn(n_classes, dim) * 0.1)

    def forward(self, x):
        return nn.functional.normalize(self.embed(self.trunk(x)), dim=-1)


class EmbeddedIdentity:
    def __init__(self, model: IdentityNet, card: dict, config: dict):
        self.model, self.card, self.config = model.eval(), card, config

    @torch.no_grad()
    def embed(self, frames, batch: int = 256) -> np.ndarray:
        return torch.cat([self.model(to_float_images(frames[i:i + batch], 64))
                          for i in range(0, len(frames), batch)]).numpy()

    def save(self, path):
        return save_extractor(path, self.model, self.card, self.config)

    @classmethod
    def load(cls, path) -> EmbeddedIdentity:
        return cls(*load_extractor(path, "embedded-identity",
                                   lambda c: IdentityNet(c["dim"], c["width"], c["n_classes"])))


def verification_scores(encoder, bank: dict) -> dict:
    """Same-identity vs different-identity cosine on a render bank: means and ROC AUC (pairs of frames)."""
    emb = encoder.embed(bank["frames"])
    ids = bank["identity"]
    cos = emb @ emb.T
    iu = np.triu_indices(len(ids), 1)
    same = (ids[:, None] == ids[None, :])[iu]
    s, d = cos[iu][same], cos[iu][~same]
    ranks = np.argsort(np.argsort(np.r_[s, d])) + 1  # Mann-Whitney U -> AUC
    auc = (ranks[:len(s)].sum() - len(s) * (len(s) + 1) / 2) / (len(s) * len(d))
    return {"same_identity_cos": float(s.mean()), "other_identity_cos": float(d.mean()), "auc": float(auc)}


def train_identity_encoder(n_identities: int = 64, frames_per_identity: int = 40, steps: int = 150,
                           batch: int = 64, dim: int = 64, width: int = 24, lr: float = 3e-3, seed: int = 0,
                           threads: int | None = 1, max_seconds: float | None = None) -> EmbeddedIdentity:
    """Cosine-softmax classification over random render identities (each seen with 4 backgrounds/shirts,
    random expressions and poses), so the embedding keeps who it is and drops what they do."""
    with torch_threads(threads):
        torch.manual_seed(seed)
        bank = render_bank(n_identities, frames_per_identity, seed=seed + 500, backgrounds_per_identity=4)
        model = IdentityNet(dim, width, n_identities)
        x_all, y_all = torch.from_numpy(bank["frames"]), torch.from_numpy(bank["identity"])
        g = torch.Generator().manual_seed(seed)

        def step(_):
            idx = torch.randint(len(x_all), (batch,), generator=g)
            z = model(to_float_images(x_all[idx], 64))
            logits = 16.0 * z @ nn.functional.normalize(model.classifier, dim=-1).T  # NormFace scale
            return nn.functional.cross_entropy(logits, y_all[idx])

        log = fit(model, step, steps, lr=lr, max_seconds=max_seconds, threads=None)
        config = {"dim": dim, "width": width, "n_classes": n_identities}
        card = make_card(NAME, "embedded", trained_on={"description": bank["description"] + ", 4 backgrounds each"},
                         training=log, notes="identity embedding of 64 px cartoon renders; not for real faces")
        enc = EmbeddedIdentity(model, card, config)
        card["quality"] = verification_scores(enc, render_bank(8, 12, seed=seed + 20_000, backgrounds_per_identity=2))
        return enc


# ---------------------------------------------------------------------------- ArcFace (arcface_torch IResNet)

class IBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
        self.bn2, self.prelu = nn.BatchNorm2d(c_out), nn.PReLU(c_out)
        self.conv2, self.bn3 = nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.downsample = None if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace backbone (Deng et al. 2019, arcface_torch): 112 x 112 RGB in [-1, 1] -> 512-d embedding."""

    def __init__(self, layers=(3, 13, 30, 3), dim: int = 512):
        super().__init__()
        self.conv1, self.bn1, self.prelu = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        c_in = 64
        for i, (n, c) in enumerate(zip(layers, (64, 128, 256, 512))):
            setattr(self, f"layer{i + 1}", nn.Sequential(*[IBlock(c_in if j == 0 else c, c, 2 if j == 0 else 1)
                                                           for j in range(n)]))
            c_in = c
        self.bn2, self.dropout = nn.BatchNorm2d(512), nn.Dropout(0.0)
        self.fc, self.features = nn.Linear(512 * 7 * 7, dim), nn.BatchNorm1d(dim)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(self.bn2(x).flatten(1))))


class ArcFace:
    def __init__(self, model: IResNet, card: dict):
        self.model, self.card = model.eval(), card

    @torch.no_grad()
    def embed(self, faces, batch: int = 32) -> np.ndarray:
        """faces: (N, 112, 112, 3) uint8 RGB, aligned to the ArcFace template (others are resized)."""
        out = [self.model(to_float_images(faces[i:i + batch], 112) * 2 - 1) for i in range(0, len(faces), batch)]
        return torch.cat(out).numpy()


ARCFACE_HOW = ("Put an insightface arcface_torch backbone there (e.g. ms1mv3_arcface_r100_fp16/backbone.pth from "
               "the arcface_torch model zoo) as $AF_WEIGHTS_DIR/arcface_backbone.pth (default <repo>/data/weights/). "
               "Without it CSIM uses dlib's face-recognition ResNet (real faces) or the embedded encoder (renders).")


def load_arcface(path) -> ArcFace:
    path = require_file(path, "ArcFace weights (arcface_torch backbone.pth)", ARCFACE_HOW)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise ValueError(f"{path} is not an arcface_torch IResNet state dict (no 'fc.weight'). {ARCFACE_HOW}")
    layers = tuple(1 + max((int(k.split(".")[1]) for k in state if k.startswith(f"layer{i}.")), default=-1)
                   for i in range(1, 5))
    if min(layers) < 1:
        raise ValueError(f"{path}: could not read the block counts from the keys (got {layers}). {ARCFACE_HOW}")
    model = IResNet(layers, dim=state["fc.weight"].shape[0])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match the arcface_torch IResNet layout: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}. {ARCFACE_HOW}")
    depth = {(2, 2, 2, 2): "r18", (3, 4, 6, 3): "r34", (3, 4, 14, 3): "r50", (3, 13, 30, 3): "r100"}
    return ArcFace(model, make_card(f"arcface-iresnet-{depth.get(layers, 'x'.join(map(str, layers)))}", "real",
                                    source=path, notes="expects 112 px faces aligned to the ArcFace template"))


# ---------------------------------------------------------------------------- dlib face recognition (shipped)

class DlibIdentity:
    """dlib_face_recognition_resnet_model_v1 (128-d), with dlib's HOG detector and 5-point alignment.
    Frames without a detectable face give NaN rows."""

    def __init__(self):
        why = "CSIM on real faces with dlib's face-recognition ResNet"
        self.dlib = require_package("dlib", "dlib-bin==20.0.1.post1", why)
        models = package_dir("face_recognition_models", "face-recognition-models==0.3.0", why) / "models"
        self.detector = self.dlib.get_frontal_face_detector()
        self.shape5 = self.dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.net = self.dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self.card = make_card("dlib-resnet-v1", "real", source=models / "dlib_face_recognition_resnet_model_v1.dat",
                              notes="dlib face recognition (LFW 99.38 %), HOG detector, largest face per frame")

    def embed(self, frames) -> np.ndarray:
        out = np.full((len(frames), 128), np.nan)
        for i, img in enumerate(frames):
            img = np.ascontiguousarray(img)
            faces = self.detector(img, 1)
            if faces:
                face = max(faces, key=lambda r: r.area())
                out[i] = np.array(self.net.compute_face_descriptor(img, self.shape5(img, face)))
        return out
