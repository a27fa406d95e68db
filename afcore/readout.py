"""A linear readout from motion latents to face parameters: "latent-readout-ridge".

The generator's output is a motion latent m (D); the corpus stores the true per-frame face parameters
(data_prep.schema.PARAM_COLUMNS: 7 expression + 3 pose). `ParamReadout` is the closed-form ridge regression
m -> params that the live demo plots with and the evaluation suite scores with (`eval/readout.py` fits it on a
corpus, chooses its strength on val and reports R^2 on test). It lives in afcore because the demo needs it and
afcore never imports eval.

    readout = ParamReadout.fit(latents, params, alpha=1e-2)   # (N, D), (N, P)
    params = readout(latents)                                 # (..., D) -> (..., P), numpy or torch
    readout.save("readout.pt"); ParamReadout.load("readout.pt")

The .pt holds {"weight" (D, P), "bias" (P,), "columns", "info"}.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data_prep.schema import EXPRESSION_SLICE, PARAM_COLUMNS, POSE_SLICE

from .io import torch_save

NAME = "latent-readout-ridge"


def r2_scores(pred: np.ndarray, true: np.ndarray, columns=PARAM_COLUMNS) -> dict:
    """R^2 = 1 - SS_res / SS_tot per column (NaN where the truth is constant) and their NaN-mean."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    ss_res = ((pred - true) ** 2).sum(0)
    ss_tot = ((true - true.mean(0)) ** 2).sum(0)
    r2 = np.where(ss_tot > 1e-12, 1 - ss_res / np.maximum(ss_tot, 1e-12), np.nan)
    per = {c: float(v) for c, v in zip(columns, r2)}
    return {"per_param": per, "mean": float(np.nanmean(r2)),
            "expression_mean": float(np.nanmean(r2[EXPRESSION_SLICE])), "pose_mean": float(np.nanmean(r2[POSE_SLICE]))}


class ParamReadout:
    """params = (m - mean) @ W + bias, W = (Xc'Xc + alpha N tr(C)/D I)^-1 Xc'Yc (scale-free ridge)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, columns=PARAM_COLUMNS, info: dict | None = None):
        self.weight, self.bias = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
        self.columns, self.info = tuple(columns), dict(info or {})
        if self.weight.shape[1] != len(self.columns) or self.bias.shape != (len(self.columns),):
            raise ValueError(f"readout weight {self.weight.shape} / bias {self.bias.shape} do not match "
                             f"{len(self.columns)} columns")

    @classmethod
    def fit(cls, latents, params, alpha: float = 1e-2, columns=PARAM_COLUMNS) -> ParamReadout:
        X, Y = np.asarray(latents, np.float64), np.asarray(params, np.float64)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y) or len(X) < 2:
            raise ValueError(f"fit needs latents (N, D) and params (N, P) with equal N >= 2; got {X.shape}, {Y.shape}")
        if not (np.isfinite(X).all() and np.isfinite(Y).all()):
            raise ValueError("latents or params contain NaN/inf (an ingested corpus without face parameters?)")
        mx, my = X.mean(0), Y.mean(0)
        Xc = X - mx
        gram = Xc.T @ Xc
        scale = np.trace(gram) / X.shape[1]  # alpha is relative to the latents' variance: no unit to tune
        W = np.linalg.solve(gram + alpha * max(scale, 1e-12) * np.eye(X.shape[1]), Xc.T @ (Y - my))
        return cls(W, my - mx @ W, columns, {"alpha": alpha, "n_fit": len(X)})

    def __call__(self, latents):
        """(..., D) numpy or torch -> (..., P) of the same kind (float32)."""
        if isinstance(latents, torch.Tensor):
            return torch.from_numpy(self(latents.detach().cpu().numpy())).to(latents.device)
        x = np.asarray(latents, np.float64)
        return (x @ self.weight + self.bias).astype(np.float32)

    def r2(self, latents, params) -> dict:
        return r2_scores(self(latents), params, self.columns)

    def index(self, column: str) -> int:
        return self.columns.index(column)

    def state(self) -> dict:
        """Plain arrays, for storing inside another checkpoint (the live demo's bundle)."""
        return {"weight": self.weight.astype(np.float32), "bias": self.bias.astype(np.float32),
                "columns": list(self.columns), "info": self.info}

    @classmethod
    def from_state(cls, state: dict) -> ParamReadout:
        return cls(np.asarray(state["weight"]), np.asarray(state["bias"]), state["columns"], state.get("info"))

    @property
    def card(self) -> dict:
        """What produced the parameters, for metrics.json (the analogue of the paper's 'EMOCA via SPECTRE')."""
        return {"name": NAME, "kind": "embedded", "what": "ridge regression from motion latents (D) to the corpus "
                "ground-truth face parameters (7 expression + 3 pose), closed form", "columns": list(self.columns),
                **self.info}

    def save(self, path) -> Path:
        return torch_save({"weight": torch.from_numpy(self.weight).float(), "bias": torch.from_numpy(self.bias).float(),
                           "columns": list(self.columns), "info": self.card}, path)

    @classmethod
    def load(cls, path) -> ParamReadout:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no readout here; fit one with eval.readout.fit_corpus_readout "
                                    "(notebook 02 writes readout.pt)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        info = {k: v for k, v in state.get("info", {}).items() if k not in ("name", "kind", "what", "columns")}
        return cls(state["weight"].double().numpy(), state["bias"].double().numpy(), state["columns"], info)
