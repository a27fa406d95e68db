"""Face parameters from frames, embedded: the analogue of the paper's EMOCA/SPECTRE step for the corpus.

A small CNN regresses the 10 corpus parameters (7 expression + 3 pose, data_prep.schema.PARAM_COLUMNS)
from a rendered frame: a small pose branch reads (yaw, pitch, roll), the frame is warped back to the frontal
pose and zoomed on the face, and the main branch reads the expression (and a pose correction) from that
aligned face (see "pose normalisation" below for why). It is trained on renders of random identities with
independently drawn parameters (renders.render_bank), optionally plus a corpus's train split, and its
accuracy is measured as R^2 per parameter on identities it never saw. The card carries those numbers, so a
metric computed from its output says "embedded-facecnn-v2 (R^2 ...)".

    fx = train_facecnn(steps=2000)                   # a few minutes on 1 core; tests use 300 steps
    fx.evaluate(held_out["frames"], held_out["params"])  # {"jaw_open": 0.97, ...}
    params = fx(frames)                              # (N, 10) float32, fx.columns
    fx.save("data/extractors/facecnn.pt"); FaceParamExtractor.load(...)
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_prep.schema import PARAM_COLUMNS, POSE_SLICE
from data_prep.synth.render import FOCAL, PIVOT

from .common import (
    fit,
    image_trunk,
    load_extractor,
    make_card,
    r2_per_column,
    save_extractor,
    to_float_images,
    torch_threads,
)
from .renders import corpus_description, corpus_frames, render_bank

NAME = "embedded-facecnn-v2"  # v2: pose branch + expression read from the pose-aligned face (v1: one CNN)


# ---------------------------------------------------------------------------- pose normalisation
# Why: smile, laugh, brow and gaze move 1-2 px at 64 px (mouth corners, blush, iris, lids), while head pose moves
# the whole face by up to ~10 px and rotates it. One CNN on the raw frame learns pose and jaw in a few hundred
# steps but not those small cues: measured R^2 ~0 for smile/gaze/brow/laugh after 300 steps, and still 0.0-0.25
# after 1000-2500 steps on 19k fresh frames (with few frames it memorises them instead: train R^2 0.7, held-out
# < 0). On frontal-only renders the same CNN reads them in 500 steps (smile 0.82, gaze_x 0.77, brow 0.98). So a
# small pose branch reads (yaw, pitch, roll) from the frame, the frame is warped back to the frontal pose and
# zoomed on the face (an affine fit to where the renderer's head geometry puts eyes, brows, nose and mouth
# under that pose), and the expression branch reads the aligned face.
# Renderer geometry (data_prep.synth.render.FaceRenderer, in output pixels): head units -> pixels scale
# 0.3 * size about the centre (0.5, 0.47) * size, weak perspective FOCAL, rotation R = Rz Rx Ry about PIVOT.
_FRAME_SCALE, _FRAME_CENTRE = 0.3, (0.5, 0.47)
_FACE_XY = np.array([[-0.375, 0.08], [0.375, 0.08], [-0.38, 0.4], [0.38, 0.4], [-0.235, -0.57], [0.235, -0.57],
                     [0.0, -0.57], [0.0, -0.3], [0.0, -0.95], [0.0, 0.6], [-0.5, -0.28], [0.5, -0.28], [-0.7, 0.1],
                     [0.7, 0.1]])  # eyes, brows, mouth corners + centre, nose, chin, forehead, cheeks, temples


def _face_template() -> torch.Tensor:
    """(K, 3) landmark positions on the surface of a mid-range head (cranium + jaw ellipsoids as in render.py)."""
    x, y = _FACE_XY.T
    z = np.full(len(x), 0.3)
    for c, r in (((0.0, 0.15, 0.0), (0.98, 1.14, 1.05)), ((0.0, -0.42, 0.06), (0.76, 0.62, 0.92))):
        q = 1 - ((x - c[0]) / r[0]) ** 2 - ((y - c[1]) / r[1]) ** 2
        z = np.maximum(z, c[2] + r[2] * np.sqrt(np.clip(q, 0, 1)))
    return torch.tensor(np.column_stack([_FACE_XY, z]), dtype=torch.float32)


def _rotations(pose: torch.Tensor) -> torch.Tensor:
    """(N, 3) yaw, pitch, roll -> (N, 3, 3), the renderer's R = Rz(roll) Rx(pitch) Ry(yaw)."""
    (cy, cp, cr), (sy, sp, sr) = torch.cos(pose).T, torch.sin(pose).T
    o, z = torch.ones_like(cy), torch.zeros_like(cy)
    ry = torch.stack([torch.stack([cy, z, sy], -1), torch.stack([z, o, z], -1), torch.stack([-sy, z, cy], -1)], -2)
    rx = torch.stack([torch.stack([o, z, z], -1), torch.stack([z, cp, -sp], -1), torch.stack([z, sp, cp], -1)], -2)
    rz = torch.stack([torch.stack([cr, sr, z], -1), torch.stack([-sr, cr, z], -1), torch.stack([z, z, o], -1)], -2)
    return rz @ rx @ ry


