"""Our face-parameter extractor for generated motion: "latent-readout-ridge".

The paper scores motion with EMOCA/SPECTRE 3DMM parameters extracted from rendered frames. Here the
generator's output is a motion latent m (D) of the stage-0 autoencoder and the corpus stores the true
per-frame face parameters (data_prep.schema.PARAM_COLUMNS: 7 expression + 3 pose). `ParamReadout` is a
ridge regression m -> params, closed form, fitted on the train split's (latent, params) pairs, its ridge
strength chosen on the validation split and its R^2 per parameter reported on the test split, whose
identities training never saw. Every metrics.json that uses it carries its `card`.

    readout = fit_corpus_readout("data/corpus_smoke")      # the corpus must have latents (02 / afsuite data latents)
    params = readout(latents)                              # (..., D) -> (..., 10), numpy or torch
    readout.save("readout.pt"); ParamReadout.load("readout.pt")

The .pt holds {"weight" (D, P), "bias" (P,), "columns", "info"}; 05's cue-to-reaction measurement loads it as
its `readout`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from afcore.data import latents_path
from afcore.io import torch_save
from data_prep.corpus import Corpus
from data_prep.schema import EXPRESSION_SLICE, PARAM_COLUMNS, POSE_SLICE

NAME = "latent-readout-ridge"
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # ridge strength per frame, relative to the latent variance


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


def corpus_pairs(corpus_dir, split: str, every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(latents (N, D), params (N, 10)) of every clip of `split`, every `every`-th frame, both persons."""
    corpus = Corpus(corpus_dir)
    rows = corpus.manifest[corpus.manifest.split == split]
    if rows.empty:
        raise ValueError(f"{corpus_dir}: no clips in split {split!r}")
    X, Y = [], []
    for r in rows.itertuples():
        path = latents_path(corpus_dir, r.conversation_id, r.person)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no motion latents; encode the corpus first (notebook 02 or "
                                    "`afsuite data latents`)")
        span = slice(r.start_frame, r.start_frame + r.n_frames, every)
        X.append(np.load(path, mmap_mode="r")[span])
        Y.append(corpus.stream(r.conversation_id, r.person)["params"][span])
    return np.concatenate(X).astype(np.float64), np.concatenate(Y).astype(np.float64)


def fit_corpus_readout(corpus_dir, alphas=ALPHAS, every: int = 1) -> ParamReadout:
    """Fit on train, choose alpha by mean R^2 on val, refit on train, report R^2 on val and test."""
    train, val, test = (corpus_pairs(corpus_dir, s, every) for s in ("train", "val", "test"))
    by_alpha = {a: ParamReadout.fit(*train, alpha=a).r2(*val)["mean"] for a in alphas}
    best = max(by_alpha, key=lambda a: -np.inf if np.isnan(by_alpha[a]) else by_alpha[a])
    readout = ParamReadout.fit(*train, alpha=best)
    readout.info.update(fit_split="train", alpha_chosen_on="val", val_mean_r2_by_alpha=by_alpha,
                        r2_train=readout.r2(*train), r2_val=readout.r2(*val), r2_test=readout.r2(*test),
                        n_test=len(test[0]), corpus=str(corpus_dir))
    return readout
