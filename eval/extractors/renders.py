"""Training and held-out data for the embedded extractors, made with the corpus renderer.

Two sources, both with exact ground truth:
* `render_bank`: fresh random identities (data_prep.synth.identity.sample_appearance) rendered with
  parameters drawn independently per column, so a model cannot lean on the corpus's correlations (smile
  with laugh, jaw with speech) and has to read each parameter from the pixels. Seeds make identities that
  never occur in any corpus, i.e. held-out identities by construction.
* `corpus_streams`: the frames, audio and params of a corpus split (identity-disjoint splits), read
  through data_prep.corpus.Corpus.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data_prep.schema import PARAM_COLUMNS, POSE_LIMITS
from data_prep.synth.identity import Appearance, sample_appearance
from data_prep.synth.render import FaceRenderer

BACKGROUND_FIELDS = ("bg_top", "bg_bottom", "bg_kind", "shirt")  # not part of who someone is


def sample_params(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 10) params in PARAM_COLUMNS order, each column independent and covering its whole range."""
    def sometimes(p_zero, values):  # many frames have the feature off, as in conversation
        return np.where(rng.random(n) < p_zero, 0.0, values)

    cols = {
        "jaw_open": sometimes(0.3, rng.uniform(0, 1, n)),
        "smile": sometimes(0.3, rng.uniform(0, 1, n)),
        "brow_raise": sometimes(0.4, rng.uniform(0, 1, n)),
        "blink": sometimes(0.5, rng.uniform(0, 1, n)),
        "gaze_x": np.clip(rng.normal(0, 0.4, n), -1, 1),
        "gaze_y": np.clip(rng.normal(0, 0.4, n), -1, 1),
        "laugh": sometimes(0.6, rng.uniform(0, 1, n)),
    }
    for name, lim in POSE_LIMITS.items():  # half near frontal (as in conversation), half anywhere in range
        cols[name] = np.where(rng.random(n) < 0.5, np.clip(rng.normal(0, lim / 3, n), -lim, lim),
                              rng.uniform(-lim, lim, n))
    return np.stack([cols[c] for c in PARAM_COLUMNS], 1).astype(np.float32)


def random_background(rng: np.random.Generator, look: Appearance) -> Appearance:
    """Same person, other background and shirt (so identity models must read the face)."""
    donor = sample_appearance(rng, "f")
    return dataclasses.replace(look, **{f: getattr(donor, f) for f in BACKGROUND_FIELDS})


def render_bank(n_identities: int, frames_per_identity: int, seed: int, size: int = 64,
                backgrounds_per_identity: int = 1, params=None) -> dict:
    """Render random identities with random params.

    Returns {"frames": (N, size, size, 3) uint8, "params": (N, 10) float32, "identity": (N,) int,
    "looks": [Appearance per identity], "description": str}; N = n_identities * frames_per_identity.
    `params` (N, 10) replaces the random ones (e.g. corpus motion on new faces). With
    `backgrounds_per_identity` > 1 each identity's frames are split over several random backgrounds/shirts.
    """
    rng = np.random.default_rng([seed, 7001])
    n = n_identities * frames_per_identity
    params = sample_params(rng, n) if params is None else np.asarray(params, np.float32)
    if params.shape != (n, len(PARAM_COLUMNS)):
        raise ValueError(f"params must be ({n}, {len(PARAM_COLUMNS)}); got {params.shape}")
    frames = np.empty((n, size, size, 3), np.uint8)
    looks = []
    for i in range(n_identities):
        look = sample_appearance(rng, "f" if rng.random() < 0.5 else "m")
        looks.append(look)
        rows = np.arange(i * frames_per_identity, (i + 1) * frames_per_identity)
        for part in np.array_split(rows, backgrounds_per_identity):
            shown = look if backgrounds_per_identity == 1 else random_background(rng, look)
            frames[part] = FaceRenderer(shown, size).render(params[part])
    return {"frames": frames, "params": params, "identity": np.repeat(np.arange(n_identities), frames_per_identity),
            "looks": looks, "description": f"{n_identities} random render identities x {frames_per_identity} "
                                           f"frames, seed {seed}, {size} px"}


def corpus_streams(corpus, split: str | None = None):
    """Yield dicts (conversation_id, person, identity, frames (T,S,S,3) uint8 memmap, audio (T*640,) float32,
    params (T, 10)) for every person of every conversation in `split` (all splits if None)."""
    conv = corpus.conversations if split is None else corpus.conversations[corpus.conversations.split == split]
    if conv.empty:
        raise ValueError(f"corpus {corpus.root} has no conversations in split {split!r}")
    for row in conv.itertuples():
        for person in ("A", "B"):
            s = corpus.stream(row.conversation_id, person)
            n = min(len(s["frames"]), len(s["params"]), len(s["audio"]) // 640)
            yield {"conversation_id": row.conversation_id, "person": person,
                   "identity": getattr(row, f"identity_{person}"), "frames": s["frames"][:n],
                   "audio": np.asarray(s["audio"][:n * 640], np.float32) / 32768.0,
                   "params": np.asarray(s["params"][:n], np.float32)}


def corpus_frames(corpus, split: str, every: int = 1, max_frames: int | None = None) -> dict:
    """Frames, params and identity labels of one split (every `every`-th frame) as in-memory arrays."""
    frames, params, ids = [], [], []
    for s in corpus_streams(corpus, split):
        frames.append(np.asarray(s["frames"][::every]))
        params.append(s["params"][::every])
        ids += [s["identity"]] * len(frames[-1])
    out = {"frames": np.concatenate(frames), "params": np.concatenate(params), "identity": np.array(ids)}
    if max_frames is not None and len(out["frames"]) > max_frames:
        keep = np.linspace(0, len(out["frames"]) - 1, max_frames).astype(int)
        out = {k: v[keep] for k, v in out.items()}
    out["description"] = f"corpus {corpus.root} split {split} ({len(set(ids))} identities, {len(out['frames'])} frames)"
    return out


def corpus_description(corpus) -> dict:
    """What a checkpoint records about the corpus it was trained on."""
    cfg = corpus.meta.get("config", {})
    return {"corpus": str(corpus.root), "seed": cfg.get("seed"), "hours": cfg.get("hours"),
            "size": corpus.meta.get("size"), "generator": corpus.meta.get("generator"),
            "n_identities": corpus.meta.get("n_identities")}
