"""Voice activity detection on one person's track: silero-vad (model shipped in its wheel) or, when it
cannot be imported, a plain energy detector. Results are pyannote.core Annotations so they can be scored
against the corpus turns with pyannote.metrics."""
from __future__ import annotations

import numpy as np

from data_prep.schema import SAMPLE_RATE

_SILERO = {}


def silero_available() -> bool:
    try:
        import silero_vad  # noqa: F401
    except ImportError:
        return False
    return True


def _segments_to_annotation(segments, uri: str, label: str = "speech"):
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=uri)
    for i, (a, b) in enumerate(segments):
        ann[Segment(float(a), float(b)), i] = label
    return ann


def silero_segments(audio: np.ndarray, min_speech_ms: int = 120) -> list:
    """[(start_s, end_s)] from silero-vad. It runs on one thread (its tiny LSTM is 10-40x slower with two on
    a busy machine); importing silero also sets torch to one thread, so the caller's setting is restored."""
    import torch

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        from silero_vad import get_speech_timestamps, load_silero_vad

        if "model" not in _SILERO:
            _SILERO["model"] = load_silero_vad()
        with torch.no_grad():
            ts = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio, np.float32)), _SILERO["model"],
                                       sampling_rate=SAMPLE_RATE, min_speech_duration_ms=min_speech_ms,
                                       return_seconds=True)
        _SILERO["model"].reset_states()
    finally:
        torch.set_num_threads(threads)
    return [(t["start"], t["end"]) for t in ts]


def energy_segments(audio: np.ndarray, margin_db: float = 15.0, min_gap: float = 0.15, min_len: float = 0.08) -> list:
    """[(start_s, end_s)] where 10 ms RMS exceeds the track's noise floor (10th percentile) by margin_db."""
    from data_prep.synth.speech import frame_rms

    db = 20 * np.log10(frame_rms(audio, SAMPLE_RATE // 100) + 1e-9)
    on = db > np.percentile(db, 10) + margin_db
    idx = np.flatnonzero(np.diff(np.r_[0, on.astype(int), 0]))
    segs = []
    for a, b in zip(idx[::2] * 0.01, idx[1::2] * 0.01):
        if segs and a - segs[-1][1] < min_gap:
            segs[-1] = (segs[-1][0], b)
        else:
            segs.append((a, b))
    return [(a, b) for a, b in segs if b - a >= min_len]


def detect(audio: np.ndarray, uri: str = "track", backend: str = "auto"):
    """(Annotation, backend used). backend: "auto" (silero if importable), "silero" or "energy"."""
    if backend == "auto":
        backend = "silero" if silero_available() else "energy"
    if backend not in ("silero", "energy"):
        raise ValueError(f"VAD backend must be auto, silero or energy, got {backend!r}")
    segs = silero_segments(audio) if backend == "silero" else energy_segments(audio)
    return _segments_to_annotation(segs, uri), backend


def detection_error_rate(reference, hypothesis, duration: float) -> dict:
    """pyannote.metrics DetectionErrorRate over [0, duration] with its components (seconds)."""
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.detection import DetectionErrorRate

    metric = DetectionErrorRate(collar=0.0, skip_overlap=False)
    uem = Timeline([Segment(0, duration)])
    comp = metric.compute_components(reference, hypothesis, uem=uem)  # any label counts as speech
    rate = metric.compute_metric(comp)
    return {"detection_error_rate": float(rate), "miss_s": float(comp["miss"]),
            "false_alarm_s": float(comp["false alarm"]), "speech_s": float(comp["total"])}
