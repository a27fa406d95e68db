"""Quality report of a corpus (notebook 01): frame grids, turn-taking vs VAD, speaker-vs-listener motion
variance (paper Fig. 5), reaction latencies measured from the parameter tracks, split summary."""
from __future__ import annotations

import numpy as np
import pandas as pd

from data_prep.corpus import Corpus
from data_prep.schema import EXPRESSION_SLICE, FPS, POSE_SLICE, SPLITS, column_index
from data_prep.synth.behaviour import REACTION_RULES


def split_summary(corpus: Corpus) -> pd.DataFrame:
    m, c = corpus.manifest, corpus.conversations
    rows = []
    for s in SPLITS:
        ms = m[m.split == s]
        rows.append(dict(split=s, conversations=int((c.split == s).sum()), clips=int(ms.clip_id.nunique()),
                         identities=int(ms.identity.nunique()), hours=round(float(c[c.split == s].duration.sum()) / 3600, 4)))
    return pd.DataFrame(rows).set_index("split")


def identity_overlap(corpus: Corpus) -> int:
    """Number of identities that appear in more than one split (must be 0)."""
    return int((corpus.manifest.groupby("identity").split.nunique() > 1).sum())


def frame_grid(corpus: Corpus, n_people: int = 6, n_frames: int = 8, step_s: float = 0.4) -> np.ndarray:
    """(n_people * S, n_frames * S, 3) uint8: one row per identity, frames step_s apart from one of its clips."""
    rows, seen = [], set()
    for r in corpus.manifest.sort_values(["split", "clip_id"]).itertuples():
        if r.identity in seen or len(rows) == n_people:
            continue
        seen.add(r.identity)
        frames = corpus.stream(r.conversation_id, r.person)["frames"]
        idx = r.start_frame + (np.arange(n_frames) * step_s * FPS).astype(int) % max(1, r.n_frames)
        rows.append(np.concatenate([frames[i] for i in idx], axis=1))
    return np.concatenate(rows, axis=0)


def speaking_mask(corpus: Corpus, conversation_id: str, person: str, n_frames: int, kinds=("speech",)) -> np.ndarray:
    seg = corpus.segments
    seg = seg[(seg.conversation_id == conversation_id) & (seg.person == person) & seg.kind.isin(kinds)]
    mask = np.zeros(n_frames, bool)
    for r in seg.itertuples():
        mask[int(r.start * FPS):int(np.ceil(r.end * FPS))] = True
    return mask


def motion_variance(corpus: Corpus, window_s: float = 2.0) -> pd.DataFrame:
    """Per 2 s window and person: role (speaker / listener / other) and the temporal variance of the
    expression L2 norm (paper Fig. 5) and of the pose. Speaker: talks >= 60 % of the window. Listener:
    silent (no speech) while the partner talks >= 60 %."""
    rows, w = [], int(window_s * FPS)
    for conv in corpus.conversations.itertuples():
        T = int(conv.n_frames)
        talk = {p: speaking_mask(corpus, conv.conversation_id, p, T) for p in "AB"}
        for p, q in (("A", "B"), ("B", "A")):
            params = np.asarray(corpus.stream(conv.conversation_id, p)["params"])
            exp_norm, pose = np.linalg.norm(params[:, EXPRESSION_SLICE], axis=1), params[:, POSE_SLICE]
            for a in range(0, T - w + 1, w):
                own, other = talk[p][a:a + w].mean(), talk[q][a:a + w].mean()
                role = "speaker" if own >= 0.6 else "listener" if own == 0 and other >= 0.6 else "other"
                rows.append(dict(conversation_id=conv.conversation_id, person=p, split=conv.split, start_s=a / FPS,
                                 role=role, exp_var=float(exp_norm[a:a + w].var()),
                                 pose_var=float(pose[a:a + w].var(0).mean())))
    return pd.DataFrame(rows)


def nod_onsets(pitch: np.ndarray, triggers_s, window_s: float = 0.9, threshold: float = 0.35) -> np.ndarray:
    """Measured reaction latency (s) after each trigger time: the first frame in (t, t + window_s] where the
    downward pitch velocity exceeds `threshold` rad/s (a nod starts by tilting down); NaN if none."""
    vel = np.diff(pitch, prepend=pitch[:1]) * FPS  # rad/s, vel[k] = pitch[k] - pitch[k-1]
    out = []
    for t in triggers_s:
        a, b = int(np.floor(t * FPS)) + 1, min(len(pitch), int(np.ceil((t + window_s) * FPS)) + 1)
        hit = np.flatnonzero(vel[a:b] > threshold)
        out.append((a + hit[0] - 1) / FPS - t if len(hit) else np.nan)  # onset = the frame before the rise
    return np.array(out)


def reaction_latencies(corpus: Corpus) -> pd.DataFrame:
    """The reaction log, plus for nods the latency measured back from the listener's pitch track."""
    ev = corpus.events.copy()
    if ev.empty:
        return ev
    ev["measured_latency"] = np.nan
    pitch_col = column_index("pitch")
    for (cid, p), grp in ev[ev.kind == "nod"].groupby(["conversation_id", "person"]):
        pitch = np.asarray(corpus.stream(cid, p)["params"][:, pitch_col], np.float64)
        ev.loc[grp.index, "measured_latency"] = nod_onsets(pitch, grp.trigger_time.to_numpy())
    lo_hi = ev.kind.map(lambda k: REACTION_RULES.get(k, {}).get("latency", (np.nan, np.nan)))
    ev["rule_lo"], ev["rule_hi"] = [x[0] for x in lo_hi], [x[1] for x in lo_hi]
    return ev


