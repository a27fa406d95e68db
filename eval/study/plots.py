"""Figures in the style of the paper's Fig. (human evaluation): one stacked bar per criterion, A / Tie / B
in green / purple / red with the percentages inside, plus whiskers for the A share's interval.

The functions return matplotlib Figures built without pyplot (no global state; Jupyter shows them
with `display(fig)`); `save_figures` writes PNGs atomically.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

from afcore.io import atomic_path

COLORS = {"A": "#62a46a", "tie": "#9a80bd", "B": "#e06b6b"}  # sampled from the paper's figure
INTERVALS = {"cluster": ("a_share_cluster_bootstrap_ci", "rater x set bootstrap"),
             "wilson": ("a_share_wilson_ci", "Wilson"), "exact": ("a_share_clopper_pearson_ci", "Clopper-Pearson")}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def preference_bars(result: dict, pair: str, interval: str = "cluster", title: str | None = None) -> Figure:
    """Stacked A / Tie / B bars for one system pair, one panel per criterion (3 per row, legend last)."""
    key, label = INTERVALS[interval]
    a_name, b_name = pair.split("__vs__")
    criteria = [c for c, pairs in result["criteria"].items() if pair in pairs]
    cols = 3
    rows = (len(criteria) + 1 + cols - 1) // cols  # one extra cell for the legend
    fig = Figure(figsize=(4.2 * cols, 1.1 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    level = round(100 * result.get("confidence", 0.95))
    for i, (ax, criterion) in enumerate(zip(axes, criteria)):
        s = result["criteria"][criterion][pair]
        left = 0.0
        for part, share in (("A", s["a_share"]), ("tie", s["tie_share"]), ("B", s["b_share"])):
            ax.barh(0, share, left=left, color=COLORS[part], height=0.8)
            if share >= 0.06:
                ax.text(left + share / 2, -0.12, f"{100 * share:.1f}%", ha="center", va="center", color="white",
                        fontsize=11)
            left += share
        if ci := s.get(key):
            ax.errorbar(s["a_share"], 0.26, xerr=[[s["a_share"] - ci[0]], [ci[1] - s["a_share"]]], color="black",
                        capsize=3, lw=1.2)
        ax.set_xlim(0, 1)
        ax.set_axis_off()
        ax.set_title(f"({chr(97 + i)}) {criterion}  (n={s['n']})", y=-0.35, fontsize=11)
    legend_ax = axes[len(criteria)]
    for part, name in (("A", a_name), ("tie", "Tie"), ("B", b_name)):
        legend_ax.barh(0, 0, color=COLORS[part], label=name)
    legend_ax.errorbar([], [], xerr=[], color="black", capsize=3, label=f"{level}% CI of {a_name}\n({label})")
    legend_ax.legend(loc="center", ncols=2, frameon=False, fontsize=10)
    for ax in axes[len(criteria):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def position_bias_plot(result: dict) -> Figure:
    """Share of decisive votes that went to the left side, per criterion and pooled, with intervals."""
    pb = result["position_bias"]
    names = [*pb["per_criterion"], "all criteria"]
    stats = [*pb["per_criterion"].values(), pb]
    fig = Figure(figsize=(6, 0.45 * len(names) + 1.0), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    for yi, s in zip(y, stats):
        if s["left_share"] is not None:
            ci = s["left_share_cluster_bootstrap_ci"]
            ax.errorbar(s["left_share"], yi, xerr=[[s["left_share"] - ci[0]], [ci[1] - s["left_share"]]],
                        fmt="o", color=COLORS["tie"], capsize=3)
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    ax.set_yticks(y, [f"{n}  (p={s['p']:.2g})" if s["p"] is not None else n for n, s in zip(names, stats)])
    ax.set_xlabel("left-side share of non-tie votes (rater x set bootstrap interval)")
    return fig


def bradley_terry_plot(result: dict) -> Figure | None:
    """BT log-strengths with bootstrap intervals, one row of points per criterion (> 2 systems only)."""
    fits = {c: f for c, f in result.get("bradley_terry", {}).items() if f.get("strengths")}
    if not fits:
        return None
    fig = Figure(figsize=(7, 0.5 * len(fits) * len(result["systems"]) / 2 + 1.5), layout="constrained")
    ax = fig.subplots()
    palette = sns.color_palette("deep", len(result["systems"]))
    offsets = np.linspace(0.25, -0.25, len(result["systems"]))
    for row, (criterion, fit) in enumerate(fits.items()):
        for k, system in enumerate(result["systems"]):
            theta = fit["strengths"][system]
            ci = (fit.get("strengths_cluster_bootstrap_ci") or {}).get(system, [theta, theta])
            ax.errorbar(theta, -row + offsets[k], xerr=[[theta - ci[0]], [ci[1] - theta]], fmt="o", capsize=3,
                        color=palette[k], label=system if row == 0 else None)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(-np.arange(len(fits)), list(fits))
    ax.set_xlabel("Bradley-Terry log-strength (mean 0; ties as half wins)")
    ax.legend(frameon=False, fontsize=9)
    return fig


def save_figures(result: dict, out_dir, interval: str = "cluster") -> list[Path]:
    """Write every figure for `result` as PNG into out_dir; returns the paths."""
    out_dir = Path(out_dir)
    figures = {f"preference_{slug(pair)}.png": preference_bars(result, pair, interval)
               for pair in dict.fromkeys(p for pairs in result["criteria"].values() for p in pairs)}
    figures["position_bias.png"] = position_bias_plot(result)
    if (bt := bradley_terry_plot(result)) is not None:
        figures["bradley_terry.png"] = bt
    return [save_figure(fig, out_dir / name) for name, fig in figures.items()]


def save_figure(fig: Figure, path) -> Path:
    """Write a figure as PNG atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(path)
