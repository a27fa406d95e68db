"""Face parameters and lip activity for `data_prep.ingest`.

Params come from `eval.extractors.landmarks.LandmarkFaceParams` (dlib 68 landmarks, pose by solvePnP) run on
a 176 px face crop per frame, gaps up to 0.5 s interpolated (`interpolate_missing`). They are written in the
corpus's 10 columns: jaw_open <- mouth_open, smile <- smile_width, brow_raise <- brow_height,
blink <- eye_open (an eye *opening*, so it falls during a blink), yaw/pitch/roll <- head pose; gaze_x, gaze_y
and laugh are not measured and stay NaN. Units are the extractor's (inter-ocular distances), not the
synthetic corpus's [0, 1]: never mix the two in one metric.
"""
from __future__ import annotations

import numpy as np

from data_prep.schema import PARAM_COLUMNS

PARAMS_SOURCE = "dlib68-pnp-v1"
PARAM_CROP = 176  # face crops for the landmark extractor: the face is ~100 px, above dlib HOG's 80 px
MAPPING = {"jaw_open": "mouth_open", "smile": "smile_width", "brow_raise": "brow_height", "blink": "eye_open",
           "yaw": "yaw", "pitch": "pitch", "roll": "roll"}

_EXTRACTOR = {}


def landmark_extractor():
    """(LandmarkFaceParams or None, note). None when dlib / the landmark model is missing."""
    if "x" not in _EXTRACTOR:
        try:
            from eval.extractors.landmarks import LandmarkFaceParams

            _EXTRACTOR["x"] = (LandmarkFaceParams(upsample=0), None)
        except (ImportError, OSError, RuntimeError) as err:  # MissingPackageError is an ImportError
            _EXTRACTOR["x"] = (None, f"face parameters not extracted (params are NaN): {err}")
    return _EXTRACTOR["x"]


def to_corpus_params(raw: np.ndarray) -> tuple[np.ndarray, float]:
    """(T, 7) extractor output (NaN rows: no face) -> (T, 10) float32 in PARAM_COLUMNS order with gaps up to
    0.5 s interpolated, and the share of frames where a face was measured."""
    from eval.extractors.landmarks import LANDMARK_COLUMNS, interpolate_missing

    share = float(np.isfinite(raw).all(1).mean()) if len(raw) else 0.0
    out = np.full((len(raw), len(PARAM_COLUMNS)), np.nan, np.float32)
    if share == 0:
        return out, share
    filled = interpolate_missing(raw)
    for col, src in MAPPING.items():
        out[:, PARAM_COLUMNS.index(col)] = filled[:, LANDMARK_COLUMNS.index(src)]
    return out, share


def lip_activity(params: np.ndarray, start: int, end: int) -> float:
    """Variance of the mouth opening (jaw_open column) over frames [start, end); NaN frames ignored."""
    x = params[start:end, PARAM_COLUMNS.index("jaw_open")]
    x = x[np.isfinite(x)]
    return float(np.var(x)) if len(x) >= 2 else float("nan")


def assign_by_lips(segments, params: dict, fps: int) -> list:
    """Voiced segments [(start_s, end_s)] of one mixed track -> [(start_s, end_s, person or None)]: each goes
    to the person whose mouth moves more in it (None when neither face could be measured)."""
    out = []
    for a, b in segments:
        f0, f1 = int(a * fps), max(int(a * fps) + 2, int(np.ceil(b * fps)))
        act = {p: lip_activity(x, f0, f1) for p, x in params.items()}
        act = {p: v for p, v in act.items() if np.isfinite(v)}
        out.append((a, b, max(act, key=act.get) if act else None))
    return out


def split_mixed(mix: np.ndarray, assigned, sample_rate: int) -> dict:
    """Per-person tracks from one mixed track: each person keeps the samples of their segments, silence
    elsewhere (unassigned segments go to both, so no speech is dropped)."""
    out = {p: np.zeros_like(mix) for p in "AB"}
    for a, b, who in assigned:
        s, e = int(a * sample_rate), int(b * sample_rate)
        for p in ("AB" if who is None else who):
            out[p][s:e] = mix[s:e]
    return out
