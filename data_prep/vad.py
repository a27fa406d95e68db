"""Voice activity detection on one person's track: silero-vad (model shipped in its wheel) or, when it
cannot be imported, a plain energy detector; optionally pyannote.audio's VoiceActivityDetection pipeline on
a segmentation model the user placed locally (nothing is downloaded). Results are pyannote.core Annotations
so they can be scored against the corpus turns with pyannote.metrics."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.schema import SAMPLE_RATE

BACKENDS = ("auto", "silero", "energy", "pyannote")
# hysteresis thresholds on the speech probability and the shortest speech / gap kept (seconds): generic
# values, since a local checkpoint comes without its tuned ones (set them here, or pass params= for one call)
PYANNOTE_PARAMS = dict(onset=0.5, offset=0.4, min_duration_on=0.1, min_duration_off=0.1)
_SILERO, _PYANNOTE = {}, {}


def silero_available() -> bool:
    try:
        import silero_vad  # noqa: F401
    except ImportError:
        return False
    return True


def segments_to_annotation(segments, uri: str, label: str = "speech"):
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


def pyannote_checkpoint(path) -> Path:
    """The checkpoint file behind `path` (a pytorch_model.bin, or a folder holding one), checked to exist."""
    path = Path(path).expanduser().resolve()
    file = path / "pytorch_model.bin" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"pyannote segmentation model {file} not found: put a pyannote.audio checkpoint there (a "
            f"pytorch_model.bin or its folder, e.g. copied from a machine that has pyannote/segmentation); "
            f"nothing is downloaded. Or use --vad silero / energy")
    return file


def pyannote_pipeline(model_path, params: dict | None = None):
    """pyannote.audio VoiceActivityDetection on the local checkpoint `model_path`, instantiated with
    PYANNOTE_PARAMS updated by `params`; cached per (file, params) since loading costs far more than a track."""
    file = pyannote_checkpoint(model_path)
    params = dict(PYANNOTE_PARAMS, **(params or {}))
    key = (str(file), tuple(sorted(params.items())))
    if key in _PYANNOTE:
        return _PYANNOTE[key]
    try:
        from pyannote.audio import Model
        from pyannote.audio.pipelines.voice_activity_detection import VoiceActivityDetection
        from pyannote.audio.telemetry import set_telemetry_metrics
    except ImportError as err:
        raise ImportError(f"the pyannote VAD backend needs pyannote.audio ({err}): pip install pyannote.audio, "
                          f"or use --vad silero / energy") from err
    set_telemetry_metrics(False)  # on by default, it would post usage reports to pyannote's server
    try:
        # an existing local file never reaches the Hugging Face hub; strict=False as pyannote's own get_model:
        # released checkpoints may carry training-only weights (e.g. a loss's)
        model = Model.from_pretrained(str(file), map_location="cpu", strict=False)
        frame_level = all(s.resolution.name == "FRAME" for s in model.specifications)
    except Exception as err:  # torch, lightning and pyannote each fail their own way on a wrong file
        raise ValueError(f"{file} is not a pyannote.audio model checkpoint ({type(err).__name__}: {err}); "
                         f"give the pytorch_model.bin of a segmentation model saved by pyannote.audio") from err
    if not frame_level:
        raise ValueError(f"{file} holds a {type(model).__name__}, not a frame-level segmentation model: VAD "
                         f"needs one like pyannote/segmentation")
    pipe = VoiceActivityDetection(segmentation=model)
    if model.specifications.powerset:  # powerset models binarise at a fixed 0.5: no onset/offset to tune
        params = {k: v for k, v in params.items() if k not in ("onset", "offset")}
    _PYANNOTE[key] = pipe.instantiate(params)
    return _PYANNOTE[key]


def pyannote_segments(audio: np.ndarray, model_path, params: dict | None = None) -> list:
    """[(start_s, end_s)] from pyannote.audio's VoiceActivityDetection on a 16 kHz mono track held in memory."""
    import torch
    from pyannote.core import Segment

    if not len(audio):  # pyannote reads a (1, 0) waveform as (time, channel) and rejects it
        return []
    wav = torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None]  # (1, T)
    speech = pyannote_pipeline(model_path, params)({"waveform": wav, "sample_rate": SAMPLE_RATE, "uri": "track"})
    # a track shorter than the model's window is zero-padded to it: keep only what lies inside the track
    return [(s.start, s.end) for s in speech.get_timeline().support().crop(Segment(0, len(audio) / SAMPLE_RATE))]


def resolve_backend(backend: str) -> str:
    """The backend `detect` will use: "auto" is silero when importable, else energy; unknown names are refused."""
    if backend not in BACKENDS:
        raise ValueError(f"VAD backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return ("silero" if silero_available() else "energy") if backend == "auto" else backend


def detect(audio: np.ndarray, uri: str = "track", backend: str = "auto", pyannote_model=None):
    """(Annotation, backend used). backend: "auto" (silero if importable), "silero", "energy" or "pyannote"
    (needs `pyannote_model`, the path of a local pyannote.audio segmentation checkpoint)."""
    backend = resolve_backend(backend)
    if backend == "pyannote":
        if pyannote_model is None:
            raise ValueError("the pyannote VAD backend needs pyannote_model= (--pyannote-model PATH), the path of "
                             "a local pyannote.audio segmentation checkpoint")
        segs = pyannote_segments(audio, pyannote_model)
    else:
        segs = silero_segments(audio) if backend == "silero" else energy_segments(audio)
    return segments_to_annotation(segs, uri), backend


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
