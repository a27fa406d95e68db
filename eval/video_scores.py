"""The paper's video metrics of generated clips (Tables 1, 5/6): FID, FVD, CSIM, LSE-D, LSE-C, each naming the
extractor that made it.

Extractors come from eval.extractors.registry: real weights when they are local, else the embedded ones trained
here on the synthetic corpus (`video_extractors`). Embedded values live on their own scales: compare them
only with numbers of the same extractor (the GT rows of `video_scores(truth, truth, ...)` are the yardstick).
Protocol, fixed before any model was scored:
- FID: all ground-truth frames vs all generated frames, pooled over clips.
- FVD: non-overlapping 16-frame windows of every clip, ground truth vs generated.
- CSIM: per clip, the reference image (the avatar's first ground-truth frame, as the paper's reference image)
  vs every generated frame; mean over clips.
- LSE-D / LSE-C: per clip, generated frames against the avatar's own audio (SyncNet protocol, offsets +-15
  frames); mean over clips.
"""
from __future__ import annotations

import time

import numpy as np

from eval.metrics_bench_inputs import DEFAULT_EXTRACTORS_DIR, FVD_CLIP

# table column -> registry metric whose extractor makes it
EXTRACTOR_OF = {"FID": "fid", "FVD": "fvd", "CSIM": "csim", "LSE-D": "lipsync", "LSE-C": "lipsync"}


def video_extractors(corpus_dir, cache_dir=DEFAULT_EXTRACTORS_DIR, *, threads: int = 1,
                     progress: bool = False) -> tuple[dict, dict]:
    """({"fid", "fvd", "csim", "lipsync"}: extractor, {metric: record}) by registry.resolve at its default
    locations (real weights, else $AF_EXTRACTORS_DIR); a missing one is loaded from `cache_dir`, else trained
    there once with registry.train_defaults' quick budgets on `corpus_dir` (~30 s for all four on one core).
    The default cache is the one `afsuite bench metrics` fills, so both read the same quick-budget models."""
    from eval.metrics_bench_inputs import get_extractors
    return get_extractors("auto", extractors_dir=cache_dir, corpus_dir=corpus_dir, train_budget="quick",
                          threads=threads, progress=progress, metrics=tuple(dict.fromkeys(EXTRACTOR_OF.values())))


def _windows(videos: list, n: int) -> np.ndarray:
    return np.stack([v[i:i + n] for v in videos for i in range(0, len(v) - n + 1, n)])


def video_scores(fake_videos, real_videos, audios, references, extractors: dict) -> dict:
    """FID, FVD, CSIM, LSE-D, LSE-C of generated clips.

    fake_videos, real_videos: per clip (T, S, S, 3) uint8, the same clips in the same order (T may differ
    between clips; each must hold >= 36 frames for LSE and one 16-frame window for FVD); audios: the avatar's
    16 kHz audio per clip (>= 640 T samples); references: (S, S, 3) uint8 per clip; extractors: as
    `video_extractors` returns them. Also returns "extractors" (column -> extractor name) and per-clip details."""
    from eval.extractors.identity import csim
    from eval.extractors.lipsync import lip_sync
    from eval.extractors.quality import fid, fvd

    fake, real = [np.asarray(v) for v in fake_videos], [np.asarray(v) for v in real_videos]
    n = len(fake)
    if not n or not len(real) == len(audios) == len(references) == n:
        raise ValueError(f"need the same number (> 0) of generated clips, ground-truth clips, audios and references; "
                         f"got {n}, {len(real)}, {len(audios)}, {len(references)}")
    short = [i for i, v in enumerate(fake) if len(v) < FVD_CLIP]
    if short:
        raise ValueError(f"clips {short} are shorter than one {FVD_CLIP}-frame FVD window")
    f = fid(np.concatenate(real), np.concatenate(fake), extractors["fid"])
    v = fvd(_windows(real, FVD_CLIP), _windows(fake, FVD_CLIP), extractors["fvd"])
    cs = [csim(ref, clip, extractors["csim"]) for ref, clip in zip(references, fake)]
    sync = [lip_sync(clip, audio, extractors["lipsync"]) for clip, audio in zip(fake, audios)]
    names = {"FID": f["extractor"], "FVD": v["extractor"], "CSIM": cs[0]["extractor"],
             "LSE-D": sync[0]["extractor"], "LSE-C": sync[0]["extractor"]}
    return {"FID": f["fid"], "FVD": v["fvd"], "CSIM": float(np.mean([c["csim"] for c in cs])),
            "LSE-D": float(np.mean([s["lse_d"] for s in sync])), "LSE-C": float(np.mean([s["lse_c"] for s in sync])),
            "extractors": names, "clips": n, "frames": int(sum(map(len, fake))), "fvd_windows": v["n_fake"],
            "csim_per_clip": [c["csim"] for c in cs], "lse_offset_per_clip": [s["offset"] for s in sync]}


