"""Read a corpus folder (synthetic or ingested): manifest, memory-mapped streams, clips and turns.

    corpus = Corpus("data/corpus_cpu")
    clip = corpus.clip("conv0003_c01", person="A")      # A plays the avatar, B the user (or vice versa)
    clip.frames (T, H, W, 3) uint8, clip.audio (T*640,) float32, clip.params (T, 10) float32
    clip.partner.frames ...                              # the other person, same time span

Arrays are memory-mapped once per (conversation, person) and sliced per clip, so training loops can
index windows without reloading files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import wavfile

from data_prep.schema import (
    EXPRESSION_SLICE,
    PARAM_COLUMNS,
    POSE_SLICE,
    SAMPLES_PER_FRAME,
    VOCAL_KINDS,
)

REQUIRED = ("corpus.json", "manifest.parquet", "conversations.parquet", "segments.parquet")


@dataclass
class Clip:
    clip_id: str
    conversation_id: str
    person: str
    identity: str
    split: str
    start_frame: int
    frames: np.ndarray  # (T, H, W, 3) uint8 (memory-mapped view)
    audio: np.ndarray  # (T * 640,) float32, 16 kHz, this person's own track
    params: np.ndarray  # (T, 10) float32 in `columns` order
    columns: tuple
    turns: object  # pyannote.core.Annotation of vocal activity, times relative to the clip start
    partner: Clip | None = None

    @property
    def expression(self) -> np.ndarray:
        return self.params[:, EXPRESSION_SLICE]

    @property
    def pose(self) -> np.ndarray:
        return self.params[:, POSE_SLICE]


class Corpus:
    def __init__(self, path):
        self.root = Path(path)
        missing = [f for f in REQUIRED if not (self.root / f).exists()]
        if missing:
            raise FileNotFoundError(f"{self.root} is not a corpus folder (missing {missing}); "
                                    f"build one with `afsuite data synth --out {self.root}`")
        self.meta = json.loads((self.root / "corpus.json").read_text())
        self.manifest = pd.read_parquet(self.root / "manifest.parquet")
        self.conversations = pd.read_parquet(self.root / "conversations.parquet")
        self.segments = pd.read_parquet(self.root / "segments.parquet")
        self.columns = tuple(self.meta.get("param_columns", PARAM_COLUMNS))
        self._maps: dict = {}

    def _table(self, name: str) -> pd.DataFrame:
        path = self.root / f"{name}.parquet"
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()

    @cached_property
    def identities(self) -> pd.DataFrame:
        return self._table("identities")

    @cached_property
    def events(self) -> pd.DataFrame:
        """Reaction log (synthetic corpora): who reacted to what, when, with which latency."""
        return self._table("events")

    @cached_property
    def phrases(self) -> pd.DataFrame:
        return self._table("phrases")

    def __repr__(self) -> str:
        c = self.conversations
        return (f"Corpus({str(self.root)!r}: {len(c)} conversations, {self.manifest.clip_id.nunique()} clips, "
                f"{c.duration.sum() / 3600:.3f} h, size {self.meta.get('size')}, voice {self.meta.get('voice_backend')})")

    def clip_ids(self, split: str | None = None) -> list[str]:
        m = self.manifest if split is None else self.manifest[self.manifest.split == split]
        return sorted(m.clip_id.unique())

    # ------------------------------------------------------------ whole-conversation streams
    def stream(self, conversation_id: str, person: str) -> dict:
        """Memory-mapped arrays of one person over a whole conversation: frames, audio (int16), params."""
        key = (conversation_id, person)
        if key not in self._maps:
            rows = self.manifest[(self.manifest.conversation_id == conversation_id) & (self.manifest.person == person)]
            if rows.empty:
                raise KeyError(f"no person {person!r} in conversation {conversation_id!r} of {self.root}")
            row = rows.iloc[0]
            _, audio = wavfile.read(self.root / row.audio_path, mmap=True)
            self._maps[key] = dict(frames=np.load(self.root / row.frames_path, mmap_mode="r"), audio=audio,
                                   params=np.load(self.root / row.params_path, mmap_mode="r"))
        return self._maps[key]

    def annotation(self, conversation_id: str, person: str, kinds=VOCAL_KINDS, label: str | None = None):
        """Ground-truth vocal activity of one person as a pyannote.core.Annotation (label = kind, or `label`)."""
        from pyannote.core import Annotation, Segment

        seg = self.segments[(self.segments.conversation_id == conversation_id) & (self.segments.person == person)
                            & self.segments.kind.isin(kinds)]
        ann = Annotation(uri=f"{conversation_id}_{person}")
        for i, r in enumerate(seg.itertuples()):
            ann[Segment(r.start, r.end), i] = label or r.kind
        return ann

    # ------------------------------------------------------------ clips
    def clip(self, clip_id: str, person: str = "A", with_partner: bool = True) -> Clip:
        rows = self.manifest[(self.manifest.clip_id == clip_id) & (self.manifest.person == person)]
        if rows.empty:
            raise KeyError(f"no clip {clip_id!r} with person {person!r} in {self.root} (see Corpus.clip_ids())")
        row = rows.iloc[0]
        s = self.stream(row.conversation_id, person)
        a, n = int(row.start_frame), int(row.n_frames)
        audio = np.asarray(s["audio"][a * SAMPLES_PER_FRAME:(a + n) * SAMPLES_PER_FRAME], np.float32) / 32768.0
        turns = self.annotation(row.conversation_id, person)
        t0 = a / self.meta["fps"]
        from pyannote.core import Annotation, Segment

        shifted = Annotation(uri=clip_id)
        for segment, track, label in turns.crop(Segment(t0, t0 + n / self.meta["fps"])).itertracks(yield_label=True):
            shifted[Segment(segment.start - t0, segment.end - t0), track] = label
        clip = Clip(clip_id, row.conversation_id, person, row.identity, row.split, a, s["frames"][a:a + n], audio,
                    np.asarray(s["params"][a:a + n]), self.columns, shifted)
        if with_partner:
            clip.partner = self.clip(clip_id, row.partner, with_partner=False)
        return clip

    def clips(self, split: str | None = None, person: str = "A"):
        for cid in self.clip_ids(split):
            yield self.clip(cid, person)
