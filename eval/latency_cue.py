"""End-to-end cue-to-reaction latency (issue 6, item 4): put a smile into the user's stream, find when the
avatar reacts.

Protocol (a paired counterfactual, so nothing but the cue differs):
1. a held-out conversation of the corpus (split "test"): one person plays the avatar, the other the user; the
   model sees the avatar's audio, the user's audio and the user's motion latents (afcore.data latents);
2. the cue is a real smile of that user: the change of its motion latents from just before one of its smile
   onsets (`cue_template`), added to the user's motion at a random frame of a calm stretch (no user smile);
3. the avatar is generated twice over the same segment with the same noise, without and with the cue. The
   difference, read out as expression parameters (`readout`), is the avatar's reaction and nothing else; its
   onset (`detect_onset`) minus the cue's onset (the same detector on the user's parameter) is the reaction
   delay in media time. It can be negative inside a block (the block's frames see its last input frame);
4. end-to-end = that delay + block buffering + per-block compute: with constant-rate playback, frame f of a
   block is shown at f + block + compute.
The corpus' own reaction delay (events.parquet, e.g. smile_mirror latency 0.3-0.8 s) is reported beside it:
a model that learned the corpus reacts no sooner; the system delay is what the streaming machinery adds.

Readout interface: any callable `readout(latents (B, T, D)) -> params (B, T, P)` with a `columns` attribute
naming the P parameters: the suite's ridge readout (eval.readout.ParamReadout: `readout.pt` of notebook 02, or
fitted on the corpus' train split when none is given).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm



# --------------------------------------------------------------------------------------------- onset detection
def detect_onset(signal, start: int = 0, *, frac: float = 0.5, min_peak: float = 0.0, horizon: int | None = None,
                 baseline: float | None = None, polarity: str = "positive") -> float | None:
    """First (sub-frame) time at which `signal` - baseline rises through `frac` of its peak in [start, start +
    horizon). baseline: signal[start] unless given. polarity: "positive", "negative" or "abs". None if the
    peak is not above `min_peak` (no reaction). Linear interpolation between frames, so the delay between two
    equally shaped responses is recovered exactly for whole-frame shifts and closely for fractional ones."""
    x = np.asarray(signal, dtype=float)
    end = len(x) if horizon is None else min(len(x), start + horizon)
    if x.ndim != 1 or not 0 <= start < end:
        raise ValueError(f"detect_onset needs a 1-D signal and 0 <= start < end; got shape {x.shape}, start {start}")
    y = x[start:end] - (x[start] if baseline is None else baseline)
    if polarity not in ("positive", "negative", "abs"):
        raise ValueError(f"polarity must be 'positive', 'negative' or 'abs', got {polarity!r}")
    y = np.abs(y) if polarity == "abs" else (-y if polarity == "negative" else y)
    peak = float(y.max())
    if not peak > max(min_peak, 0.0):
        return None
    thr = frac * peak
    i = int(np.argmax(y >= thr))
    if i == 0:
        return float(start)
    return start + i - 1 + float((thr - y[i - 1]) / (y[i] - y[i - 1]))


def rising_onsets(param, threshold: float, quiet: int) -> list[int]:
    """Frames where `param` rises through `threshold`, having stayed below threshold/2 over the `quiet` frames
    until quiet/2 frames before (a fresh episode, not a wobble of one already running)."""
    p = np.asarray(param, dtype=float)
    up = np.flatnonzero((p[1:] >= threshold) & (p[:-1] < threshold)) + 1
    return [int(i) for i in up if i >= quiet and p[i - quiet:i - quiet // 2].max() < threshold / 2]


# --------------------------------------------------------------------------------------------- injection
def cue_template(user_motion, user_param, onset: int, pre: int, length: int):
    """The motion change of one real cue: delta (length, D) = m[o - pre + i] - m[o - pre], and the cue's own
    onset inside it (detect_onset on the user's parameter, in frames from the template start)."""
    a = onset - pre
    if a < 0 or a + length > len(user_motion):
        raise ValueError(f"template [{a}, {a + length}) is outside the stream of {len(user_motion)} frames")
    seg = torch.from_numpy(np.array(user_motion[a:a + length], dtype=np.float32))  # a copy: memmaps are read-only
    cue_at = detect_onset(np.asarray(user_param[a:a + length]), 0, baseline=float(user_param[a]))
    return seg - seg[:1], cue_at


def calm_sites(user_param, threshold: float, before: int, after: int, lo: int) -> np.ndarray:
    """Frames t >= lo with the user's cue parameter below threshold/2 over [t - before, t + after)."""
    p = np.asarray(user_param, dtype=float)
    ok = [t for t in range(max(lo, before), len(p) - after) if p[t - before:t + after].max() < threshold / 2]
    return np.asarray(ok, dtype=int)


def cue_to_reaction(generate_fn, readout, conversations: list[dict], *, n_injections: int = 100, block: int = 10,
                    fps: int = 25, compute_ms: float | None = None, cue_column: str = "smile",
                    response_column: str = "smile", threshold: float = 0.2, context_s: float = 4.0,
                    horizon_s: float = 3.0, pre_s: float = 0.4, frac: float = 0.5, min_effect: float = 0.02,
                    polarity: str = "positive", seed: int = 0, progress: bool = True) -> dict:
    """Inject `n_injections` cues at random calm frames of random conversations; see the module docstring.

    generate_fn(avatar_audio (T, C), user_audio (T, C), user_motion (T, D), ref (D,)) -> avatar latents (T, D),
    deterministic (same noise every call). conversations: dicts with those streams over a whole conversation,
    plus avatar_motion (T, D) (ref = its frame at the segment start), user_params (T, P) and `columns`."""
    rng = np.random.default_rng(seed)
    ctx, hor, pre = round(context_s * fps), round(horizon_s * fps), round(pre_s * fps)
    ci, ri = conversations[0]["columns"].index(cue_column), list(readout.columns).index(response_column)
    pools = []
    for conv in conversations:  # (templates, injection sites) per conversation
        p = np.asarray(conv["user_params"][:, ci])
        onsets = [o for o in rising_onsets(p, threshold, 2 * pre) if o + hor <= len(p)]
        pools.append((onsets, calm_sites(p, threshold, pre, pre + hor, ctx)))  # calm where the template goes
    usable = [i for i, (o, s) in enumerate(pools) if o and len(s)]
    if not usable:
        raise ValueError(f"no conversation has both a user '{cue_column}' onset (rising through {threshold}) and a "
                         f"calm stretch of {pre + hor} frames; lower `threshold` or use longer conversations")
    records = []
    for _ in tqdm(range(n_injections), desc="cue injections", disable=not progress, unit="cue"):
        k = int(rng.choice(usable))
        conv, (onsets, sites) = conversations[k], pools[k]
        delta, cue_off = cue_template(conv["user_motion"], conv["user_params"][:, ci], int(rng.choice(onsets)), pre,
                                      pre + hor)
        if cue_off is None:  # cannot happen for an onset found by rising_onsets; kept as a guard
            continue
        at = int(rng.choice(sites))  # where the template starts (its pre part before the cue)
        seg0 = (at - ctx) // block * block  # a block grid shared by base and cued runs; cue phase random
        seg1 = at + pre + hor
        streams = [torch.as_tensor(np.asarray(conv[n][seg0:seg1]), dtype=torch.float32)
                   for n in ("avatar_audio", "user_audio", "user_motion")]
        cued = streams[2].clone()
        cued[at - seg0:at - seg0 + len(delta)] += delta
        ref = torch.as_tensor(np.asarray(conv["avatar_motion"][seg0]), dtype=torch.float32)
        with torch.no_grad():
            base_out = generate_fn(streams[0], streams[1], streams[2], ref)
            cued_out = generate_fn(streams[0], streams[1], cued, ref)
            diff = (readout(cued_out[None]) - readout(base_out[None]))[0, :, ri].numpy()
        earliest = (at - seg0) // block * block  # the first block whose inputs changed
        cue_frame = at - seg0 + cue_off
        onset = detect_onset(diff, earliest, frac=frac, min_peak=min_effect, baseline=0.0, polarity=polarity)
        records.append({"conversation": conv.get("name", str(k)), "cue_frame": seg0 + cue_frame,
                        "block_phase": float((seg0 + cue_frame) % block),
                        "reacted": onset is not None, "peak_effect": float(np.abs(diff[earliest:]).max()),
                        "media_delay_ms": None if onset is None else (onset - cue_frame) * 1000 / fps})
    return summarize_reactions(records, block_ms=1000 * block / fps, compute_ms=compute_ms)


def spread(values, unit: str, prefix: str = "") -> dict:
    """Median, 5th and 95th percentile and count of delays, keyed "<prefix>median_<unit>" ... "<prefix>n"."""
    a = np.asarray(values, dtype=float)
    return {f"{prefix}median_{unit}": float(np.median(a)), f"{prefix}p5_{unit}": float(np.percentile(a, 5)),
            f"{prefix}p95_{unit}": float(np.percentile(a, 95)), f"{prefix}n": int(a.size)}


def summarize_reactions(records, *, block_ms: float, compute_ms: float | None) -> dict:
    delays = np.array([r["media_delay_ms"] for r in records if r["reacted"]], dtype=float)
    stats = lambda a: None if a.size == 0 else {**spread(a, "ms"), "mean_ms": float(a.mean())}
    system = block_ms + (compute_ms or 0.0)
    return {"status": "measured", "n_injections": len(records), "n_reacted": int(delays.size),
            "reaction_rate": delays.size / max(1, len(records)), "media_delay": stats(delays),
            "system_delay_ms": system, "compute_ms_used": compute_ms,
            "end_to_end": stats(delays + system), "records": records,
            "note": "end_to_end = media delay (cue onset -> avatar reaction onset, same detector) + block buffering "
                    "+ per-block compute p50 (constant-rate playback)"}


# --------------------------------------------------------------------------------------------- real data
def not_measurable(reason: str) -> dict:
    return {"status": "not measurable", "reason": reason}


def _conversations(corpus_dir, model, split: str, limit: int) -> list[dict]:
    """Whole-conversation streams of the `split` clips: each clip's person as the avatar, its partner as the user."""
    from afcore.data import latents_path
    from data_prep.corpus import Corpus
    corpus = Corpus(corpus_dir)
    rows = corpus.manifest[corpus.manifest.split == split].drop_duplicates(["conversation_id", "person"]).head(limit)
    spf, out = model.cfg.samples_per_frame, []
    for r in rows.itertuples():
        a, u = r.person, r.partner
        lat = {p: np.load(latents_path(corpus_dir, r.conversation_id, p), mmap_mode="r") for p in (a, u)}
        T = min(len(lat[a]), len(lat[u]))
        feats = {}
        for p in (a, u):  # int16 on disk
            wave = np.asarray(corpus.stream(r.conversation_id, p)["audio"][:T * spf], np.float32) / 32768.0
            with torch.no_grad():
                feats[p] = model.audio(torch.from_numpy(wave)[None], T)[0]
        out.append({"name": f"{r.conversation_id}:{a}", "avatar_audio": feats[a], "user_audio": feats[u],
                    "user_motion": np.array(lat[u][:T]), "avatar_motion": np.array(lat[a][:T]),
                    "user_params": np.asarray(corpus.stream(r.conversation_id, u)["params"][:T]),
                    "avatar_params": np.asarray(corpus.stream(r.conversation_id, a)["params"][:T]),
                    "columns": corpus.columns, "events": corpus.events})
    return out


def corpus_reaction_delay(events, kind: str = "smile_mirror") -> dict | None:
    """The corpus' own (planted) reaction latency for `kind`, from its events table."""
    if events is None or len(events) == 0 or "kind" not in events:
        return None
    lat = events.loc[events.kind == kind, "latency"].to_numpy(float) * 1000
    return None if lat.size == 0 else {"kind": kind, **spread(lat, "ms")}


def measure_cue_to_reaction(checkpoint, corpus_dir, *, readout=None, n_injections: int = 100, nfe: int = 10,
                            seed: int = 0, compute_ms: float | None = None, split: str = "test",
                            max_conversations: int = 20, progress: bool = True) -> dict:
    """Item 4 on real data, or a record saying why it cannot be measured (never raises for missing inputs)."""
    from afcore.data import latents_path
    from afcore.model import load_checkpoint
    from afcore.session import generate
    applicability = {"infp": "not applicable: INFP*'s motion guider reads audio only, a user-motion cue cannot reach it",
                     "talking": "not applicable: the talking-only model reads the avatar's audio only"}
    if not n_injections:
        return {"ours": {"status": "skipped", "reason": "0 cue injections in this profile"}, **applicability}
    if not checkpoint or not Path(checkpoint).exists():
        return {"ours": not_measurable(f"no trained checkpoint at {checkpoint or '<unset>'}: train one "
                                       "(`afsuite train`) and pass its path (--checkpoint / `checkpoint = ...`)"),
                **applicability}
    if not corpus_dir or not Path(corpus_dir, "manifest.parquet").exists():
        return {"ours": not_measurable(f"no corpus at {corpus_dir or '<unset>'}: build one with "
                                       "`afsuite data synth --out <dir>` and pass it (--corpus)"), **applicability}
    model, _ = load_checkpoint(checkpoint)
    if model.cfg.conditioner != "dual":
        return {"ours": not_measurable(f"{checkpoint} is a '{model.cfg.conditioner}' model, not Avatar Forcing: "
                                       "a user-motion cue cannot reach it"), **applicability}
    from eval.experiments import latents_corpus_for
    corpus_dir, why = latents_corpus_for(checkpoint, corpus_dir)
    if not why and not latents_path(corpus_dir, "x", "A").parent.is_dir():
        why = f"{corpus_dir} has no motion latents: run `afsuite data latents`"
    if why:
        return {"ours": not_measurable(why), **applicability}
    from eval.readout import ParamReadout, fit_corpus_readout, r2_scores
    rd = ParamReadout.load(readout) if readout else fit_corpus_readout(corpus_dir, every=5)
    convs = _conversations(corpus_dir, model, split, max_conversations)
    if not convs:
        return {"ours": not_measurable(f"{corpus_dir}: no '{split}' clips"), **applicability}

    def generate_fn(aa, ua, um, ref):  # same noise on every call: the base and cued runs differ only by the cue
        return generate(model.generator, ref[None], aa[None], ua[None], um[None], nfe=nfe,
                        generator=torch.Generator().manual_seed(seed))[0]

    result = cue_to_reaction(generate_fn, rd, convs, n_injections=n_injections, block=model.cfg.block,
                             fps=model.cfg.fps, compute_ms=compute_ms, seed=seed, progress=progress)
    events = convs[0]["events"]
    if len(events) and "conversation_id" in events:  # the held-out conversations only
        events = events[events.conversation_id.isin({c["name"].split(":")[0] for c in convs})]
    result["corpus_reaction_delay"] = corpus_reaction_delay(events)
    cd, md = result["corpus_reaction_delay"], result["media_delay"]
    result["model_minus_corpus_median_ms"] = md["median_ms"] - cd["median_ms"] if (cd and md) else None
    result["readout"] = {"source": str(readout) if readout else "eval.readout.fit_corpus_readout on the corpus",
                         "card": rd.card, "r2_on_these_avatar_streams": r2_scores(
                             rd(np.concatenate([c["avatar_motion"] for c in convs])),
                             np.concatenate([c["avatar_params"] for c in convs]), rd.columns)}
    result["checkpoint"], result["corpus_dir"], result["split"] = str(checkpoint), str(corpus_dir), split
    return {"ours": result, **applicability}


def people_reaction_delay(corpus_dir, kind: str = "smile_mirror", column: str = "smile", frac: float = 0.5) -> dict | None:
    """How late the corpus' own people answer, by the demo's detectors (afcore.demo_run.reaction_check): for every
    `kind` event, from the trigger person's `column` crossing `frac` of its rise (within 0.8 s of the trigger) to
    the reacting person's crossing `frac` of theirs (within 2.4 s: "median_s" ...), and to the reacting person's
    first change of VISIBLE_CHANGE ("visible_median_s" ...). The planted onset latency (`events.latency`) equals
    the first when both rises have one shape; these are what a model that learned the corpus should match.
    None when the corpus has no such events (an ingested real corpus)."""
    from data_prep.corpus import Corpus
    from data_prep.schema import VISIBLE_CHANGE
    corpus = Corpus(corpus_dir)
    events = corpus.events
    if events is None or len(events) == 0 or "kind" not in events:
        return None
    ci, fps, delays, visible = corpus.columns.index(column), corpus.meta["fps"], [], []
    for e in events[events.kind == kind].itertuples():
        trigger = np.asarray(corpus.stream(e.conversation_id, e.trigger_person)["params"][:, ci])
        answer = np.asarray(corpus.stream(e.conversation_id, e.person)["params"][:, ci])
        t0, horizon = int(e.trigger_time * fps) - 3, round(2.4 * fps)  # t0: just before the cue (calm baseline)
        if t0 < 0 or t0 + 3 * fps > min(len(trigger), len(answer)):
            continue
        cue = detect_onset(trigger, t0, frac=frac, horizon=round(0.8 * fps))
        if cue is None:
            continue
        reply = detect_onset(answer, t0, frac=frac, horizon=horizon)
        if reply is not None:
            delays.append((reply - cue) / fps)
        seen = np.flatnonzero(answer[t0:t0 + horizon] - answer[t0] >= VISIBLE_CHANGE)
        if len(seen):
            visible.append((t0 + seen[0] - cue) / fps)
    if not delays:
        return None
    return {"kind": kind, "column": column, **spread(delays, "s"),
            **(spread(visible, "s", "visible_") if visible else {}), "planted_median_s": float(events.loc[events.kind == kind, "latency"].median())}
