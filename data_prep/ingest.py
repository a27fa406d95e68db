"""Ingest a folder of real dyadic conversation videos into the corpus layout that `Corpus` reads.

Decoding to 25 fps + 16 kHz, face tracking (dlib HOG, else the scikit-image LBP cascade), square crops
resized to `size`, per-frame face parameters from dlib's 68 landmarks (`data_prep.ingest_faces`), per-person
VAD turns (silero-vad), clips, splits, manifest, RTTM, mp4 previews and a curation report: a conversation
whose files are corrupt, silent, faceless, two-faced or too short is skipped with a message naming the file
(`curation.json`, `corpus.json["curation"]`) and the rest of the batch goes on. NOT done: neural speech
separation of a mixed track (the paper uses IIANet; here a mixed mono track of a split-screen video is split
by lip activity), identity matching across conversations (an optional identities.csv gives it).

Input layouts (`data_prep.layouts`; `--layout auto` picks per conversation): pair (<conv>_A / <conv>_B files),
side-by-side (<conv> with A left and B right; a stereo track is taken as one channel per person, a mono track
is split by whose mouth moves), and the ViCo release's folders (speaker = A, listener = B, its csv splits).
Pre-separated voices <src>/<conv>_A.wav and <conv>_B.wav, when both exist, replace the videos' sound.
Scene cuts (`data_prep.scenes`, on by default): a conversation is split into shots at every detected cut
(of either file of a pair, of either half of a split-screen file); the face track restarts in each shot,
face parameters are interpolated within a shot only, clips never span a cut, and shots shorter than one
block (or without both faces) are dropped. Cuts, kept and dropped shots go to curation.json.
Optional <src>/identities.csv with columns conversation_id, person, identity keeps splits identity-disjoint.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import wavfile
from tqdm.auto import tqdm

from data_prep.ingest_faces import (
    PARAM_CROP,
    PARAMS_SOURCE,
    assign_by_lips,
    landmark_extractor,
    split_mixed,
    to_corpus_params,
)
from data_prep.ingest_media import (
    MIN_FRAMES,
    FaceDetector,
    IngestError,
    crop,
    halves,
    iter_frames,
    read_audio,
    read_wav,
    track_face,
)
from data_prep.layouts import LAYOUTS, discover
from data_prep.media import write_mp4
from data_prep.scenes import SceneConfig, shot_bounds
from data_prep.schema import (
    EXPRESSION_COLUMNS,
    FPS,
    PARAM_COLUMNS,
    POSE_COLUMNS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SPLITS,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConfig:
    size: int = 64
    layout: str = "auto"  # "auto" | "pair" | "side-by-side"
    detect_every: int = 5  # run the face detector every n frames, interpolate between
    pad_ratio: float = 0.8  # crop side = face box side * (1 + pad_ratio)
    clip_seconds: float = 15.0
    split_fractions: tuple = (0.8, 0.1, 0.1)
    seed: int = 0
    vad: str = "auto"  # "auto" (silero if importable) | "silero" | "energy" | "pyannote"
    pyannote_model: str | None = None  # local pyannote.audio segmentation checkpoint, for vad="pyannote"
    mp4: bool = True
    params: bool = True  # face parameters from dlib landmarks (NaN when False or dlib is missing)
    detector: str = "auto"  # "auto" (dlib HOG if installed) | "dlib" | "skimage"
    scene_cuts: bool = True  # split conversations at shot changes (data_prep.scenes)
    scene_k: float = 6.0  # adaptive cut threshold: median + k * MAD of the nearby scores ...
    scene_min_score: float = 0.12  # ... but at least this score
    scene_threshold: float | None = None  # a fixed score threshold instead of the adaptive one

    def scene_config(self) -> SceneConfig | None:
        return SceneConfig(k=self.scene_k, min_score=self.scene_min_score, threshold=self.scene_threshold) \
            if self.scene_cuts else None

    def validate(self) -> IngestConfig:
        if not (32 <= self.size <= 1024) or self.size % 2:
            raise ValueError(f"--size must be an even number of pixels in [32, 1024], got {self.size}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.detect_every < 1:
            raise ValueError(f"--detect-every must be >= 1, got {self.detect_every}")
        from data_prep.vad import BACKENDS
        if self.vad not in BACKENDS:
            raise ValueError(f"--vad must be one of {', '.join(BACKENDS)}, got {self.vad!r}")
        if (self.vad == "pyannote") != (self.pyannote_model is not None):
            raise ValueError("--vad pyannote needs --pyannote-model PATH (a local pyannote.audio segmentation "
                             "checkpoint) and --pyannote-model is only used with --vad pyannote")
        if self.detector not in ("auto", "dlib", "skimage"):
            raise ValueError(f"detector must be auto, dlib or skimage, got {self.detector!r}")
        if self.scene_cuts:
            self.scene_config().validate()
        return self


def _person_audio(conv, params: dict, cfg: IngestConfig, vad_backend: str) -> tuple[dict, str, list]:
    """person -> (N,) float32 16 kHz voice, a description of where it came from, notes."""
    from data_prep import vad

    cid, notes = conv["conversation_id"], []
    if conv["voices"]:
        per = {}
        for p, w in conv["voices"].items():
            if w is not None:
                per[p], n = read_wav(w)
                notes += n
        for p, other in ("AB", "BA"):  # a person without a voice file is silent (ViCo's listeners)
            if p not in per:
                per[p] = np.zeros_like(per[other])
        files = ", ".join(f"{p}: {w.name if w else 'silent'}" for p, w in conv["voices"].items())
        return per, f"pre-separated wav files ({files})", notes
    if conv["layout"] == "pair":
        per = {}
        for p in "AB":
            x, n = read_audio(conv["files"][p])
            notes += n + ([f"{conv['files'][p].name}: stereo downmixed to mono"] if len(x) == 2 else [])
            per[p] = x.mean(0)
        return per, "separated (one file per person)", notes
    x, notes = read_audio(conv["files"]["AB"])
    if len(x) == 2:
        return {"A": x[0], "B": x[1]}, "stereo: left channel = A, right channel = B", notes
    if all(np.isfinite(params[p]).any() for p in "AB"):
        hyp, _ = vad.detect(x[0], f"{cid}_mix", vad_backend, cfg.pyannote_model)
        assigned = assign_by_lips([(s.start, s.end) for s in hyp.get_timeline()], params, FPS)
        count = {k: sum(a[2] == k for a in assigned) for k in ("A", "B", None)}
        return split_mixed(x[0], assigned, SAMPLE_RATE), (
            f"mixed mono track split by lip activity: {count['A']} segments to A, {count['B']} to B, "
            f"{count[None]} unassigned (kept for both)"), notes
    return {"A": x[0], "B": x[0]}, "mixed mono track used for both persons (no face parameters to split it)", notes


def ingest_conversation(conv: dict, tmp: Path, cfg: IngestConfig, vad_backend: str, detector) -> dict:
    from data_prep import vad

    cid, layout = conv["conversation_id"], conv["layout"]
    extractor, _ = landmark_extractor() if cfg.params else (None, None)
    # which file holds whom: pair -> one person per file, side-by-side -> both halves of one file
    jobs = [(conv["files"][p], {p: "A"}) for p in "AB"] if layout == "pair" else [(conv["files"]["AB"], {"A": "A", "B": "B"})]
    lengths, raw_params, boxed, notes, cuts = {}, {}, {}, [], []
    for path, who in jobs:
        boxes, T, n, file_cuts = track_face(path, layout, cfg.detect_every, detector, cfg.scene_config())
        notes += n
        cuts += [dict(c.as_dict(), time_s=round(c.frame / FPS, 3), file=Path(path).name) for c in file_cuts]
        mm = {p: np.lib.format.open_memmap(tmp / f"frames/{cid}_{p}.npy", "w+", np.uint8, (T, cfg.size, cfg.size, 3))
              for p in who}
        raw = {p: [] for p in who}
        batch = {p: [] for p in who}
        for k, img in enumerate(iter_frames(path)):  # pass 2: crop (and measure the face)
            if k >= T:
                break
            h = halves(img, layout)
            for p, half in who.items():
                mm[p][k] = crop(h[half], boxes[half][k], cfg.pad_ratio, cfg.size)
                if extractor is not None:
                    batch[p].append(crop(h[half], boxes[half][k], cfg.pad_ratio, PARAM_CROP))
                    if len(batch[p]) == 100 or k == T - 1:
                        raw[p].append(extractor(np.stack(batch[p])))
                        batch[p] = []
        for p, half in who.items():
            mm[p].flush()
            lengths[p], boxed[p] = T, np.isfinite(boxes[half]).all(1)
            rest = [extractor(np.stack(batch[p]))] if batch[p] else []
            raw_params[p] = np.concatenate(raw[p] + rest) if extractor is not None else None
    T = min(lengths.values())
    if max(lengths.values()) - T > FPS:
        notes.append(f"{cid}: the two videos differ by {(max(lengths.values()) - T) / FPS:.1f} s; cut to the shorter")
    # shots: split at every cut of either file; clips never span a cut, short or faceless shots are dropped
    merged = {}  # the same cut seen in both files of a pair: one entry, the higher score, both file names
    for c in sorted(cuts, key=lambda c: -c["score"]):
        if c["frame"] < T:
            m = merged.setdefault(c["frame"], dict(c))
            m["file"] = m["file"] if c["file"] in m["file"].split(", ") else f"{m['file']}, {c['file']}"
    cuts = [merged[k] for k in sorted(merged)]
    shots, dropped = [], []
    for a, b in shot_bounds([c["frame"] for c in cuts], T):
        faceless = [p for p in "AB" if not boxed[p][a:b].all()]
        if b - a < MIN_FRAMES:
            why = f"shorter than one block of {MIN_FRAMES} frames"
        elif faceless:
            why = f"no face of person {' or '.join(faceless)} found in it"
        else:
            shots.append((a, b))
            continue
        dropped.append(dict(start=a, end=b, reason=why))
        notes.append(f"{cid}: shot at frames {a}-{b} ({b - a} frames, {(b - a) / FPS:.2f} s) {why}: dropped (no clip covers it)")
    if not shots:
        raise IngestError(f"{'; '.join(str(f) for f in conv['files'].values())}: no shot of at least {MIN_FRAMES} "
                          f"frames with both faces between the {len(cuts)} scene cuts; nothing to ingest (raise "
                          f"--scene-threshold or pass --no-scene-cuts if these are not real cuts)")
    if cuts:
        notes.append(f"{cid}: {len(cuts)} scene cut(s) at frame(s) {', '.join(str(c['frame']) for c in cuts)}; "
                     f"{len(shots)} shot(s) kept, {len(dropped)} dropped")
    params = {}
    for p in "AB":
        lm = raw_params[p]
        if lm is None:
            params[p] = np.full((T, len(PARAM_COLUMNS)), np.nan, np.float32)
            continue
        # gaps are interpolated within a shot, never across a cut
        params[p] = np.concatenate([to_corpus_params(lm[a:b])[0] for a, b in shot_bounds([c["frame"] for c in cuts], len(lm))])
        share = float(np.isfinite(lm).all(1).mean()) if len(lm) else 0.0
        if share < 0.5:
            notes.append(f"{cid} person {p}: landmarks found in only {share:.0%} of frames (params NaN elsewhere)")
    voices, audio_note, n = _person_audio(conv, params, cfg, vad_backend)
    notes += n
    rows = {"clips": [], "segments": []}
    bounds = []  # (start, end) of every clip: each shot cut into clips of about clip_seconds
    for a, b in shots:
        n_shot = max(1, int(round((b - a) / (cfg.clip_seconds * FPS))))
        bounds += [(a + (b - a) * k // n_shot, a + (b - a) * (k + 1) // n_shot) for k in range(n_shot)]
    n_clips = len(bounds)
    for p in ("A", "B"):
        np.save(tmp / f"params/{cid}_{p}.npy", params[p][:T].astype(np.float32))
        x = voices[p][: T * SAMPLES_PER_FRAME]
        if len(x) < T * SAMPLES_PER_FRAME - FPS * SAMPLES_PER_FRAME:
            notes.append(f"{cid} person {p}: audio {len(x) / SAMPLE_RATE:.1f} s shorter than video {T / FPS:.1f} s; padded with silence")
        x = np.pad(x, (0, max(0, T * SAMPLES_PER_FRAME - len(x))))
        wavfile.write(tmp / f"audio/{cid}_{p}.wav", SAMPLE_RATE, (np.clip(x, -1, 1) * 32767).astype(np.int16))
        hyp, _ = vad.detect(x.astype(np.float32), f"{cid}_{p}", vad_backend, cfg.pyannote_model)
        rows["segments"] += [dict(conversation_id=cid, person=p, identity=f"{cid}_{p}", kind="speech",
                                  start=s.start, end=s.end) for s in hyp.get_timeline()]
        paths = {"frames_path": f"frames/{cid}_{p}.npy", "params_path": f"params/{cid}_{p}.npy",
                 "audio_path": f"audio/{cid}_{p}.wav"}
        for k, (a, b) in enumerate(bounds):
            rows["clips"].append(dict(clip_id=f"{cid}_c{k:02d}", conversation_id=cid, person=p, partner="B" if p == "A" else "A",
                                      start_frame=a, n_frames=b - a, start_s=a / FPS, duration_s=(b - a) / FPS, **paths))
    if cfg.mp4:
        both = np.concatenate([np.load(tmp / f"frames/{cid}_{p}.npy", mmap_mode="r")[:T] for p in "AB"], axis=2)
        mix = sum(wavfile.read(tmp / f"audio/{cid}_{p}.wav")[1].astype(np.float32) / 32768.0 for p in "AB") / 2
        write_mp4(tmp / f"video/{cid}.mp4", both, mix, FPS, SAMPLE_RATE)
    rows["conversation"] = dict(conversation_id=cid, duration=T / FPS, n_frames=T, n_clips=n_clips, layout=layout,
                                convention=conv["convention"], role_A=conv["roles"]["A"], role_B=conv["roles"]["B"],
                                n_scene_cuts=len(cuts), n_shots=len(shots),
                                audio=audio_note, video_path=f"video/{cid}.mp4" if cfg.mp4 else None,
                                rttm_A=f"rttm/{cid}_A.rttm", rttm_B=f"rttm/{cid}_B.rttm",
                                source=";".join(str(s) for s in conv["files"].values()))
    rows["notes"] = notes
    rows["scenes"] = dict(scene_cuts=cuts if cfg.scene_cuts else None, shots=[list(x) for x in shots], dropped_shots=dropped)
    return rows


def _remove_partial(tmp: Path, cid: str) -> None:
    for sub in ("frames", "params", "audio", "video"):
        for f in (tmp / sub).glob(f"{cid}*"):
            if f.stem in (cid, f"{cid}_A", f"{cid}_B"):
                f.unlink()


def ingest(src, out, cfg: IngestConfig = IngestConfig(), overwrite: bool = False, progress: bool = True) -> Path:
    """Ingest every conversation under `src` into `out` (atomically, like the synthetic builder)."""
    from afcore.io import atomic_dir
    from data_prep.synth.build import _write_rttm
    from data_prep.vad import pyannote_checkpoint, pyannote_pipeline, resolve_backend

    cfg, src, out = cfg.validate(), Path(src), Path(out)
    vad_backend = resolve_backend(cfg.vad)
    vad_model = str(pyannote_checkpoint(cfg.pyannote_model)) if cfg.vad == "pyannote" else None
    if vad_model:  # loaded up front: a missing or broken model must stop the run, not skip every conversation
        pyannote_pipeline(vad_model)
    vad_note = f"vad: {vad_backend}" + (f" (segmentation model {vad_model})" if vad_model else "")
    with atomic_dir(out, overwrite, hint="pass --overwrite or choose another --out") as tmp:
        convs = discover(src, cfg.layout)
        detector = FaceDetector({"auto": "auto", "dlib": "dlib", "skimage": "skimage-lbp"}[cfg.detector])
        extractor, params_note = landmark_extractor() if cfg.params else (None, "face parameters disabled (params=False)")
        for sub in ("frames", "params", "audio", "rttm", "video"):
            (tmp / sub).mkdir()
        results, curation = [], []
        for c in tqdm(convs, desc="ingest", disable=not progress):
            files = [str(f) for f in c["files"].values()]
            try:
                r = ingest_conversation(c, tmp, cfg, vad_backend, detector)
            except Exception as err:  # noqa: BLE001 - one bad conversation never stops the batch
                _remove_partial(tmp, c["conversation_id"])
                msg = str(err) if isinstance(err, IngestError) else \
                    f"{'; '.join(files)}: {type(err).__name__}: {err} (unexpected; check or remove these files)"
                log.warning("skipped conversation %s: %s", c["conversation_id"], msg)
                curation.append(dict(conversation_id=c["conversation_id"], files=files, status="skipped", problem=msg, notes=[],
                                     scene_cuts=None, shots=None, dropped_shots=None))
                continue
            results.append(r)
            curation.append(dict(conversation_id=c["conversation_id"], files=files, status="ok", problem=None,
                                 notes=r["notes"] + [f"audio: {r['conversation']['audio']}", vad_note], **r["scenes"]))
            for note in r["notes"]:
                log.info("%s: %s", c["conversation_id"], note)
        if not results:
            raise IngestError(f"none of the {len(convs)} conversations in {src} could be ingested:\n  "
                              + "\n  ".join(x["problem"] for x in curation))
        conversations = pd.DataFrame([r["conversation"] for r in results])
        manifest = pd.DataFrame([x for r in results for x in r["clips"]])
        segments = pd.DataFrame([x for r in results for x in r["segments"]],  # columns even when nobody spoke
                                columns=["conversation_id", "person", "identity", "kind", "start", "end"])
        ident_file = src / "identities.csv"
        ident = pd.read_csv(ident_file) if ident_file.exists() else pd.DataFrame(
            [dict(conversation_id=c, person=p, identity=f"{c}_{p}") for c in conversations.conversation_id for p in "AB"])
        manifest = manifest.merge(ident, on=["conversation_id", "person"], how="left")
        manifest["identity"] = manifest.identity.fillna(manifest.conversation_id + "_" + manifest.person)
        partner = manifest[["clip_id", "person", "identity"]].rename(columns={"person": "partner", "identity": "partner_identity"})
        manifest = manifest.merge(partner, on=["clip_id", "partner"])
        given = {c["conversation_id"]: c["split"] for c in convs}
        if all(given[c] for c in conversations.conversation_id):  # the release's own split (ViCo's csv files)
            conversations["split"], split_source = conversations.conversation_id.map(given), "the source's split files"
        else:
            conversations["split"] = _identity_disjoint_splits(manifest, cfg)
            split_source = f"identity-disjoint, seed {cfg.seed}"
        manifest = manifest.merge(conversations[["conversation_id", "split"]], on="conversation_id")
        manifest = manifest.assign(seed=cfg.seed, voice_backend="real", size=cfg.size).sort_values(["clip_id", "person"])
        for name, df in (("manifest", manifest), ("conversations", conversations), ("segments", segments)):
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        for c in conversations.conversation_id:
            for p in "AB":
                _write_rttm(tmp / f"rttm/{c}_{p}.rttm", f"{c}_{p}", segments[(segments.conversation_id == c) & (segments.person == p)])
        meta = dict(format_version=1, generator="data_prep.ingest", source=str(src), config=asdict(cfg), fps=FPS,
                    sample_rate=SAMPLE_RATE, samples_per_frame=SAMPLES_PER_FRAME, size=cfg.size, voice_backend="real",
                    voice_backend_description="recorded speech", vad_backend=vad_backend, vad_model=vad_model,
                    params_source=PARAMS_SOURCE if extractor is not None else None, params_note=params_note or
                    "dlib 68-landmark proxies mapped to jaw_open, smile, brow_raise, blink (eye opening), yaw, pitch, "
                    "roll; gaze_x, gaze_y, laugh not measured (NaN); units are not the synthetic corpus's",
                    face_detector=detector.backend,
                    scene_detector=("data_prep.scenes: thumbnail structure + hue histogram + light, adaptive threshold "
                                    "median + k*MAD" if cfg.scene_cuts else None),
                    n_scene_cuts=int(conversations.n_scene_cuts.sum()),
                    param_columns=list(PARAM_COLUMNS), expression_columns=list(EXPRESSION_COLUMNS),
                    pose_columns=list(POSE_COLUMNS), n_conversations=len(conversations),
                    n_clips=int(manifest.clip_id.nunique()), n_identities=int(manifest.identity.nunique()),
                    split_source=split_source, n_skipped=sum(x["status"] == "skipped" for x in curation),
                    curation=curation)
        (tmp / "curation.json").write_text(json.dumps(curation, indent=2) + "\n")
        (tmp / "corpus.json").write_text(json.dumps(meta, indent=2) + "\n")
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


def pyannote_sample_vad(backend: str = "auto") -> dict:
    """Score our VAD on real speech nobody here made: the two-speaker sample.wav + sample.rttm shipped in the
    pyannote.audio wheel (found without importing pyannote.audio, whose import is slow). The reference is
    the union of both speakers' RTTM turns; -> {"detection_error_rate", "miss_s", "false_alarm_s", "speech_s",
    "backend", "duration_s"}."""
    import importlib.util

    from pyannote.core import Annotation, Segment

    from data_prep import vad
    from data_prep.ingest_media import read_wav

    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None:
        raise FileNotFoundError("pyannote.audio is not installed: its wheel carries the sample (pip install pyannote.audio)")
    folder = Path(spec.submodule_search_locations[0]) / "sample"
    audio, _ = read_wav(folder / "sample.wav")
    ref = Annotation(uri="sample")
    for i, line in enumerate((folder / "sample.rttm").read_text().splitlines()):
        f = line.split()
        if f and f[0] == "SPEAKER":
            ref[Segment(float(f[3]), float(f[3]) + float(f[4])), i] = "speech"
    hyp, used = vad.detect(audio, "sample", backend)
    return dict(vad.detection_error_rate(ref, hyp, len(audio) / SAMPLE_RATE), backend=used,
                duration_s=len(audio) / SAMPLE_RATE)
