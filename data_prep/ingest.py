"""Ingest a folder of real dyadic conversation videos into the corpus layout that `Corpus` reads.

Status (first version): decoding to 25 fps + 16 kHz, face tracking with the LBP frontal-face cascade that
ships with scikit-image, square crops resized to `size`, per-person VAD turns (silero-vad), clips, splits,
manifest, RTTM, mp4 previews. NOT done: speech separation of a mixed track (the paper uses IIANet), 3DMM
face parameters (params are written as NaN until a face-parameter extractor fills them), identity
matching across conversations (an optional identities.csv gives it).

Input layouts (`--layout auto` picks per conversation):
  pair:          <conv>_A.<ext> and <conv>_B.<ext>, one face and its own (separated) voice per file
  side-by-side:  <conv>.<ext> with person A in the left half and B in the right half; a stereo track is
                 taken as one channel per person, a mono track is used for both (and recorded as mixed)
Optional <src>/identities.csv with columns conversation_id, person, identity keeps splits identity-disjoint.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import wavfile
from tqdm.auto import tqdm

from data_prep.media import write_mp4
from data_prep.schema import (
    EXPRESSION_COLUMNS,
    FPS,
    PARAM_COLUMNS,
    POSE_COLUMNS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SPLITS,
)

VIDEO_EXT = (".mp4", ".mkv", ".mov", ".avi", ".webm")
DETECT_WIDTH = 320  # frames are downscaled to this width for face detection


@dataclass(frozen=True)
class IngestConfig:
    size: int = 64
    layout: str = "auto"  # "auto" | "pair" | "side-by-side"
    detect_every: int = 5  # run the face detector every n frames, interpolate between
    pad_ratio: float = 0.8  # crop side = face box side * (1 + pad_ratio)
    clip_seconds: float = 15.0
    split_fractions: tuple = (0.8, 0.1, 0.1)
    seed: int = 0
    vad: str = "auto"
    mp4: bool = True

    def validate(self) -> IngestConfig:
        if not (32 <= self.size <= 1024) or self.size % 2:
            raise ValueError(f"--size must be an even number of pixels in [32, 1024], got {self.size}")
        if self.layout not in ("auto", "pair", "side-by-side"):
            raise ValueError(f"--layout must be auto, pair or side-by-side, got {self.layout!r}")
        if self.detect_every < 1:
            raise ValueError(f"--detect-every must be >= 1, got {self.detect_every}")
        return self


def discover(src: Path, layout: str = "auto") -> list[dict]:
    """[{conversation_id, layout, files: {"A": path, "B": path} or {"AB": path}}] sorted by id."""
    if not Path(src).is_dir():
        raise FileNotFoundError(f"{src} is not a folder: point --src at a folder of conversation videos")
    videos = sorted(p for p in Path(src).iterdir() if p.suffix.lower() in VIDEO_EXT)
    if not videos:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXT)}) in {src}")
    by_stem = {p.stem: p for p in videos}
    convs, used = [], set()
    for stem, path in by_stem.items():
        base = stem[:-2]
        if layout != "side-by-side" and stem.endswith("_A") and f"{base}_B" in by_stem:
            convs.append(dict(conversation_id=base, layout="pair", files={"A": path, "B": by_stem[f"{base}_B"]}))
            used |= {stem, f"{base}_B"}
    for stem, path in by_stem.items():
        if stem not in used:
            if layout == "pair":
                raise ValueError(f"{path}: --layout pair needs <conv>_A / <conv>_B files, this one has no partner")
            convs.append(dict(conversation_id=stem, layout="side-by-side", files={"AB": path}))
    return sorted(convs, key=lambda c: c["conversation_id"])


def read_audio(path: Path) -> np.ndarray:
    """(C, N) float32 at 16 kHz (C = the file's channels, at most 2)."""
    import av

    with av.open(str(path)) as box:
        if not box.streams.audio:
            raise ValueError(f"{path} has no audio track: the corpus needs each person's voice")
        stream = box.streams.audio[0]
        layout = "stereo" if stream.codec_context.channels >= 2 else "mono"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
        chunks = [r.to_ndarray() for f in box.decode(stream) for r in resampler.resample(f)]
        chunks += [r.to_ndarray() for r in resampler.resample(None)]
    return np.concatenate(chunks, axis=1).astype(np.float32)  # (C, N), planar float


def iter_frames(path: Path):
    """RGB frames resampled to 25 fps (the latest decoded frame at each 1/25 s tick)."""
    import av

    with av.open(str(path)) as box:
        stream, k, last = box.streams.video[0], 0, None
        for frame in box.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else k / FPS
            img = frame.to_ndarray(format="rgb24")
            while k / FPS < t - 0.5 / FPS and last is not None:  # fill ticks before this frame
                yield last
                k += 1
            if k / FPS <= t + 0.5 / FPS:
                yield img
                k += 1
            last = img


def _halves(img, layout):
    return {"A": img} if layout == "pair" else {"A": img[:, : img.shape[1] // 2], "B": img[:, img.shape[1] // 2:]}


def track_face(path: Path, layout: str, detect_every: int) -> dict:
    """Pass 1: person -> (T, 3) smoothed square box (centre x, centre y, side) in that person's frame half."""
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.feature import Cascade
    from skimage.transform import rescale

    detector = Cascade(data.lbp_frontal_face_cascade_filename())
    found, n, shape = {}, 0, {}
    for n, img in enumerate(iter_frames(path)):
        if n % detect_every:
            continue
        for p, part in _halves(img, layout).items():
            shape[p] = part.shape[:2]
            s = min(1.0, DETECT_WIDTH / part.shape[1])
            gray = rgb2gray(part)
            dets = detector.detect_multi_scale(img=rescale(gray, s) if s < 1 else gray, scale_factor=1.2, step_ratio=1,
                                               min_size=(24, 24), max_size=(400, 400))
            if dets:
                d = max(dets, key=lambda d: d["width"] * d["height"])
                found.setdefault(p, []).append((n, (d["c"] + d["width"] / 2) / s, (d["r"] + d["height"] / 2) / s, d["width"] / s))
    T, boxes = n + 1, {}
    for p, (h, w) in shape.items():
        if p not in found:  # no face at all: a centred square
            boxes[p] = np.tile([w / 2, h / 2, min(h, w) / (1 + 0.8)], (T, 1))
            continue
        f = np.array(found[p])
        box = np.stack([np.interp(np.arange(T), f[:, 0], f[:, k]) for k in (1, 2, 3)], 1)
        kernel = np.ones(13) / 13  # ~0.5 s moving average against detector jitter
        boxes[p] = np.stack([np.convolve(np.pad(box[:, k], 6, mode="edge"), kernel, "valid") for k in range(3)], 1)
    return boxes, T


def crop(img: np.ndarray, box, pad_ratio: float, size: int) -> np.ndarray:
    from PIL import Image

    cx, cy, side = box
    half = side * (1 + pad_ratio) / 2
    a = Image.fromarray(img).crop((int(cx - half), int(cy - half * 1.05), int(cx + half), int(cy + half * 0.95)))
    return np.asarray(a.resize((size, size), Image.BILINEAR))


def ingest_conversation(conv: dict, tmp: Path, cfg: IngestConfig, vad_backend: str) -> dict:
    from data_prep import vad

    cid, layout = conv["conversation_id"], conv["layout"]
    sources = conv["files"] if layout == "pair" else {"A": conv["files"]["AB"], "B": conv["files"]["AB"]}
    tracks, audio_note = {}, "separated (one file per person)"
    for p in ("A", "B"):
        if layout == "pair" or p == "A":
            boxes, T = track_face(sources[p], layout, cfg.detect_every)
            frames = np.lib.format.open_memmap(tmp / f"frames/{cid}_{p}.npy", "w+", np.uint8, (T, cfg.size, cfg.size, 3))
            other = np.lib.format.open_memmap(tmp / f"frames/{cid}_B.npy", "w+", np.uint8, (T, cfg.size, cfg.size, 3)) \
                if layout == "side-by-side" else None
            for k, img in enumerate(iter_frames(sources[p])):  # pass 2: crop
                if k >= T:
                    break
                halves = _halves(img, layout)
                frames[k] = crop(halves["A"], boxes["A"][k], cfg.pad_ratio, cfg.size)
                if other is not None:
                    other[k] = crop(halves["B"], boxes["B"][k], cfg.pad_ratio, cfg.size)
            tracks[p] = T
            if other is not None:
                tracks["B"] = T
            audio = read_audio(sources[p])
            if layout == "side-by-side":
                if audio.shape[0] == 1:
                    audio_note = "mixed mono track used for both persons (not separated)"
                per = {"A": audio[0], "B": audio[min(1, audio.shape[0] - 1)]}
                if audio.shape[0] == 2:
                    audio_note = "stereo: left channel = A, right channel = B"
            else:
                per = {p: audio.mean(0)}
            for q, x in per.items():
                wavfile.write(tmp / f"audio/{cid}_{q}.wav", SAMPLE_RATE, (np.clip(x, -1, 1) * 32767).astype(np.int16))
    T = min(tracks.values())
    rows = {"clips": [], "segments": []}
    n_clips = max(1, int(round(T / (cfg.clip_seconds * FPS))))
    bounds = [T * k // n_clips for k in range(n_clips + 1)]
    for p in ("A", "B"):
        np.save(tmp / f"params/{cid}_{p}.npy", np.full((T, len(PARAM_COLUMNS)), np.nan, np.float32))
        _, x = wavfile.read(tmp / f"audio/{cid}_{p}.wav")
        x = np.pad(x[: T * SAMPLES_PER_FRAME], (0, max(0, T * SAMPLES_PER_FRAME - len(x))))
        wavfile.write(tmp / f"audio/{cid}_{p}.wav", SAMPLE_RATE, x)
        hyp, _ = vad.detect(x.astype(np.float32) / 32768.0, f"{cid}_{p}", vad_backend)
        rows["segments"] += [dict(conversation_id=cid, person=p, identity=f"{cid}_{p}", kind="speech",
                                  start=s.start, end=s.end) for s in hyp.get_timeline()]
        paths = {"frames_path": f"frames/{cid}_{p}.npy", "params_path": f"params/{cid}_{p}.npy",
                 "audio_path": f"audio/{cid}_{p}.wav"}
        for k in range(n_clips):
            rows["clips"].append(dict(clip_id=f"{cid}_c{k:02d}", conversation_id=cid, person=p, partner="B" if p == "A" else "A",
                                      start_frame=bounds[k], n_frames=bounds[k + 1] - bounds[k], start_s=bounds[k] / FPS,
                                      duration_s=(bounds[k + 1] - bounds[k]) / FPS, **paths))
    if cfg.mp4:
        both = np.concatenate([np.load(tmp / f"frames/{cid}_{p}.npy", mmap_mode="r")[:T] for p in "AB"], axis=2)
        mix = sum(wavfile.read(tmp / f"audio/{cid}_{p}.wav")[1].astype(np.float32) / 32768.0 for p in "AB") / 2
        write_mp4(tmp / f"video/{cid}.mp4", both, mix, FPS, SAMPLE_RATE)
    rows["conversation"] = dict(conversation_id=cid, duration=T / FPS, n_frames=T, n_clips=n_clips, layout=layout,
                                audio=audio_note, video_path=f"video/{cid}.mp4" if cfg.mp4 else None,
                                rttm_A=f"rttm/{cid}_A.rttm", rttm_B=f"rttm/{cid}_B.rttm",
                                source=";".join(str(s) for s in conv["files"].values()))
    return rows


def ingest(src, out, cfg: IngestConfig = IngestConfig(), overwrite: bool = False, progress: bool = True) -> Path:
    """Ingest every conversation under `src` into `out` (atomically, like the synthetic builder)."""
    from data_prep.synth.build import _write_rttm
    from data_prep.vad import silero_available

    cfg, src, out = cfg.validate(), Path(src), Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists: pass --overwrite or choose another --out")
    convs = discover(src, cfg.layout)
    vad_backend = cfg.vad if cfg.vad != "auto" else ("silero" if silero_available() else "energy")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        for sub in ("frames", "params", "audio", "rttm", "video"):
            (tmp / sub).mkdir(parents=True)
        results = [ingest_conversation(c, tmp, cfg, vad_backend) for c in tqdm(convs, desc="ingest", disable=not progress)]
        conversations = pd.DataFrame([r["conversation"] for r in results])
        manifest, segments = (pd.DataFrame([x for r in results for x in r[k]]) for k in ("clips", "segments"))
        ident_file = src / "identities.csv"
        ident = pd.read_csv(ident_file) if ident_file.exists() else pd.DataFrame(
            [dict(conversation_id=c, person=p, identity=f"{c}_{p}") for c in conversations.conversation_id for p in "AB"])
        manifest = manifest.merge(ident, on=["conversation_id", "person"], how="left")
        manifest["identity"] = manifest.identity.fillna(manifest.conversation_id + "_" + manifest.person)
        partner = manifest[["clip_id", "person", "identity"]].rename(columns={"person": "partner", "identity": "partner_identity"})
        manifest = manifest.merge(partner, on=["clip_id", "partner"])
        conversations["split"] = _identity_disjoint_splits(manifest, cfg)
        manifest = manifest.merge(conversations[["conversation_id", "split"]], on="conversation_id")
        manifest = manifest.assign(seed=cfg.seed, voice_backend="real", size=cfg.size).sort_values(["clip_id", "person"])
        for name, df in (("manifest", manifest), ("conversations", conversations), ("segments", segments)):
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        for c in conversations.conversation_id:
            for p in "AB":
                _write_rttm(tmp / f"rttm/{c}_{p}.rttm", f"{c}_{p}", segments[(segments.conversation_id == c) & (segments.person == p)])
        meta = dict(format_version=1, generator="data_prep.ingest", source=str(src), config=asdict(cfg), fps=FPS,
                    sample_rate=SAMPLE_RATE, samples_per_frame=SAMPLES_PER_FRAME, size=cfg.size, voice_backend="real",
                    voice_backend_description="recorded speech", vad_backend=vad_backend, params_source=None,
                    param_columns=list(PARAM_COLUMNS), expression_columns=list(EXPRESSION_COLUMNS),
                    pose_columns=list(POSE_COLUMNS), n_conversations=len(conversations),
                    n_clips=int(manifest.clip_id.nunique()), n_identities=int(manifest.identity.nunique()))
        (tmp / "corpus.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _identity_disjoint_splits(manifest: pd.DataFrame, cfg: IngestConfig) -> list[str]:
    """Conversations grouped by shared identities (connected components) go to one split together."""
    convs = sorted(manifest.conversation_id.unique())
    parent = {c: c for c in convs}

    def root(c):
        while parent[c] != c:
            c = parent[c]
        return c
    for _, g in manifest.groupby("identity"):
        cs = sorted(g.conversation_id.unique())
        for c in cs[1:]:
            parent[root(c)] = root(cs[0])
    groups = sorted({root(c) for c in convs})
    order = np.random.default_rng(cfg.seed).permutation(len(groups))
    n_val = int(round(cfg.split_fractions[1] * len(groups))) if len(groups) >= 3 else 0
    n_test = int(round(cfg.split_fractions[2] * len(groups))) if len(groups) >= 3 else 0
    n_val, n_test = (max(1, n_val), max(1, n_test)) if len(groups) >= 3 else (0, 0)
    split_of_group = {groups[i]: ("val" if j < n_val else "test" if j < n_val + n_test else "train") for j, i in enumerate(order)}
    assert set(split_of_group.values()) <= set(SPLITS)
    return [split_of_group[root(c)] for c in convs]  # in the (sorted) order of the conversations table
