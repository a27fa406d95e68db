"""Decoding and face tracking for `data_prep.ingest`: every problem with one input file is raised as an
`IngestError` naming the file, so the batch can skip that conversation and list it in the curation report."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.schema import FPS, SAMPLE_RATE

MIN_FRAMES = 10  # one block of the model (0.4 s at 25 fps): shorter clips cannot be used
DETECT_WIDTH = 640  # frames (or frame halves) are downscaled to at most this width for face detection
SECOND_FACE_AREA = 0.4  # a second face at least this fraction of the largest one's area counts as a person
MIN_HOG_SCORE = 0.25  # dlib HOG detections below this score are mostly texture (real faces score ~1-2)
SECOND_FACE_SHARE = 0.5  # ... and in at least this share of the detection frames: "two faces" error


class IngestError(ValueError):
    """One input file (or conversation) cannot be ingested; the message names the file and what to do."""


def _av_error():
    import av

    return av.error.FFmpegError if hasattr(av, "error") else Exception


def read_audio(path: Path) -> tuple[np.ndarray, list[str]]:
    """(C, N) float32 at 16 kHz (C = the file's channels, at most 2) and notes on what was converted."""
    import av

    try:
        with av.open(str(path)) as box:
            if not box.streams.audio:
                raise IngestError(f"{path}: no audio stream; the corpus needs each person's voice - add the "
                                  f"sound track, or put pre-separated <conv>_A.wav / <conv>_B.wav beside it")
            stream = box.streams.audio[0]
            channels, rate = stream.codec_context.channels, stream.codec_context.sample_rate
            layout = "stereo" if channels >= 2 else "mono"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
            chunks = [r.to_ndarray() for f in box.decode(stream) for r in resampler.resample(f)]
            chunks += [r.to_ndarray() for r in resampler.resample(None)]
    except _av_error() as err:
        raise IngestError(f"{path}: cannot decode the audio ({err}); the file is corrupt or truncated - "
                          f"re-export it or remove it from --src") from err
    chunks = [c for c in chunks if c.size]
    if not chunks:
        raise IngestError(f"{path}: the audio stream holds no samples; re-export the file with its sound")
    notes = []
    if rate != SAMPLE_RATE:
        notes.append(f"{Path(path).name}: audio resampled {rate} Hz -> {SAMPLE_RATE} Hz")
    if channels > 2:
        notes.append(f"{Path(path).name}: {channels} audio channels downmixed to stereo")
    return np.concatenate(chunks, axis=1).astype(np.float32), notes


def read_wav(path: Path) -> tuple[np.ndarray, list[str]]:
    """A pre-separated voice track (<conv>_A.wav): mono float32 at 16 kHz and conversion notes."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    try:
        rate, x = wavfile.read(path)
    except (ValueError, OSError) as err:
        raise IngestError(f"{path}: cannot read this wav ({err}); re-export it as PCM wav") from err
    x = x.astype(np.float32) / (32768.0 if x.dtype == np.int16 else 1.0)
    notes = []
    if x.ndim == 2:
        x, notes = x.mean(1), [f"{Path(path).name}: {x.shape[1]} channels downmixed to mono"]
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, rate // g).astype(np.float32)
        notes.append(f"{Path(path).name}: resampled {rate} Hz -> {SAMPLE_RATE} Hz")
    return x, notes


def iter_frames(path: Path, rgb: bool = True):
    """RGB frames resampled to 25 fps (the latest decoded frame at each 1/25 s tick); rgb=False yields the
    decoded av.VideoFrame objects instead (convert with .to_ndarray(format="rgb24") only the ones you need)."""
    import av

    try:
        with av.open(str(path)) as box:
            if not box.streams.video:
                raise IngestError(f"{path}: no video stream; the corpus needs each person's face")
            stream, k, last = box.streams.video[0], 0, None
            for frame in box.decode(stream):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else k / FPS
                img = frame.to_ndarray(format="rgb24") if rgb else frame
                while k / FPS < t - 0.5 / FPS and last is not None:  # fill ticks before this frame
                    yield last
                    k += 1
                if k / FPS <= t + 0.5 / FPS:
                    yield img
                    k += 1
                last = img
    except _av_error() as err:
        raise IngestError(f"{path}: cannot decode the video ({err}); the file is corrupt or truncated - "
                          f"re-export it or remove it from --src") from err


def halves(img, layout):
    return {"A": img} if layout == "pair" else {"A": img[:, : img.shape[1] // 2], "B": img[:, img.shape[1] // 2:]}


class FaceDetector:
    """Faces as [(cx, cy, side)] sorted by size, largest first: dlib's HOG detector when dlib is installed,
    else the LBP frontal-face cascade that ships with scikit-image."""

    def __init__(self, backend: str = "auto"):
        self.backend = backend
        if backend in ("auto", "dlib"):
            try:
                import dlib

                self._dlib, self.backend = dlib.get_frontal_face_detector(), "dlib-hog"
            except ImportError:
                if backend == "dlib":
                    raise
                self.backend = "skimage-lbp"
        if self.backend == "skimage-lbp":
            from skimage import data
            from skimage.feature import Cascade

            self._cascade = Cascade(data.lbp_frontal_face_cascade_filename())

    def __call__(self, rgb: np.ndarray) -> list:
        from skimage.transform import rescale

        s = min(1.0, DETECT_WIDTH / rgb.shape[1])
        if self.backend == "dlib-hog":
            img = rgb if s == 1 else (rescale(rgb, s, channel_axis=2) * 255).astype(np.uint8)
            rects, scores, _ = self._dlib.run(np.ascontiguousarray(img), 1, 0.0)
            faces = [((r.left() + r.right()) / 2 / s, (r.top() + r.bottom()) / 2 / s, r.width() / s)
                     for r, score in zip(rects, scores) if score >= MIN_HOG_SCORE]
        else:
            from skimage.color import rgb2gray

            gray = rgb2gray(rgb)
            dets = self._cascade.detect_multi_scale(img=rescale(gray, s) if s < 1 else gray, scale_factor=1.2,
                                                    step_ratio=1, min_size=(24, 24), max_size=(400, 400))
            faces = [((d["c"] + d["width"] / 2) / s, (d["r"] + d["height"] / 2) / s, d["width"] / s) for d in dets]
            faces = _merge_overlapping(faces)
        return sorted(faces, key=lambda f: -f[2])


def _merge_overlapping(faces):
    """The cascade reports several boxes per face: keep the largest of each overlapping group."""
    kept = []
    for f in sorted(faces, key=lambda f: -f[2]):
        if all(abs(f[0] - k[0]) > k[2] / 2 or abs(f[1] - k[1]) > k[2] / 2 for k in kept):
            kept.append(f)
    return kept


SCENE_THUMB = 64  # frames (halves) are scaled by FFmpeg to this width for scene-cut detection


def _thumb_size(frame, n_parts: int) -> tuple[int, int]:
    w = SCENE_THUMB * n_parts
    return w, max(2, int(round(frame.height * w / frame.width / 2)) * 2)


def track_face(path: Path, layout: str, detect_every: int, detector: FaceDetector,
               scenes=None) -> tuple[dict, int, list, list]:
    """Pass 1: person -> (T, 3) smoothed square box (centre x, centre y, side) in that person's frame (half),
    the number of 25 fps frames, notes and the scene cuts [data_prep.scenes.Cut] (`scenes`: a SceneConfig, or
    None for no cut detection). Boxes are interpolated and smoothed within each shot only, so the track
    restarts after a cut; a shot where no face was detected at the sampled frames is probed at three more
    frames, and its boxes stay NaN when that fails too. Raises IngestError: too short, no face, two faces."""
    from data_prep.scenes import SceneCutDetector, shot_bounds

    found, shape, n_det, two = {}, {}, 0, {}
    cut_detectors, size = {}, None
    n = -1
    for n, frame in enumerate(iter_frames(path, rgb=False)):
        if scenes is not None:
            parts = 1 if layout == "pair" else 2
            size = size or _thumb_size(frame, parts)
            thumb = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_ndarray()
            for p, part in halves(thumb, layout).items():
                cut_detectors.setdefault(p, SceneCutDetector(scenes)).update(part)
        if n % detect_every:
            continue
        n_det += 1
        img = frame.to_ndarray(format="rgb24")
        for p, part in halves(img, layout).items():
            shape[p] = part.shape[:2]
            faces = detector(part)
            if faces:
                found.setdefault(p, []).append((n,) + faces[0])
                if len(faces) > 1 and faces[1][2] ** 2 >= SECOND_FACE_AREA * faces[0][2] ** 2:
                    two[p] = two.get(p, 0) + 1
    T = n + 1
    where = lambda p: "" if layout == "pair" else f" ({'left' if p == 'A' else 'right'} half, person {p})"
    if T < MIN_FRAMES:
        raise IngestError(f"{path}: only {T} frames at {FPS} fps, shorter than one block of {MIN_FRAMES} frames "
                          f"({MIN_FRAMES / FPS:.1f} s); drop it or join it to a longer recording")
    cuts = {}  # a cut in either half of a side-by-side frame splits both (the higher score is kept)
    for det in cut_detectors.values():
        for c in det.cuts():
            if c.frame not in cuts or c.score > cuts[c.frame].score:
                cuts[c.frame] = c
    cuts = [c for _, c in sorted(cuts.items())]
    shots = shot_bounds([c.frame for c in cuts], T)
    notes = []
    for p in sorted(shape):
        if p not in found:
            raise IngestError(f"{path}{where(p)}: no face found by the {detector.backend} detector in "
                              f"{n_det} sampled frames; check the layout (pair / side-by-side) or remove the file")
        if two.get(p, 0) >= SECOND_FACE_SHARE * n_det:
            raise IngestError(f"{path}{where(p)}: two faces where one is expected (in {two[p]} of {n_det} sampled "
                              f"frames); use --layout side-by-side for split-screen files, or crop to one person")
        share = len(found[p]) / n_det
        if share < 0.5:
            notes.append(f"{Path(path).name}{where(p)}: a face in only {share:.0%} of sampled frames (box interpolated)")
    # shots long enough to keep but without a face at the sampled frames (short shots, sparse --detect-every)
    probe = {}
    for a, b in shots:
        for p in found:
            if b - a >= MIN_FRAMES and not any(a <= f[0] < b for f in found[p]):
                for k in {a + (b - a) * i // 4 for i in (1, 2, 3)}:
                    probe.setdefault(k, []).append(p)
    if probe:
        for k, frame in enumerate(iter_frames(path, rgb=False)):
            if k > max(probe):
                break
            if k in probe:
                parts = halves(frame.to_ndarray(format="rgb24"), layout)
                for p in probe[k]:
                    faces = detector(parts[p])
                    if faces:
                        found[p].append((k,) + faces[0])
    boxes = {}
    kernel = np.ones(13) / 13  # ~0.5 s moving average against detector jitter
    for p, f in found.items():
        f = np.array(sorted(f))
        box = np.full((T, 3), np.nan)
        for a, b in shots:  # interpolate and smooth within each shot: the track restarts after a cut
            g = f[(f[:, 0] >= a) & (f[:, 0] < b)]
            if len(g):
                raw = np.stack([np.interp(np.arange(a, b), g[:, 0], g[:, k]) for k in (1, 2, 3)], 1)
                box[a:b] = np.stack([np.convolve(np.pad(raw[:, k], 6, mode="edge"), kernel, "valid") for k in range(3)], 1)
        boxes[p] = box
    return boxes, T, notes, cuts


def crop(img: np.ndarray, box, pad_ratio: float, size: int) -> np.ndarray:
    """A padded square around `box`, resized to size x size; black when the box is NaN (no face in that shot)."""
    from PIL import Image

    if not np.isfinite(box).all():
        return np.zeros((size, size, 3), np.uint8)
    cx, cy, side = box
    half = side * (1 + pad_ratio) / 2
    a = Image.fromarray(img).crop((int(cx - half), int(cy - half * 1.05), int(cx + half), int(cy + half * 0.95)))
    return np.asarray(a.resize((size, size), Image.BILINEAR))
