"""Build a study: side-by-side pair videos (H.264 + AAC, muxed with PyAV) and the study manifest.

Inputs: one folder per system with `<set_id>.mp4` (the avatar, with its audio) and one user folder with
`<set_id>.mp4` (the user's video) and optionally `<set_id>.wav` (else the mp4's audio is used).
Each pair video shows the user on top and the two avatars below (left | right); the sound track is the
avatar's speech plus the user's, so reactions can be judged against what the user did and said.
Every pair is written in both orientations; which one a rater sees is decided by the per-rater
counterbalanced schedule (`design.rater_schedule`), so no video is re-encoded per rater.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from afcore.io import atomic_path, write_json
from eval.study.design import CRITERIA, StudyError, check_id, make_trials, system_pairs

SAMPLE_RATE = 16000  # the suite's audio rate; AAC encodes it fine and browsers play it
GAP = 8  # grey pixels between panels
BACKGROUND = 96
MANIFEST_SCHEMA = "afsuite.study-manifest/1"


def read_audio(path, rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """Mono float32 samples at `rate`, or None if the file has no audio stream."""
    with av.open(str(path)) as box:
        if not box.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        for frame in box.decode(box.streams.audio[0]):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def video_info(path) -> tuple[int, int, Fraction]:
    with av.open(str(path)) as box:
        if not box.streams.video:
            raise StudyError(f"{path}: no video stream; every clip must be an mp4 with video")
        stream = box.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height, Fraction(stream.average_rate or 25)


def frames_at(path, fps: Fraction, size: tuple[int, int]):
    """RGB frames of `path` resampled to `fps` (the latest frame at or before each output tick) and
    scaled to size (width, height); stops when the clip ends."""
    with av.open(str(path)) as box:
        stream = box.streams.video[0]
        frame_time = 1 / float(stream.average_rate or fps)
        decoded = (f for f in box.decode(stream))
        current, upcoming = next(decoded, None), next(decoded, None)
        if current is None:
            raise StudyError(f"{path}: the video has no frames")
        start = current.time or 0.0
        tick = 0
        while True:
            t = start + tick / float(fps)
            while upcoming is not None and (upcoming.time or 0.0) <= t + 1e-6:
                current, upcoming = upcoming, next(decoded, None)
            if upcoming is None and t >= (current.time or 0.0) + frame_time - 1e-6:
                return
            yield current.to_ndarray(width=size[0], height=size[1], format="rgb24")
            tick += 1


def compose_pair(left_clip, right_clip, user_clip, out_path, user_audio=None, avatar_audio_clip=None) -> dict:
    """Write one pair video: user on top (centred), left and right avatars below; sound = avatar audio
    (from `avatar_audio_clip`, default the left clip) + user audio (`user_audio` file, default the
    user clip's own track), peak-limited to 0.99. The length is that of the shortest video."""
    for clip in (user_clip, right_clip):
        video_info(clip)  # a clear error for a clip without video, before anything is written
    width, height, fps = video_info(left_clip)
    width, height = width - width % 2, height - height % 2  # yuv420p needs even sizes
    canvas_w, canvas_h = 2 * width + 3 * GAP, 2 * height + 3 * GAP
    sources = [frames_at(p, fps, (width, height)) for p in (user_clip, left_clip, right_clip)]
    spots = [((canvas_w - width) // 2, GAP), (GAP, 2 * GAP + height), (2 * GAP + width, 2 * GAP + height)]
    speech = [read_audio(avatar_audio_clip or left_clip), read_audio(user_audio or user_clip)]
    with (atomic_path(out_path) as tmp,
          av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as box):
        video = box.add_stream("libx264", rate=fps, options={"crf": "20", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = canvas_w, canvas_h, "yuv420p"
        audio = box.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        n_frames = 0
        canvas = np.full((canvas_h, canvas_w, 3), BACKGROUND, np.uint8)
        for panels in zip(*sources):
            for (x, y), panel in zip(spots, panels):
                canvas[y:y + height, x:x + width] = panel
            box.mux(video.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
            n_frames += 1
        box.mux(video.encode(None))
        n_samples = round(n_frames / fps * SAMPLE_RATE)
        mix = np.zeros(n_samples, np.float32)
        for track in speech:
            if track is not None:
                mix[:min(n_samples, len(track))] += track[:n_samples]
        mix *= min(1.0, 0.99 / max(float(np.abs(mix).max(initial=0.0)), 1e-9))
        for start in range(0, n_samples, 1024):  # AAC consumes 1024-sample frames
            frame = av.AudioFrame.from_ndarray(mix[None, start:start + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            box.mux(audio.encode(frame))
        box.mux(audio.encode(None))
    return {"frames": n_frames, "fps": str(fps), "width": canvas_w, "height": canvas_h}


def find_sets(system_dirs: dict, user_dir, sets=None) -> list[str]:
    """The set ids present for every system and the user; a set missing anywhere is an error."""
    folders = {**{f"system {k!r}": Path(v) for k, v in system_dirs.items()}, "user": Path(user_dir)}
    found = {}
    for name, folder in folders.items():
        if not folder.is_dir():
            raise StudyError(f"{folder}: folder of {name} not found")
        found[name] = {p.stem for p in folder.glob("*.mp4")}
    wanted = list(sets) if sets else sorted(set.union(*found.values()))
    missing = [f"{folders[name] / (s + '.mp4')}" for s in wanted for name in folders if s not in found[name]]
    if missing:
        raise StudyError("clips missing for some sets (each set needs a clip from every system and the user; "
                         "add them or choose sets with --sets):\n  " + "\n  ".join(missing))
    if not wanted:
        raise StudyError(f"no .mp4 clips found in {', '.join(map(str, folders.values()))}")
    return wanted


def build_study(system_dirs: dict, user_dir, out_dir, sets=None, practice_set: str | None = None,
                practice_note: str = "", criteria=None, seed: int = 0) -> Path:
    """Write `out_dir/pairs/*.mp4` and `out_dir/study.json`; returns the manifest path.

    The practice pair (default: the first set, first system pair) is shown before the study and its
    votes are not recorded; its set is left out of the rated trials because a rater who has seen it
    would no longer judge it fresh. `practice_note` is the reference answer shown with it.
    """
    systems = list(system_dirs)
    if len(systems) < 2:
        raise StudyError("a study needs clip folders of at least two systems")
    for name in systems:
        check_id(name, "system name")
    out_dir, user_dir = Path(out_dir), Path(user_dir)
    all_sets = find_sets(system_dirs, user_dir, sets)
    practice_set = practice_set or all_sets[0]
    rated = [s for s in all_sets if s != practice_set]
    if not rated:
        raise StudyError("no sets left to rate after setting one aside for practice; add clips")

    def clip(system, set_id):
        return Path(system_dirs[system]) / f"{set_id}.mp4"

    def render(set_id, left, right, name):
        wav = user_dir / f"{set_id}.wav"
        info = compose_pair(clip(left, set_id), clip(right, set_id), user_dir / f"{set_id}.mp4",
                            out_dir / "pairs" / name, user_audio=wav if wav.is_file() else None,
                            avatar_audio_clip=clip(systems[0], set_id))
        return f"pairs/{name}", info

    trials = []
    for trial in make_trials(rated, systems):
        a, b = trial["systems"]
        videos = {}
        for left, right in ((a, b), (b, a)):
            videos[left], info = render(trial["set_id"], left, right, f"{trial['set_id']}__{left}__{right}.mp4")
        trials.append({**trial, "videos": videos, "frames": info["frames"]})
    a, b = system_pairs(systems)[0]
    practice_video, info = render(practice_set, a, b, f"practice__{practice_set}.mp4")
    manifest = {
        "schema": MANIFEST_SCHEMA, "systems": systems, "sets": rated, "seed": seed,
        "criteria": [{"name": c, "question": CRITERIA.get(c, f"Which avatar is better on {c}?")}
                     for c in (criteria or CRITERIA)],  # a list: write_json sorts dict keys
        "trials": trials,
        "practice": {"set_id": practice_set, "systems": [a, b], "video": practice_video, "note": practice_note},
        "video": {"fps": info["fps"], "width": info["width"], "height": info["height"],
                  "sample_rate": SAMPLE_RATE, "codecs": "h264 + aac",
                  "layout": "user on top; left and right avatars below",
                  "avatar_audio_from": systems[0]},
    }
    return write_json(out_dir / "study.json", manifest)


def load_manifest(path) -> dict:
    """Read study.json and resolve its video paths against its folder."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: study manifest not found; build one with `afsuite study build`")
    manifest = json.loads(path.read_text())
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise StudyError(f"{path}: not a study manifest (schema {manifest.get('schema')!r}, "
                         f"expected {MANIFEST_SCHEMA!r})")
    manifest["root"] = str(path.parent.resolve())
    return manifest
