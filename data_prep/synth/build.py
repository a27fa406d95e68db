"""Build the synthetic corpus: identities -> speech banks -> conversations (plan, realise, render) -> files.

Everything is written into a hidden temporary folder beside `out` and renamed onto `out` at the very end,
so a failed or interrupted build leaves nothing half-written. Each conversation is a pure function of
(seed, its index), so the arrays do not depend on the number of workers.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
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
from data_prep.synth import speech
from data_prep.synth.behaviour import REACTION_RULES, plan_conversation
from data_prep.synth.identity import sample_identity
from data_prep.synth.motion import realise
from data_prep.synth.render import FaceRenderer

FORMAT_VERSION = 1
RENDER_CHUNK = 250  # frames rendered at once (bounds memory at large sizes)


@dataclass(frozen=True)
class SynthConfig:
    hours: float = 1.0  # conversation time (each conversation has two people, so 2x person-video)
    seed: int = 0
    size: int = 64  # stored frame size in pixels (square)
    workers: int = 2
    voice: str = "auto"  # "auto" | "espeak" | "formant"
    conversation_seconds: tuple = (45.0, 75.0)
    clip_seconds: float = 15.0
    split_fractions: tuple = (0.8, 0.1, 0.1)
    mp4: bool = True
    reactivity: float | None = None  # None: drawn per identity, Beta(2.5, 2); 0..1: everyone's (e.g. 1.0 for the demo)

    def validate(self) -> SynthConfig:
        if not (self.hours * 3600 >= 12.0):
            raise ValueError(f"--hours must give at least 12 s of conversation (3 conversations of 4 s), got {self.hours}")
        if self.hours > 200:
            raise ValueError(f"--hours {self.hours} is beyond what this generator is meant for (<= 200)")
        if not (32 <= self.size <= 1024) or self.size % 2:
            raise ValueError(f"--size must be an even number of pixels in [32, 1024], got {self.size}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.voice not in speech.BACKENDS:
            raise ValueError(f"--voice must be one of {speech.BACKENDS}, got {self.voice!r}")
        if self.reactivity is not None and not 0.0 <= self.reactivity <= 1.0:
            raise ValueError(f"--reactivity must be in [0, 1] (or unset), got {self.reactivity}")
        if self.clip_seconds < 2.0:
            raise ValueError(f"clip_seconds must be >= 2, got {self.clip_seconds}")
        return self


def plan_corpus(cfg: SynthConfig):
    """Conversations (id, split, duration, persons) and identities, identity-disjoint across splits."""
    rng = np.random.default_rng([cfg.seed, 0])
    total = cfg.hours * 3600
    lo, hi = cfg.conversation_seconds
    n_conv = max(3, int(round(total / ((lo + hi) / 2))))
    durations = rng.uniform(lo, hi, n_conv) if total / n_conv >= lo else np.ones(n_conv)
    durations = np.round(durations / durations.sum() * total * FPS) / FPS  # whole frames
    n_held = [max(1, int(round(f * n_conv))) for f in cfg.split_fractions[1:]]
    splits = ["val"] * n_held[0] + ["test"] * n_held[1]
    splits = ["train"] * (n_conv - len(splits)) + splits
    identities, conversations = [], []
    for split in SPLITS:
        idx = [i for i, s in enumerate(splits) if s == split]
        n_ids = int(np.clip(round(2 * len(idx) / 3), 2, 64))  # each identity in ~3 conversations
        pool = [sample_identity(f"id{len(identities) + k:03d}", split, np.random.default_rng([cfg.seed, 1, len(identities) + k]),
                                cfg.reactivity)
                for k in range(n_ids)]
        identities += pool
        used = {p.identity_id: 0 for p in pool}
        for i in idx:  # pair the least-used identities (ties broken at random)
            order = sorted(pool, key=lambda p: (used[p.identity_id], rng.random()))
            a, b = order[0], order[1]
            used[a.identity_id] += 1
            used[b.identity_id] += 1
            conversations.append(dict(conversation_id=f"conv{i:04d}", index=i, split=split, duration=float(durations[i]),
                                      identity_A=a.identity_id, identity_B=b.identity_id))
    conversations.sort(key=lambda c: c["index"])
    return conversations, identities


_STATE: dict = {}  # identities, banks, config, tmp dir: set before workers fork


def _render_person(identity, params, path: Path, size: int) -> None:
    """Render straight into a .npy memmap, RENDER_CHUNK frames at a time."""
    renderer = FaceRenderer(identity.appearance, size)
    frames = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(params), size, size, 3))
    for a in range(0, len(params), RENDER_CHUNK):
        frames[a:a + RENDER_CHUNK] = renderer.render(params[a:a + RENDER_CHUNK])
    frames.flush()
    del frames


def make_conversation(conv: dict) -> dict:
    cfg, tmp, ids, banks = _STATE["config"], _STATE["tmp"], _STATE["identities"], _STATE["banks"]
    people = {p: ids[conv[f"identity_{p}"]] for p in "AB"}
    rng = np.random.default_rng([cfg.seed, 2, conv["index"]])
    plan = plan_conversation(people, banks, conv["duration"], rng)
    tracks = realise(plan, people, rng)
    cid, rows = conv["conversation_id"], {"clips": [], "segments": [], "phrases": [], "events": []}
    T = len(tracks["A"].params)
    n_clips = max(1, int(round(T / (cfg.clip_seconds * FPS))))
    bounds = [T * k // n_clips for k in range(n_clips + 1)]
    for p, track in tracks.items():
        stem = f"{cid}_{p}"
        paths = {"frames_path": f"frames/{stem}.npy", "params_path": f"params/{stem}.npy", "audio_path": f"audio/{stem}.wav"}
        _render_person(people[p], track.params, tmp / paths["frames_path"], cfg.size)
        np.save(tmp / paths["params_path"], track.params)
        wavfile.write(tmp / paths["audio_path"], SAMPLE_RATE, (track.audio * 32767).astype(np.int16))
        for k in range(n_clips):
            rows["clips"].append(dict(clip_id=f"{cid}_c{k:02d}", conversation_id=cid, person=p, partner="B" if p == "A" else "A",
                                      identity=people[p].identity_id, partner_identity=people["B" if p == "A" else "A"].identity_id,
                                      split=conv["split"], start_frame=bounds[k], n_frames=bounds[k + 1] - bounds[k],
                                      start_s=bounds[k] / FPS, duration_s=(bounds[k + 1] - bounds[k]) / FPS, **paths))
        rows["segments"] += [dict(conversation_id=cid, person=p, identity=people[p].identity_id, kind=k, start=a, end=b)
                             for a, b, k in track.segments]
        rows["phrases"] += [dict(conversation_id=cid, person=p, start=a, end=b, text=txt, question=q, cut=c)
                            for a, b, txt, q, c in track.phrases]
    rows["events"] = [dict(conversation_id=cid, **e) for e in plan.events]
    if cfg.mp4:
        side_by_side = (np.concatenate([np.load(tmp / f"frames/{cid}_A.npy", mmap_mode="r")[a:a + RENDER_CHUNK],
                                        np.load(tmp / f"frames/{cid}_B.npy", mmap_mode="r")[a:a + RENDER_CHUNK]], axis=2)
                        for a in range(0, T, RENDER_CHUNK))
        write_mp4(tmp / f"video/{cid}.mp4", side_by_side, tracks["A"].audio + tracks["B"].audio, FPS, SAMPLE_RATE)
    rows["conversation"] = dict(conv, n_frames=T, n_clips=n_clips, video_path=f"video/{cid}.mp4" if cfg.mp4 else None,
                                rttm_A=f"rttm/{cid}_A.rttm", rttm_B=f"rttm/{cid}_B.rttm")
    return rows


def _write_rttm(path: Path, uri: str, segments: pd.DataFrame) -> None:
    lines = [f"SPEAKER {uri} 1 {r.start:.3f} {r.end - r.start:.3f} <NA> <NA> {r.kind} <NA> <NA>" for r in segments.itertuples()]
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


def build_corpus(out, cfg: SynthConfig = SynthConfig(), overwrite: bool = False, progress: bool = True) -> Path:
    """Generate the corpus into `out` (atomically). Returns the corpus folder."""
    from afcore.io import atomic_dir  # lazy: afcore.io imports torch

    cfg, out = cfg.validate(), Path(out)
    try:
        with atomic_dir(out, overwrite, hint="pass overwrite=True (--overwrite) or choose another --out") as tmp:
            t0 = time.time()
            backend = speech.resolve_backend(cfg.voice)
            conversations, identities = plan_corpus(cfg)
            for sub in ("frames", "params", "audio", "rttm", "video"):
                (tmp / sub).mkdir()
            t_bank = time.time()
            banks = speech.build_banks(identities, backend, cfg.seed, workers=max(1, min(cfg.workers, 4)))
            t_bank = time.time() - t_bank
            _STATE.update(config=cfg, tmp=tmp, identities={i.identity_id: i for i in identities}, banks=banks)
            workers = min(cfg.workers, len(conversations), os.cpu_count() or 1)
            bar = tqdm(total=len(conversations), desc=f"synth {cfg.hours:g} h", unit="conv", disable=not progress)
            results = []
            if workers == 1:
                for conv in conversations:
                    results.append(make_conversation(conv))
                    bar.update()
            else:
                with mp.get_context("fork").Pool(workers) as pool:
                    for res in pool.imap_unordered(make_conversation, conversations):
                        results.append(res)
                        bar.update()
            bar.close()
            results.sort(key=lambda r: r["conversation"]["index"])
            tables = {k: pd.DataFrame([row for r in results for row in r[k]]) for k in ("clips", "segments", "phrases", "events")}
            tables["conversations"] = pd.DataFrame([r["conversation"] for r in results])
            tables["identities"] = pd.DataFrame([i.to_record() for i in identities])
            tables["manifest"] = tables.pop("clips").assign(seed=cfg.seed, voice_backend=backend, size=cfg.size)
            for name, df in tables.items():
                df.to_parquet(tmp / f"{name}.parquet", index=False)
            for conv in conversations:
                for p in "AB":
                    seg = tables["segments"]
                    _write_rttm(tmp / f"rttm/{conv['conversation_id']}_{p}.rttm", f"{conv['conversation_id']}_{p}",
                                seg[(seg.conversation_id == conv["conversation_id"]) & (seg.person == p)])
            meta = dict(format_version=FORMAT_VERSION, generator="data_prep.synth", config=asdict(cfg),
                        voice_backend=backend, voice_backend_description=speech.backend_description(backend),
                        fps=FPS, sample_rate=SAMPLE_RATE, samples_per_frame=SAMPLES_PER_FRAME, size=cfg.size,
                        param_columns=list(PARAM_COLUMNS), expression_columns=list(EXPRESSION_COLUMNS),
                        pose_columns=list(POSE_COLUMNS), reaction_rules=REACTION_RULES,
                        n_conversations=len(conversations), n_clips=int(tables["manifest"].clip_id.nunique()),
                        n_identities=len(identities),
                        hours_per_split={s: round(float(tables["conversations"].query("split == @s").duration.sum()) / 3600, 4)
                                         for s in SPLITS},
                        build_seconds=dict(speech_bank=round(t_bank, 2), total=round(time.time() - t0, 2)))
            (tmp / "corpus.json").write_text(json.dumps(meta, indent=2) + "\n")
    finally:
        _STATE.clear()
    return out