def score_generated(generated: dict, clips: list[dict], corpus_dir, extractors: dict, *, readout=None,
                    ae=None) -> tuple[dict, str]:
    """({label: video_scores} of each label's motion latents per clip, plus "GT (corpus frames)": the corpus frames
    against themselves, FID = FVD = 0 by construction), and how the frames were drawn: decoded by `ae` from the
    avatar's first frame, else drawn by the corpus renderer from `readout(latents)` (oracle latents)."""
    from data_prep.corpus import Corpus
    from eval.experiments import decode_motion, render_params

    if ae is None and readout is None:
        raise ValueError("frames are drawn by an autoencoder (ae=) or, for oracle latents, from read-out parameters "
                         "(readout=): pass one")
    corpus = Corpus(corpus_dir)
    truth = [np.array(corpus.stream(c["conversation_id"], c["person"])["frames"][c["start_frame"]:
                                                                              c["start_frame"] + c["frames"]])
             for c in clips]
    first, waves = [t[0] for t in truth], [c["avatar_wave"] for c in clips]  # the reference image; the avatar's audio

    def draw(clip, ref, motion):
        return decode_motion(ae, ref, motion) if ae is not None else render_params(corpus_dir, clip["identity"],
                                                                                   readout(motion))
    scores = {label: video_scores([draw(c, r, m) for c, r, m in zip(clips, first, latents)], truth, waves, first,
                                  extractors) for label, latents in generated.items()}
    scores["GT (corpus frames)"] = video_scores(truth, truth, waves, first, extractors)
    drawn = ("decoded by 02's autoencoder from the avatar's first frame" if ae is not None
             else "drawn by the corpus renderer from the read-out parameters")
    return scores, drawn


def video_columns(generated: dict, clips: list[dict], corpus_dir, *, enabled: bool = True,
                  latents: str = "autoencoder", autoencoder="", readout=None, extractors_dir=DEFAULT_EXTRACTORS_DIR,
                  threads: int = 1) -> dict:
    """A notebook's video columns in one call: the extractors (`video_extractors`), then `score_generated` of
    `generated` plus two yardsticks, "GT latents via readout" (the clips' true latents drawn the same way: the
    floor of the drawing path) and "GT (corpus frames)".

    latents: "autoencoder" (frames decoded by the motion autoencoder file `autoencoder`) or "oracle" (drawn by the
    renderer from `readout`'s parameters). Returns {"scores": {label: video_scores}, "not_measured": {column: why}
    (empty when measured), "records": the extractors' records (for metrics.json), "drawn" and "scored_by": how the
    frames were drawn and which extractors scored them, "source": both, for a table row's source, "summary":
    markdown that also says how each extractor was obtained, "wall": seconds}. When `enabled` is False, no
    autoencoder is given for autoencoder latents, or the extractors can be neither loaded nor trained, every
    column is N/A and says why."""
    if latents not in ("autoencoder", "oracle"):
        raise ValueError(f"latents must be 'autoencoder' or 'oracle', got {latents!r}")
    out = {"scores": {}, "not_measured": {}, "records": {}, "drawn": "", "scored_by": "", "source": "", "summary": "",
           "wall": {}}
    skip = ("video_metrics = False" if not enabled else
            "no autoencoder to decode the motion into frames (pass 02's motion_autoencoder.pt)"
            if latents == "autoencoder" and not autoencoder else "")
    if skip:
        out["not_measured"] = dict.fromkeys(EXTRACTOR_OF, skip)
        return out
    t0 = time.perf_counter()
    try:
        extractors, records = video_extractors(corpus_dir, extractors_dir, threads=threads)
    except Exception as err:  # noqa: BLE001 -- no extractor: the columns stay N/A and say why
        out["not_measured"] = dict.fromkeys(EXTRACTOR_OF, f"the extractors could be neither loaded nor trained: "
                                                          f"{type(err).__name__}: {err}")
        return out
    out["wall"]["video_extractors"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if latents == "autoencoder":
        from afcore.train_ae import load_autoencoder
        ae = load_autoencoder(autoencoder)[0]
    else:
        ae = None
    generated = {**generated, "GT latents via readout": [c["avatar_latents"] for c in clips]}
    out["scores"], drawn = score_generated(generated, clips, corpus_dir, extractors, readout=readout, ae=ae)
    out["wall"]["video_scores"] = time.perf_counter() - t0

    def named(metric):
        steps = (records[metric]["card"].get("training") or {}).get("steps")
        return records[metric]["card"]["name"] + (f" ({steps} steps)" if steps else "")
    scored_by = f"FID {named('fid')}, FVD {named('fvd')}, CSIM {named('csim')}, LSE {named('lipsync')}"
    records = {m: {k: r[k] for k in ("name", "summary", "obtained", "card", "training_s") if k in r}
               for m, r in records.items()}
    out.update(records=records, drawn=drawn, scored_by=scored_by, source=f"frames {drawn}, scored by {scored_by}",
               summary=f"Frames {drawn}; scored by {scored_by}. " + "; ".join(
                   f"{r['name']}: {r['obtained']}" for r in records.values()))
    return out
