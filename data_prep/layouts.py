"""Which files make up each conversation of an ingestion folder (`afsuite data ingest --layout ...`).

  pair:          <conv>_A.<ext> and <conv>_B.<ext>, one face and its own (separated) voice per file
  side-by-side:  <conv>.<ext> with person A in the left half and B in the right half
  vico:          the ViCo listening-head release (Zhou et al. 2022, as its public baseline reads it):
                 videos/<uuid>.speaker.mp4 and videos/<uuid>.listener.mp4 (also in subfolders of videos/),
                 audios/<uuid>.wav = the speaker's voice, the listener is silent; optional train.csv /
                 val.csv (or valid.csv) / test.csv with a `uuid` column give the release's own split.
                 A = the speaker, B = the listener.
Pre-separated voices <src>/<conv>_A.wav and <conv>_B.wav, when both exist, replace a conversation's sound
(pair and side-by-side).

RealTalk (Geng et al. 2023) is released as YouTube ids with precomputed features, not as files; the videos,
once downloaded, are whole conversations with both people on screen: ingest them as side-by-side (a mono
track is split by lip activity; scene cuts drop shots without both faces).
"""
from __future__ import annotations

from pathlib import Path

VIDEO_EXT = (".mp4", ".mkv", ".mov", ".avi", ".webm")
LAYOUTS = ("auto", "pair", "side-by-side", "vico")
VICO_SPLIT_FILES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def discover(src, layout: str = "auto") -> list[dict]:
    """[{conversation_id, layout ("pair" | "side-by-side": how the frames are read), convention (the folder's
    layout), files: {"A": path, "B": path} or {"AB": path}, voices: {"A": wav or None (silent), "B": ...} or
    None (the videos' own sound), roles: {"A": ..., "B": ...}, split: "train" | "val" | "test" | None}] by id."""
    src = Path(src)
    if layout not in LAYOUTS:
        raise ValueError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder: point --src at a folder of conversation videos")
    if layout == "vico" or (layout == "auto" and _vico_speakers(src)):
        return _discover_vico(src)
    videos = sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_EXT)
    if not videos:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXT)}) in {src}")
    by_stem = {p.stem: p for p in videos}
    found, used = [], set()
    for stem, path in by_stem.items():
        base = stem[:-2]
        if layout != "side-by-side" and stem.endswith("_A") and f"{base}_B" in by_stem:
            found.append((base, "pair", {"A": path, "B": by_stem[f"{base}_B"]}))
            used |= {stem, f"{base}_B"}
    for stem, path in by_stem.items():
        if stem not in used:
            if layout == "pair":
                raise ValueError(f"{path}: --layout pair needs <conv>_A / <conv>_B files, this one has no partner")
            found.append((stem, "side-by-side", {"AB": path}))
    convs = []
    for cid, kind, files in found:
        wavs = {p: src / f"{cid}_{p}.wav" for p in "AB"}
        convs.append(dict(conversation_id=cid, layout=kind, convention=kind, files=files,
                          voices=wavs if all(w.exists() for w in wavs.values()) else None,
                          roles={"A": "A", "B": "B"}, split=None))
    return sorted(convs, key=lambda c: c["conversation_id"])


def _vico_speakers(src: Path) -> list[Path]:
    videos = src / "videos"
    return sorted(p for p in videos.rglob("*.speaker.*") if p.suffix.lower() in VIDEO_EXT) if videos.is_dir() else []


def _discover_vico(src: Path) -> list[dict]:
    speakers = _vico_speakers(src)
    if not speakers:
        raise FileNotFoundError(f"{src}: no ViCo videos: --layout vico expects videos/<uuid>.speaker.mp4 and "
                                "videos/<uuid>.listener.mp4, with audios/<uuid>.wav for the speaker's voice")
    import pandas as pd

    split_of = {}
    for stem, split in VICO_SPLIT_FILES.items():
        table = src / f"{stem}.csv"
        if table.exists():
            uuids = pd.read_csv(table)
            if "uuid" not in uuids:
                raise ValueError(f"{table}: a ViCo split file needs a 'uuid' column; it has {', '.join(uuids.columns)}")
            split_of.update(dict.fromkeys(uuids.uuid.astype(str), split))
    convs = []
    for speaker in speakers:
        uuid = speaker.name[:-len(".speaker" + speaker.suffix)]
        listener = speaker.with_name(f"{uuid}.listener{speaker.suffix}")
        if not listener.exists():
            raise FileNotFoundError(f"{speaker}: its listener video {listener.name} is missing")
        voice = src / "audios" / f"{uuid}.wav"
        convs.append(dict(conversation_id=uuid, layout="pair", convention="vico", files={"A": speaker, "B": listener},
                          voices={"A": voice, "B": None} if voice.exists() else None,
                          roles={"A": "speaker", "B": "listener"}, split=split_of.get(uuid)))
    return sorted(convs, key=lambda c: c["conversation_id"])