def latency_summary(lat: pd.DataFrame) -> pd.DataFrame:
    g = lat.groupby("kind")
    out = pd.DataFrame({"n": g.size(), "mean_ms": 1000 * g.latency.mean(), "std_ms": 1000 * g.latency.std(),
                        "min_ms": 1000 * g.latency.min(), "max_ms": 1000 * g.latency.max(),
                        "rule_lo_ms": 1000 * g.rule_lo.first(), "rule_hi_ms": 1000 * g.rule_hi.first()})
    nods = lat[lat.kind == "nod"]
    if len(nods):
        err = (nods.measured_latency - nods.latency).abs()
        out.loc["nod", "measured_mean_ms"] = 1000 * nods.measured_latency.mean()
        out.loc["nod", "measured_abs_err_ms"] = 1000 * err.mean()
    return out.round(1)


def vad_report(corpus: Corpus, backend: str = "auto", max_conversations: int | None = None):
    """DetER of a VAD on each person's track against the ground-truth vocal activity.
    Returns (per-track DataFrame, {(conversation, person): hypothesis Annotation}, backend used)."""
    from data_prep import vad

    rows, hyps, used = [], {}, backend
    convs = corpus.conversations.head(max_conversations) if max_conversations else corpus.conversations
    for conv in convs.itertuples():
        for p in "AB":
            audio = np.asarray(corpus.stream(conv.conversation_id, p)["audio"], np.float32) / 32768.0
            hyp, used = vad.detect(audio, f"{conv.conversation_id}_{p}", backend)
            hyps[conv.conversation_id, p] = hyp
            rows.append(dict(conversation_id=conv.conversation_id, person=p, split=conv.split,
                             **vad.detection_error_rate(corpus.annotation(conv.conversation_id, p), hyp, conv.duration)))
    df = pd.DataFrame(rows)
    return df, hyps, used


def pooled_detection_error_rate(df: pd.DataFrame) -> float:
    return float((df.miss_s.sum() + df.false_alarm_s.sum()) / max(df.speech_s.sum(), 1e-9))


def timeline_figure(corpus: Corpus, conversation_id: str, hyps: dict | None = None, t0: float = 0.0, t1: float = 30.0):
    """Turn-taking timeline: per person, ground-truth vocal activity (by kind) and VAD, jaw, smile, pitch
    with the logged nod onsets."""
    import matplotlib.pyplot as plt

    colours = {"speech": "tab:blue", "backchannel": "tab:green", "laugh": "tab:orange"}
    fig, axes = plt.subplots(4, 1, figsize=(12, 6.5), sharex=True, gridspec_kw=dict(height_ratios=[1.3, 1, 1, 1]))
    seg, ev = corpus.segments, corpus.events
    for k, p in enumerate("AB"):
        y = 1 - k
        for r in seg[(seg.conversation_id == conversation_id) & (seg.person == p)].itertuples():
            axes[0].broken_barh([(r.start, r.end - r.start)], (y + 0.05, 0.4), color=colours[r.kind])
        if hyps and (conversation_id, p) in hyps:
            for s in hyps[conversation_id, p].get_timeline():
                axes[0].broken_barh([(s.start, s.duration)], (y - 0.4, 0.35), color="0.4")
        params = np.asarray(corpus.stream(conversation_id, p)["params"])
        t = np.arange(len(params)) / FPS
        ls = "-" if p == "A" else "--"
        axes[1].plot(t, params[:, column_index("jaw_open")], ls, lw=0.8, label=f"{p} jaw_open")
        axes[2].plot(t, params[:, column_index("smile")], ls, lw=0.8, label=f"{p} smile")
        axes[2].plot(t, params[:, column_index("brow_raise")], ls, lw=0.8, label=f"{p} brow_raise")
        axes[3].plot(t, params[:, column_index("pitch")], ls, lw=0.8, label=f"{p} pitch")
        if not ev.empty:
            nods = ev[(ev.conversation_id == conversation_id) & (ev.person == p) & (ev.kind == "nod")]
            axes[3].vlines(nods.onset, -0.2, 0.2, colors="C3" if p == "A" else "C4", lw=0.8)
    axes[0].set_yticks([1.25, 0.78, 0.25, -0.22], ["A truth", "A VAD", "B truth", "B VAD"])
    axes[0].set_ylim(-0.5, 1.6)
    axes[0].set_title(f"{conversation_id}: vocal activity (blue speech, green backchannel, orange laugh; grey VAD)")
    for ax in axes[1:]:
        ax.legend(loc="upper right", fontsize=7, ncol=4)
    axes[3].set_xlim(t0, t1)
    axes[3].set_xlabel("time (s); vertical ticks: logged nod onsets")
    fig.tight_layout()
    return fig


def mouth_audio_correlation(corpus: Corpus) -> pd.DataFrame:
    """Pearson r between jaw_open and the per-frame RMS of the person's own track (lip-sync ground truth)."""
    from data_prep.synth.speech import frame_rms

    rows = []
    for conv in corpus.conversations.itertuples():
        for p in "AB":
            s = corpus.stream(conv.conversation_id, p)
            jaw = np.asarray(s["params"][:, column_index("jaw_open")], np.float64)
            env = frame_rms(np.asarray(s["audio"], np.float32) / 32768.0, len(s["audio"]) // len(jaw))[:len(jaw)]
            rows.append(dict(conversation_id=conv.conversation_id, person=p, r=float(np.corrcoef(jaw, env)[0, 1])))
    return pd.DataFrame(rows)