def _project(p: torch.Tensor) -> torch.Tensor:
    """(..., 3) head units -> (..., 2) image coordinates in [-1, 1] (grid_sample convention, y down)."""
    k = 2 * _FRAME_SCALE * FOCAL / (FOCAL - p[..., 2])
    return torch.stack([2 * _FRAME_CENTRE[0] - 1 + k * p[..., 0], 2 * _FRAME_CENTRE[1] - 1 - k * p[..., 1]], -1)


def align_faces(x: torch.Tensor, pose: torch.Tensor, zoom: float = 1.6, centre_y: float = -0.2,
                template: torch.Tensor | None = None) -> torch.Tensor:
    """Warp (N, 3, H, W) frames showing heads at `pose` (N, 3) to the frontal pose, zoomed `zoom` x about the
    face point (0, centre_y): one least-squares affine per frame from the template's frontal to posed positions."""
    template = _face_template() if template is None else template
    pivot = torch.as_tensor(PIVOT, dtype=torch.float32)
    posed = _project(torch.einsum("nij,kj->nki", _rotations(pose.float()), template - pivot) + pivot)  # (N, K, 2)
    frontal, c = _project(template), _project(torch.tensor([0.0, centre_y, 1.0]))
    out_xy = torch.cat([c + (frontal - c) * zoom, torch.ones(len(template), 1)], 1)  # (K, 3)
    theta = (torch.linalg.pinv(out_xy) @ posed).transpose(1, 2)  # (N, 2, 3): output coords -> input coords
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FaceParamCNN(nn.Module):
    """(N, 3, 64, 64) in [0, 1] -> (N, 10) params; targets are standardised inside (buffers mean/std).

    Two branches (`pose_width` > 0, the default): `pose_trunk`/`pose_head` read yaw, pitch, roll from the frame;
    `trunk`/`head` read the expression columns from the frame aligned with that pose (align_faces), plus a
    correction of the pose. `pose_width=0` is the v1 model (one CNN on the raw frame), kept to load v1 checkpoints.
    """

    def __init__(self, width: int = 32, n_out: int = len(PARAM_COLUMNS), pose_width: int = 16, zoom: float = 1.6,
                 refine: int = 2):
        super().__init__()
        self.config = {"width": width, "pose_width": pose_width, "zoom": zoom, "refine": refine}
        self.zoom, self.refine, self.pose_cols = zoom, refine, list(range(len(PARAM_COLUMNS)))[POSE_SLICE]
        self.trunk = image_trunk(width)  # -> (N, 4w, 4, 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * width * 16, 256), nn.ReLU(inplace=True),
                                  nn.Linear(256, n_out))
        if pose_width:
            self.pose_trunk = image_trunk(pose_width)
            self.pose_head = nn.Sequential(nn.Flatten(), nn.Linear(4 * pose_width * 16, 128), nn.ReLU(inplace=True),
                                           nn.Linear(128, len(self.pose_cols)))
            self.register_buffer("template", _face_template())
        self.register_buffer("mean", torch.zeros(n_out))
        self.register_buffer("std", torch.ones(n_out))

    @property
    def aligned(self) -> bool:
        return hasattr(self, "pose_trunk")

    def pose_standardised(self, x):
        """First branch: standardised (yaw, pitch, roll) from the raw frame."""
        return self.pose_head(self.pose_trunk(x))

    def aligned_standardised(self, x, pose_std):
        """Second branch: standardised (N, 10) from the frame aligned with `pose_std` (N, 3, standardised); its pose
        columns are `pose_std` plus the branch's correction."""
        pc = self.pose_cols
        out = self.head(self.trunk(align_faces(x, pose_std * self.std[pc] + self.mean[pc], self.zoom,
                                               template=self.template)))
        return torch.cat([out[:, :pc[0]], out[:, pc] + pose_std, out[:, pc[-1] + 1:]], 1)

    def forward_standardised(self, x, iters: int | None = None):
        """Standardised (N, 10): the pose branch's estimate, then `iters` (default config refine) passes of the
        aligned branch, each realigning with the pose the previous pass corrected."""
        if not self.aligned:
            return self.head(self.trunk(x))
        pose_std = self.pose_standardised(x)
        for _ in range(max(1, self.refine if iters is None else iters)):
            out = self.aligned_standardised(x, pose_std)
            pose_std = out[:, self.pose_cols]
        return out

    def forward(self, x):
        return self.forward_standardised(x) * self.std + self.mean


