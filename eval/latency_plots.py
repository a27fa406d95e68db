"""Figures and tables of a `bench_latency` result (notebook 05). Figures are built without pyplot (no global
state; Jupyter shows them with `display(fig)`); `eval.study.plots.save_figure` writes them atomically."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from eval.latency import LABELS, SYSTEMS

PARTS = (("buffer", "algorithmic buffering", "#c9c9c9"), ("condition_ms", "condition encoding", "#8fb8de"),
         ("denoise_ms", "denoising steps", "#3b75af"), ("cache_write_ms", "KV-cache write", "#e8a33d"),
         ("decode", "decode first 10 frames", "#9a80bd"))
PAPER_ROW = {"ours": "Ours", "infp": "INFP* [70]"}


def _ordered(systems: dict) -> list[str]:
    """ours, INFP*, talking-only (a JSON round trip sorts the keys)."""
    return [s for s in SYSTEMS if s in systems]


def breakdown_figure(comparison: dict, paper: dict | None = None) -> Figure:
    """Stacked bars per system: buffering + the compute split (medians) + decoding; the paper's Table 1 latency
    as a marker. The generation part (without decode) is the paper-style figure."""
    systems = _ordered(comparison["systems"])
    fig = Figure(figsize=(9, 1.0 + 0.9 * len(systems)), layout="constrained")
    ax = fig.subplots()
    for i, s in enumerate(systems):
        rec, left = comparison["systems"][s], 0.0
        values = {"buffer": rec["algorithmic"]["algorithmic_ms"], **rec["steady"]["split_median_ms"],
                  "decode": (rec["decode"] or {}).get("first_chunk_ms", 0.0)}
        for key, label, color in PARTS:
            v = values.get(key, 0.0) / 1000
            ax.barh(i, v, left=left, color=color, label=label if i == 0 else None, edgecolor="white")
            left += v
        table1 = (paper or {}).get("table1_latency_s", {})
        text = f"  {rec['paper_style_ms'] / 1000:.2f} s, {left:.2f} s with decode"
        if PAPER_ROW.get(s) in table1:  # the paper's figure as a tick across the bar
            v = table1[PAPER_ROW[s]]
            ax.plot([v, v], [i - 0.45, i + 0.45], color="black", lw=2, label="paper Table 1 (H100)" if s == "ours" else None)
            text += f" (paper {v:g} s)"
            left = max(left, v)
        ax.text(left, i, text, va="center", fontsize=8)
    ax.set_yticks(range(len(systems)), [LABELS[s] for s in systems])
    ax.invert_yaxis()
    st = comparison["systems"][systems[0]]["settings"]
    ax.set_xlabel("seconds")
    ax.set_xlim(0, ax.get_xlim()[1] * 1.25)  # room for the labels
    ax.set_title(f"Latency breakdown, {comparison['config']} config, {st['device']} {st['dtype']}, "
                 f"{st['threads']} threads, NFE {st['nfe']} (medians, interleaved)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def session_figure(session: dict, target_ms: float | None = 40.0) -> Figure:
    """Per-block compute over session time (dots, rolling medians of the long session and of the interleaved
    young reference) and resident memory (right axis)."""
    s = session["series"]
    t, ms, rss = np.asarray(s["t_s"]) / 60, np.asarray(s["block_ms"]), np.asarray(s["rss_mb"])
    k = max(1, round(session["window_seconds"] * 1000 / session["block_duration_ms"]))
    roll = lambda a: pd.Series(a).rolling(k, min_periods=1, center=True).median()
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(t, ms, ".", ms=2, alpha=0.3, color="#3b75af", label="long session, per block")
    ax.plot(t, roll(ms), color="#1b3f66", label=f"long session, rolling median ({session['window_seconds']:g} s)")
    if "reference_ms" in s:
        ax.plot(t, roll(s["reference_ms"]), color="#62a46a", lw=1, label="young reference session (interleaved)")
    if target_ms:
        ax.axhline(target_ms, ls="--", color="grey", lw=0.8, label=f"{target_ms:g} ms target")
    ax.set_xlabel("session time (min)")
    ax.set_ylabel("compute per block (ms)")
    ax.set_ylim(0, max(np.percentile(ms, 99) * 1.2, (target_ms or 0) * 1.2))
    ax2 = ax.twinx()
    ax2.plot(t, rss, color="#e8a33d", lw=1, label="RSS (MB)")
    ax2.set_ylabel("RSS (MB)")
    ax2.set_ylim(min(0, rss.min()), max(rss.max() * 1.3, 100))  # from 0: a flat line must look flat
    ax.legend(fontsize=7, loc="upper left")
    ax2.legend(fontsize=7, loc="upper right")
    cancelled = session.get("drift_cancelled_last_over_first")
    ax.set_title(f"{session['config']}: last/first {session['window_seconds']:g} s = "
                 f"{session['last_over_first_window']:.3f} raw" + (f", {cancelled:.3f} drift-cancelled" if cancelled
                                                                   is not None else "")
                 + f"; RSS {session['rss_mb_first_window']:.0f} -> {session['rss_mb_last_window']:.0f} MB", fontsize=9)
    return fig


def cue_figure(cue: dict) -> Figure:
    """Histogram of cue-to-reaction delays, or a panel saying why it was not measured."""
    ours = cue.get("ours", cue)
    fig = Figure(figsize=(8, 3.0), layout="constrained")
    ax = fig.subplots()
    if ours.get("status") != "measured" or not ours.get("media_delay"):
        fig.set_size_inches(8, 1.0)
        ax.axis("off")
        why = ours.get("reason", "no reactions detected")
        ax.text(0.5, 0.5, f"cue-to-reaction {ours.get('status', 'not measured')}:\n{why}",
                ha="center", va="center", wrap=True, fontsize=9)
        return fig
    media = np.array([r["media_delay_ms"] for r in ours["records"] if r["reacted"]])
    bins = np.linspace(min(media.min(), 0) - 40, media.max() + ours["system_delay_ms"] + 40, 30)
    ax.hist(media, bins=bins, alpha=0.6, color="#8fb8de", label="media delay (cue onset -> reaction onset)")
    ax.hist(media + ours["system_delay_ms"], bins=bins, alpha=0.6, color="#3b75af",
            label=f"end to end (+ block + compute = {ours['system_delay_ms']:.0f} ms)")
    if ours.get("corpus_reaction_delay"):
        ax.axvline(ours["corpus_reaction_delay"]["median_ms"], color="black", ls="--",
                   label="corpus' own reaction delay (median)")
    ax.set_xlabel("ms")
    ax.set_ylabel("injections")
    ax.set_title(f"cue-to-reaction: {ours['n_reacted']}/{ours['n_injections']} cues got a reaction", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def kv_cache_figure(kv: dict) -> Figure:
    fig = Figure(figsize=(7, 2.8), layout="constrained")
    ax = fig.subplots()
    for c, color in (("on", "#3b75af"), ("off", "#e06b6b")):
        ax.plot(kv[c]["series_ms"], color=color, label=f"KV cache {c}")
    ax.set_xlabel("block index")
    ax.set_ylabel("compute per block (ms)")
    ax.set_title(f"KV cache over a short session ({kv['seconds']:.0f} s): off/on at the end = "
                 f"{kv['last_off_over_on']:.1f}x", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def table1_latency(result: dict) -> pd.DataFrame:
    """Our latency figures beside the paper's Table 1 latency column."""
    paper, rows = result["paper"]["table1_latency_s"], []
    for s in _ordered(result["comparison"]["systems"]):
        rec = result["comparison"]["systems"][s]
        st, steady = rec["settings"], rec["steady"]["per_unit"]
        rows.append({"system": LABELS[s], "paper latency (s, H100)": paper.get(PAPER_ROW.get(s), np.nan),
                     f"buffering + compute (s, {st['device']})": rec["paper_style_ms"] / 1000,
                     "algorithmic (s)": rec["algorithmic"]["algorithmic_ms"] / 1000,
                     "compute p50 (ms)": steady["median_ms"], "compute p95 (ms)": steady["p95_ms"],
                     "with decode (s)": rec["with_decode_ms"] / 1000, "start-up (s)": rec["startup"]["startup_ms"] / 1000,
                     "NFE": st["nfe"], "threads": st["threads"], "dtype": st["dtype"]})
    return pd.DataFrame(rows)


