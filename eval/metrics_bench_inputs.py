"""Inputs of `afsuite bench metrics` (eval/metrics_bench.py): synthetic clips of the shapes the metrics take, made
with the corpus renderer (nothing is read from disk, so every machine times the same inputs), and the extractors
the image/audio metrics need (real weights, embedded checkpoints, quick-trained ones, or untrained stand-ins)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

FPS, SAMPLE_RATE, SIZE = 25, 16000, 64
REACT_SAMPLES, REACT_DIM, REACT_APPROPRIATE = 10, 25, 3
PAPER_DIMS = {"Exp": 50, "Pose": 6}
JITTER_BLOCK, JITTER_FIRST = 10, 50
FVD_CLIP = 16
EXTRACTOR_METRICS = ("face_params", "lipsync", "fid", "fvd", "csim", "lpips")
# registry.train_defaults' budgets (quick: the tests' sizes, ~2 min on one core; full: 15-25 min)
TRAIN_STEPS = {"quick": {"face_params": 300, "lipsync": 120, "csim": 100, "fid": 80, "fvd": 80},
               "full": {"face_params": 2000, "lipsync": 1500, "csim": 600, "fid": 600, "fvd": 600}}
DEFAULT_EXTRACTORS_DIR = "data/extractors_bench"  # not $AF_EXTRACTORS_DIR: quick-budget models stay apart



# ---------------------------------------------------------------------------- inputs

def _smooth(rng, t: int, d: int, sigma: float = 4.0) -> np.ndarray:
    """(t, d) Gaussian-smoothed white noise, unit variance per column."""
    from scipy.ndimage import gaussian_filter1d
    x = gaussian_filter1d(rng.standard_normal((t + 8 * int(sigma), d)), sigma, axis=0)[4 * int(sigma):][:t]
    return (x - x.mean(0)) / (x.std(0) + 1e-9)


def _to_corpus_params(z: np.ndarray) -> np.ndarray:
    """Unit-variance series (T, 10) -> corpus parameter ranges in PARAM_COLUMNS order."""
    from data_prep.schema import EXPRESSION_COLUMNS, POSE_LIMITS
    out = np.empty_like(z, dtype=np.float32)
    for j, name in enumerate(EXPRESSION_COLUMNS):
        out[:, j] = np.tanh(0.6 * z[:, j]) if name.startswith("gaze") else 1 / (1 + np.exp(-1.5 * z[:, j] + 1.0))
    for j, lim in enumerate(POSE_LIMITS.values(), start=len(EXPRESSION_COLUMNS)):
        out[:, j] = lim * np.tanh(0.5 * z[:, j])
    return out


def _triplet(rng, t: int, d: int):
    """user, ground truth (0.6 x the user 8 frames later + its own motion) and generated (ground truth +
    smooth error), each (t, d) unit-scale."""
    user = _smooth(rng, t, d)
    gt = 0.6 * np.roll(user, 8, axis=0) + 0.8 * _smooth(rng, t, d)
    gen = gt + 0.5 * _smooth(rng, t, d, sigma=2.0)
    return user, gt, gen


def _audio(rng, jaw: np.ndarray) -> np.ndarray:
    """16 kHz float32 in [-1, 1]: a voiced buzz plus noise whose loudness follows the jaw, frame by frame."""
    n = len(jaw) * (SAMPLE_RATE // FPS)
    env = np.interp(np.arange(n) / (SAMPLE_RATE / FPS), np.arange(len(jaw)), jaw)
    f0 = 120 + 40 * _smooth(rng, n // 800 + 2, 1)[:, 0]
    phase = 2 * np.pi * np.cumsum(np.interp(np.arange(n), np.linspace(0, n, len(f0)), f0)) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    return (0.3 * env * (0.7 * voiced + 0.3 * rng.standard_normal(n))).clip(-1, 1).astype(np.float32)


def build_inputs(clips: int, seconds: float, *, seed: int = 0, progress: bool = True) -> dict:
    """Every input of every timed metric, for `clips` clips of `seconds` s (see the module docstring)."""
    from tqdm.auto import tqdm

    from data_prep.schema import EXPRESSION_SLICE, PARAM_COLUMNS, POSE_SLICE
    from data_prep.synth.identity import sample_appearance
    from data_prep.synth.render import FaceRenderer

    t = int(round(seconds * FPS))
    if clips < 2 or t < 2:
        raise ValueError(f"need at least 2 clips of 2 frames; got {clips} clips of {t} frames")
    rng = np.random.default_rng([seed, 4004])
    d = len(PARAM_COLUMNS)
    users, gts, gens = [], [], []
    frames_gt = np.empty((clips, t, SIZE, SIZE, 3), np.uint8)
    frames_gen = np.empty_like(frames_gt)
    audio = np.empty((clips, t * (SAMPLE_RATE // FPS)), np.float32)
    jaw = PARAM_COLUMNS.index("jaw_open")
    for i in tqdm(range(clips), desc="render clips", unit="clip", disable=not progress):
        u, g, x = (_to_corpus_params(a) for a in _triplet(rng, t, d))
        users.append(u), gts.append(g), gens.append(x)
        look = sample_appearance(rng, "f" if rng.random() < 0.5 else "m")
        renderer = FaceRenderer(look, SIZE)
        frames_gt[i], frames_gen[i] = renderer.render(g), renderer.render(x)
        audio[i] = _audio(rng, g[:, jaw])
    motion = {"Exp": {}, "Pose": {}}
    for part, cols in (("Exp", EXPRESSION_SLICE), ("Pose", POSE_SLICE)):
        for key, clips_ in (("generated", gens), ("user", users), ("ground_truth", gts)):
            motion[part][key] = [c[:, cols] for c in clips_]
    paper = {part: dict(zip(("user", "ground_truth", "generated"),
                            map(list, zip(*(_triplet(rng, t, dim) for _ in range(clips))))))
             for part, dim in PAPER_DIMS.items()}

    m = REACT_SAMPLES if clips >= 2 * REACT_SAMPLES else 2
    n_speakers = clips // m
    if n_speakers < 2:
        raise ValueError(f"REACT needs >= 2 speakers x 2 samples: at least 4 clips (got {clips})")

    def react_series():  # 15 AU occurrences (0/1), valence + arousal in [-1, 1], 8 expression probabilities
        z = _smooth(rng, t, REACT_DIM)
        au = (z[:, :15] > 0.8).astype(np.float64)
        va = np.tanh(0.5 * z[:, 15:17])
        e = np.exp(z[:, 17:])
        return np.concatenate([au, va, e / e.sum(1, keepdims=True)], 1)

    speaker = np.stack([react_series() for _ in range(n_speakers)])
    listener = np.stack([react_series() for _ in range(n_speakers)])
    predictions = np.stack([np.stack([0.5 * listener[k] + 0.5 * react_series() for _ in range(m)])
                            for k in range(n_speakers)])
    appropriate = np.zeros((n_speakers, n_speakers), bool)
    for k in range(n_speakers):
        appropriate[k, [(k + j) % n_speakers for j in range(min(REACT_APPROPRIATE, n_speakers))]] = True

    n_win = t // FVD_CLIP
    return {
        "clips": clips, "seconds": seconds, "frames_per_clip": t,
        "motion": motion, "paper": paper, "generated_params": gens,
        "react": {"predictions": predictions, "speaker": speaker, "listener": listener, "appropriate": appropriate},
        "frames_gt": frames_gt, "frames_gen": frames_gen, "audio": audio,
        "reference": frames_gt[:, 0].copy(),  # CSIM: the clip's first ground-truth frame vs the generated ones
        "videos_gt": frames_gt[:, :n_win * FVD_CLIP].reshape(clips * n_win, FVD_CLIP, SIZE, SIZE, 3),
        "videos_gen": frames_gen[:, :n_win * FVD_CLIP].reshape(clips * n_win, FVD_CLIP, SIZE, SIZE, 3),
        "layout": {
            "motion": f"{clips} clips x (T={t}, 10) corpus params (Exp = 7 cols, Pose = 3 cols) for generated, "
                      "user and ground truth",
            "motion_paper_dims": f"{clips} clips x (T={t}, d) with d = {PAPER_DIMS} (smooth Gaussian series)",
            "react": {"predictions": list(predictions.shape), "speaker": list(speaker.shape),
                      "listener": list(listener.shape), "appropriate_per_speaker": min(REACT_APPROPRIATE, n_speakers),
                      "clips_scored": n_speakers * m},
            "frames": f"{clips} x {t} frames of {SIZE} px per side (generated and ground truth, one identity per clip)",
            "audio": f"{clips} x {t * (SAMPLE_RATE // FPS)} samples at {SAMPLE_RATE} Hz",
            "fvd_clips": f"{clips * n_win} non-overlapping {FVD_CLIP}-frame windows per side ({n_win} per clip)",
            "fid_frames": f"all {clips * t} frames per side",
        },
    }


def slice_inputs(data: dict, n: int) -> dict:
    """The first `n` clips (views; REACT: the first 2 speakers x 2 samples), for the untimed warm-up."""
    c, t = data["clips"], data["frames_per_clip"]
    n_win = len(data["videos_gt"]) // c
    r = data["react"]
    return {**data, "clips": n,
            "motion": {p: {k: v[:n] for k, v in d.items()} for p, d in data["motion"].items()},
            "paper": {p: {k: v[:n] for k, v in d.items()} for p, d in data["paper"].items()},
            "generated_params": data["generated_params"][:n],
            "react": {"predictions": r["predictions"][:2, :2], "speaker": r["speaker"][:2], "listener": r["listener"],
                      "appropriate": r["appropriate"][:2]},
            "frames_gt": data["frames_gt"][:n], "frames_gen": data["frames_gen"][:n], "audio": data["audio"][:n],
            "reference": data["reference"][:n], "videos_gt": data["videos_gt"][:n * n_win],
            "videos_gen": data["videos_gen"][:n * n_win], "frames_per_clip": t}


# ---------------------------------------------------------------------------- extractors

def _untrained(metric: str):
    """The embedded architecture with its train_* defaults and random weights (BatchNorm at init stats)."""
    import torch

    from eval.extractors.common import make_card
    torch.manual_seed(0)
    note = "random initialisation: the trained model's architecture and inference cost; its values mean nothing"
    if metric == "face_params":
        from eval.extractors.facecnn import NAME, FaceParamCNN, FaceParamExtractor
        return FaceParamExtractor(FaceParamCNN(32), make_card(f"{NAME}-untrained", "embedded", notes=note), {"width": 32})
    if metric == "lipsync":
        from eval.extractors.syncnet_embedded import NAME, EmbeddedSyncNet, SyncNetSmall
        return EmbeddedSyncNet(SyncNetSmall(64, 32), make_card(f"{NAME}-untrained", "embedded", notes=note),
                               {"dim": 64, "width": 32})
    if metric == "csim":
        from eval.extractors.identity import NAME, EmbeddedIdentity, IdentityNet
        return EmbeddedIdentity(IdentityNet(64, 24, 1), make_card(f"{NAME}-untrained", "embedded", notes=note),
                                {"dim": 64, "width": 24, "n_classes": 1})
    from eval.extractors.videofeat import CLIP_NAME, FRAME_NAME, ClipEncoder, EmbeddedFeature, FrameEncoder
    if metric == "fid":
        return EmbeddedFeature(FrameEncoder(24, 128), make_card(f"{FRAME_NAME}-untrained", "embedded", notes=note),
                               {"width": 24, "dim": 128}).feature
    if metric == "fvd":
        return EmbeddedFeature(ClipEncoder(16, 128), make_card(f"{CLIP_NAME}-untrained", "embedded", notes=note),
                               {"width": 16, "dim": 128}).feature
    raise ValueError(f"no untrained stand-in for {metric!r}")


def _train(metric: str, corpus, budget: str, threads: int):
    from eval.extractors.facecnn import train_facecnn
    from eval.extractors.identity import train_identity_encoder
    from eval.extractors.syncnet_embedded import train_syncnet
    from eval.extractors.videofeat import train_clip_encoder, train_frame_encoder
    steps = TRAIN_STEPS[budget][metric]
    if metric == "face_params":
        return train_facecnn(corpus, n_identities=96, frames_per_identity=40, steps=steps, threads=threads)
    if metric == "lipsync":
        return train_syncnet(corpus, steps=steps, threads=threads)
    if metric == "csim":
        return train_identity_encoder(steps=steps, threads=threads)
    if metric == "fid":
        return train_frame_encoder(steps=steps, threads=threads)
    return train_clip_encoder(corpus, steps=steps, threads=threads)


def _find_corpus(corpus_dir, cache: Path, threads: int, progress: bool) -> tuple:
    """(Corpus, record): the given folder, else the repo's data/corpus_quick or corpus_smoke, else a small
    corpus built once into `cache` (its build time recorded)."""
    from data_prep.corpus import Corpus
    from eval.extractors.common import REPO
    candidates = [Path(corpus_dir)] if corpus_dir else [REPO / "data" / "corpus_quick", REPO / "data" / "corpus_smoke",
                                                        cache / "corpus"]
    for c in candidates:
        if (c / "corpus.json").is_file():
            return Corpus(c), {"path": str(c), "built_here": False}
    if corpus_dir:
        raise FileNotFoundError(f"no corpus at {corpus_dir} (corpus.json missing)")
    from data_prep.synth.build import SynthConfig, build_corpus
    t0 = time.perf_counter()
    out = build_corpus(cache / "corpus", SynthConfig(hours=0.03, seed=3, workers=max(1, threads), mp4=False),
                       progress=progress)
    return Corpus(out), {"path": str(out), "built_here": True, "build_s": round(time.perf_counter() - t0, 2)}


def get_extractors(mode: str = "auto", *, extractors_dir=DEFAULT_EXTRACTORS_DIR, corpus_dir=None,
                   train_budget: str = "quick", threads: int = 1, progress: bool = True,
                   metrics=EXTRACTOR_METRICS) -> tuple[dict, dict]:
    """{metric: extractor} and {metric: record (name, card, load_s, how it was obtained, training_s)}.

    mode "auto": registry.resolve (real weights, else the embedded checkpoint in $AF_EXTRACTORS_DIR), else a
    checkpoint in `extractors_dir`, else train one there now (timed separately). "untrained": random weights."""
    from eval.extractors.common import MissingWeightsError, card_summary
    from eval.extractors.registry import plan, resolve
    if mode not in ("auto", "untrained"):
        raise ValueError(f"extractors must be 'auto' or 'untrained'; got {mode!r}")
    cache = Path(extractors_dir)
    objs, records, corpus = {}, {}, None
    for metric in metrics:
        rec, t0 = {}, time.perf_counter()
        if mode == "untrained" and metric != "lpips":  # LPIPS always has its real AlexNet weights
            objs[metric], rec["obtained"] = _untrained(metric), "untrained (random weights; timing only)"
        else:
            try:
                objs[metric] = resolve(metric)
                rec["obtained"] = f"registry.resolve: {plan(metric)['reason']}"
            except MissingWeightsError as e:
                path = cache / f"{metric}.pt"
                rec["registry_said"] = str(e).split(". Make one")[0]
                if not path.is_file():
                    if corpus is None and metric in ("face_params", "lipsync", "fvd"):
                        corpus, rec["corpus"] = _find_corpus(corpus_dir, cache, threads, progress)
                    print(f"training the embedded {metric} extractor ({train_budget} budget) into {path} ...",
                          file=sys.stderr, flush=True)
                    t_train = time.perf_counter()
                    _train(metric, corpus, train_budget, threads).save(path)
                    rec.update(training_s=round(time.perf_counter() - t_train, 2), training_budget=train_budget,
                               training_steps=TRAIN_STEPS[train_budget][metric])
                    rec["obtained"] = f"trained here ({train_budget} budget of registry.train_defaults)"
                else:
                    rec["obtained"] = f"checkpoint cached by an earlier run ({path})"
                    rec["cached_training_fit_s"] = None  # filled from the card below (fit loop only)
                t0 = time.perf_counter()  # load time excludes training
                objs[metric] = resolve(metric, embedded={metric: path})
        card = objs[metric].card
        if "cached_training_fit_s" in rec:
            rec["cached_training_fit_s"] = (card.get("training") or {}).get("seconds")
        rec.update(name=card["name"], summary=card_summary(card), card=card,
                   load_s=round(time.perf_counter() - t0, 3))
        records[metric] = rec
    return objs, records