class FaceParamExtractor:
    """Callable: frames (N, H, W, 3) uint8 -> (N, 10) float32 params in `columns` order."""
    columns = PARAM_COLUMNS

    def __init__(self, model: FaceParamCNN, card: dict, config: dict):
        self.model, self.card, self.config = model.eval(), card, config

    @torch.no_grad()
    def __call__(self, frames, batch: int = 256) -> np.ndarray:
        out = [self.model(to_float_images(frames[i:i + batch], 64)) for i in range(0, len(frames), batch)]
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, len(self.columns)), np.float32)

    def evaluate(self, frames, params) -> dict:
        """R^2 per parameter of the predictions against ground truth (N, 10)."""
        return r2_per_column(self(frames), params, self.columns)

    def save(self, path):
        return save_extractor(path, self.model, self.card, {**self.config, **self.model.config})

    @classmethod
    def load(cls, path) -> FaceParamExtractor:
        """v2 checkpoints carry pose_width/zoom in their config; v1 ones (no pose branch) load as pose_width=0."""
        return cls(*load_extractor(path, "embedded-facecnn", lambda cfg: FaceParamCNN(
            cfg["width"], pose_width=cfg.get("pose_width", 0), zoom=cfg.get("zoom", 1.6), refine=cfg.get("refine", 2))))


def train_facecnn(corpus=None, n_identities: int = 48, frames_per_identity: int = 120, steps: int = 2000,
                  batch: int = 32, lr: float = 5e-3, width: int = 32, seed: int = 0, held_out_identities: int = 8,
                  threads: int | None = 1, max_seconds: float | None = None, pose_width: int = 16,
                  pose_jitter: float = 0.5, zoom: float = 1.6, refine: int = 2) -> FaceParamExtractor:
    """Train on random render identities (+ the corpus train split if given); score on unseen identities.

    The card's `quality` holds R^2 per parameter on `held_out_identities` fresh render identities (uniform
    parameter draws) and, with a corpus, on its test split (conversation motion of unseen people).
    The aligned branch trains on frames aligned with the true pose plus Gaussian noise of up to `pose_jitter`
    standard deviations (uniform scale per frame; the pose branch errs by ~0.3), so it learns to correct that error.
    """
    with torch_threads(threads):
        return _train(corpus, n_identities, frames_per_identity, steps, batch, lr, width, seed, held_out_identities,
                      max_seconds, pose_width, pose_jitter, zoom, refine)


def _train(corpus, n_identities, frames_per_identity, steps, batch, lr, width, seed, held_out_identities, max_seconds,
           pose_width, pose_jitter, zoom, refine):
    torch.manual_seed(seed)
    bank = render_bank(n_identities, frames_per_identity, seed=seed)
    frames, params = bank["frames"], bank["params"]
    trained_on = {"description": bank["description"], "render_seed": seed}
    if corpus is not None:
        c = corpus_frames(corpus, "train", every=2)
        frames, params = np.concatenate([frames, c["frames"]]), np.concatenate([params, c["params"]])
        trained_on.update(corpus_description(corpus), description=bank["description"] + " + " + c["description"])
    model = FaceParamCNN(width, pose_width=pose_width, zoom=zoom, refine=refine)
    y = torch.from_numpy(params)
    model.mean.copy_(y.mean(0))
    model.std.copy_(y.std(0).clamp_min(1e-3))
    x_all = torch.from_numpy(np.ascontiguousarray(frames))  # (N, 64, 64, 3) uint8
    y_std = (y - model.mean) / model.std
    g = torch.Generator().manual_seed(seed)

    pc = model.pose_cols

    def step(i):
        idx = torch.randint(len(x_all), (batch,), generator=g)
        x, target = to_float_images(x_all[idx], 64), y_std[idx]
        if not model.aligned:
            return nn.functional.mse_loss(model.forward_standardised(x), target)
        ramp = min(1.0, i / (0.7 * steps))  # exact alignment first (the small cues are learnt), then robustness
        scale = ramp * pose_jitter * torch.rand(len(idx), 1, generator=g)
        pose_std = target[:, pc] + scale * torch.randn(len(idx), len(pc), generator=g)
        pred = model.aligned_standardised(x, pose_std)
        return nn.functional.mse_loss(pred, target) + nn.functional.mse_loss(model.pose_standardised(x), target[:, pc])

    log = fit(model, step, steps, lr=lr, max_seconds=max_seconds, threads=None)
    config = dict(model.config)
    card = make_card(NAME, "embedded", version=2, trained_on=trained_on, training=log,
                     notes="regresses data_prep.schema.PARAM_COLUMNS from 64 px renders (expression from the face "
                           "aligned with the estimated pose); cartoon faces only")
    fx = FaceParamExtractor(model, card, config)
    held = render_bank(held_out_identities, 100, seed=seed + 10_000)  # identities no training set contains
    quality = {"r2_heldout_renders": fx.evaluate(held["frames"], held["params"])}
    if corpus is not None:
        test = corpus_frames(corpus, "test", every=2)
        quality["r2_corpus_test"] = fx.evaluate(test["frames"], test["params"])
    quality["r2_mean_heldout_renders"] = float(np.nanmean(list(quality["r2_heldout_renders"].values())))
    card["quality"] = quality
    return fx