def table7_latency(result: dict) -> pd.DataFrame:
    """Block-size sweep beside the paper's Table 7 latency column."""
    return pd.DataFrame([{"frames/block": r["block_frames"], "paper latency (s, H100)": r["paper_table7_latency_s"],
                          "buffering + compute (s)": r["paper_style_ms"] / 1000,
                          "algorithmic (s)": r["algorithmic_ms"] / 1000,
                          "compute p50 (ms)": r["per_unit_median_ms"], "compute p95 (ms)": r["per_unit_p95_ms"]}
                         for r in result["sweeps"]["block"]["rows"]])


def sweep_table(sweep: dict, keys) -> pd.DataFrame:
    return pd.DataFrame([{**{k: r[k] for k in keys}, "compute p50 (ms)": r["per_unit_median_ms"],
                          "compute p95 (ms)": r["per_unit_p95_ms"], "buffering + compute (s)": r["paper_style_ms"] / 1000}
                         for r in sweep["rows"]])


def summary_text(result: dict) -> str:
    """A few lines for a terminal or a Markdown cell."""
    comp, tg = result["comparison"], result["targets"]
    lines = []
    for s in _ordered(comp["systems"]):
        rec = comp["systems"][s]
        u = rec["steady"]["per_unit"]
        lines.append(f"{LABELS[s]:15s} buffering {rec['algorithmic']['algorithmic_ms']:6.0f} ms + compute p50 "
                     f"{u['median_ms']:7.1f} ms (p95 {u['p95_ms']:7.1f}) = {rec['paper_style_ms'] / 1000:.3f} s; "
                     f"start-up {rec['startup']['startup_ms'] / 1000:.2f} s")
    r = comp["ratios"].get("infp_over_ours")
    if r:
        lines.append(f"INFP*/ours (buffering + compute, paired rounds): median {r['paper_style_median_paired']:.2f}x "
                     f"[p5 {r['paper_style_p5']:.2f}, p95 {r['paper_style_p95']:.2f}], paper 6.8x; compute only "
                     f"{r['compute_only_median_paired']:.2f}x")
    if "session_last_over_first_window" in tg:
        lines.append(f"session {tg['session_seconds']:.0f} s: last/first {tg['session_window_s']:g} s = "
                     f"{tg['session_last_over_first_window']:.3f} drift-cancelled, "
                     f"{tg['session_raw_last_over_first']:.3f} raw")
    cue = result["cue_to_reaction"]["ours"]
    lines.append(f"cue-to-reaction: {cue['status']}" + (f" ({cue['reason']})" if "reason" in cue else ""))
    return "\n".join(lines)
