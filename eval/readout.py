"""Our face-parameter extractor for generated motion: "latent-readout-ridge" (`afcore.readout.ParamReadout`)
fitted on a corpus.

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

import numpy as np

from afcore.data import latents_path
from afcore.readout import NAME, ParamReadout, r2_scores  # noqa: F401  (the suite's one readout, re-exported)
from data_prep.corpus import Corpus

ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # ridge strength per frame, relative to the latent variance


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
