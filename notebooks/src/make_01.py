"""Write notebooks/01_dataset_curation.ipynb (no outputs) with nbformat.

Run from the repo root: `.venv/bin/python notebooks/src/make_01.py`.
"""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbwrite import KERNEL, write_notebook

INTRO = """# 01 · Dataset curation

Builds (or loads) the conversation corpus every later notebook trains and evaluates on, and checks it:
sample frames, turn-taking against a VAD, the speaker-vs-listener motion variance of the paper's Fig. 5,
reaction latencies against the rule table of `data_prep/README.md`, and clips/hours per split. Figures
and `metrics.json` go to `out_dir`.

The paper trains on RealTalk and ViCo (25 fps face crops, 16 kHz audio separated per person). Those cannot
be downloaded here, so the default `source = "synthetic"` generates a corpus with known ground truth
(`afsuite data synth`). Point `source` at a folder of real dyadic videos once `afsuite data ingest` exists."""

PARAMETERS = '''profile = "smoke"
out_dir = "results/smoke/01_dataset_curation"
corpus_dir = "data/corpus_smoke"
source = "synthetic"          # "synthetic", or a folder of real dyadic videos (ingestion)
hours = 0.01                  # hours of conversation to generate (each conversation has two people)
seed = 0
size = 64                     # stored frame size in pixels
workers = 2
voice = "auto"                # "auto" (espeak-ng if installed), "espeak" or "formant"
rebuild = False               # regenerate even if corpus_dir holds a corpus with these settings
vad_backend = "auto"          # "auto" (silero-vad if importable), "silero" or "energy"
max_vad_conversations = 20    # VAD is scored on at most this many conversations
timeline_seconds = 30.0'''

SETUP = '''import sys
from pathlib import Path

root = Path.cwd().resolve()
while not (root / "data_prep").is_dir() and root != root.parent:  # Jupyter starts in the notebook's folder
    root = root.parent
sys.path.insert(0, str(root))

import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from afcore.io import write_metrics
from data_prep import report
from data_prep.corpus import Corpus
from data_prep.synth.behaviour import REACTION_RULES
from data_prep.synth.build import SynthConfig, build_corpus

t_start = time.time()
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
figures = []

def save(fig, name):
    fig.savefig(out / name, dpi=110, bbox_inches="tight")
    figures.append(name)
    plt.show()'''

BUILD = '''if source == "synthetic":
    cfg = SynthConfig(hours=hours, seed=seed, size=size, workers=workers, voice=voice)
    meta_path = Path(corpus_dir) / "corpus.json"
    same = meta_path.exists() and all(json.loads(meta_path.read_text())["config"][k] == v
                                      for k, v in dict(hours=hours, seed=seed, size=size, voice=voice).items())
    if rebuild or not same:
        build_corpus(corpus_dir, cfg, overwrite=True)
else:  # a folder of real dyadic videos (first version: no face parameters, VAD turns instead of truth)
    from data_prep.ingest import IngestConfig, ingest
    if rebuild or not (Path(corpus_dir) / "corpus.json").exists():
        ingest(source, corpus_dir, IngestConfig(size=size, seed=seed), overwrite=True)
corpus = Corpus(corpus_dir)
synthetic = corpus.meta.get("generator") == "data_prep.synth"  # ground-truth params, turns and reactions
summary = report.split_summary(corpus)
overlap = report.identity_overlap(corpus)
display(Markdown(f"**{corpus}** — voice: {corpus.meta.get('voice_backend_description')}; "
                 f"identities in more than one split: **{overlap}**"))
display(summary)'''

GRID = '''grid = report.frame_grid(corpus, n_people=min(6, corpus.manifest.identity.nunique()), n_frames=8)
fig, ax = plt.subplots(figsize=(12, 12 * grid.shape[0] / grid.shape[1]))
ax.imshow(grid, interpolation="nearest")
ax.set_axis_off()
ax.set_title("one row per identity, frames 0.4 s apart")
save(fig, "frame_grid.png")'''

VAD = '''if not synthetic:
    display(Markdown("**Ingested corpus: its turns come from a VAD, so the VAD score below is not against truth.**"))
vad_df, hyps, vad_used = report.vad_report(corpus, backend=vad_backend, max_conversations=max_vad_conversations)
deter = report.pooled_detection_error_rate(vad_df)
if vad_used != "silero":
    display(Markdown("**silero-vad is not importable: the VAD below is an energy detector.**"))
display(Markdown(f"VAD `{vad_used}` against the ground-truth vocal activity: pooled detection error rate "
                 f"**{deter:.3f}** over {len(vad_df)} tracks"))
first = corpus.conversations.iloc[0]
save(report.timeline_figure(corpus, first.conversation_id, hyps, 0.0, min(timeline_seconds, first.duration)), "timeline_vad.png")'''

VARIANCE = '''if not synthetic:
    display(Markdown("**No face parameters in an ingested corpus yet: the variance, latency and lip-sync "
                     "sections below report NaN / nothing.**"))
mv = report.motion_variance(corpus)
roles = mv[mv.role != "other"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for ax, col, title in zip(axes, ("exp_var", "pose_var"), ("expression L2-norm variance", "pose variance")):
    data = [roles[roles.role == r][col].to_numpy() for r in ("speaker", "listener")]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks([1, 2], [f"speaker (n={len(data[0])})", f"listener (n={len(data[1])})"])
    ax.set_title(f"{title} per 2 s window")
fig.suptitle("speaker vs listener motion (cf. the paper's Fig. 5 on ViCo)")
save(fig, "speaker_listener_variance.png")
var_table = roles.groupby("role")[["exp_var", "pose_var"]].mean()
display(var_table)'''

LATENCY = '''lat = report.reaction_latencies(corpus)
lat_summary = report.latency_summary(lat) if len(lat) else pd.DataFrame()
display(lat_summary)
kinds = list(REACTION_RULES)
fig, axes = plt.subplots(1, len(kinds), figsize=(3.2 * len(kinds), 2.8), sharey=False)
for ax, kind in zip(axes, kinds):
    lo, hi = REACTION_RULES[kind]["latency"]
    ax.axvspan(1000 * lo, 1000 * hi, color="0.9", label="rule")
    x = 1000 * lat[lat.kind == kind].latency if len(lat) else []
    ax.hist(x, bins=np.arange(0, 900, 50))
    if kind == "nod" and len(lat):
        ax.hist(1000 * lat[lat.kind == "nod"].measured_latency.dropna(), bins=np.arange(0, 900, 50),
                histtype="step", color="C3", label="measured from pitch")
        ax.legend(fontsize=7)
    ax.set_title(f"{kind} (n={len(x)})", fontsize=9)
    ax.set_xlabel("latency (ms)")
fig.tight_layout()
save(fig, "reaction_latency.png")
lip = report.mouth_audio_correlation(corpus)
display(Markdown(f"jaw_open vs audio RMS envelope: mean Pearson r = **{lip.r.mean():.3f}** over {len(lip)} tracks"))'''

SPLITS = '''fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
summary["clips"].plot.bar(ax=axes[0], title="clips per split", rot=0)
summary["hours"].plot.bar(ax=axes[1], title="hours of conversation per split", rot=0, color="C1")
fig.tight_layout()
save(fig, "splits.png")'''

METRICS = '''def rounded(x, n=4):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), n)

latency = {}
for kind, row in lat_summary.iterrows():
    lo, hi = REACTION_RULES[kind]["latency"]
    k = lat[lat.kind == kind].latency
    latency[kind] = dict(n=int(row.n), mean_ms=rounded(row.mean_ms, 1), std_ms=rounded(row.std_ms, 1),
                         min_ms=rounded(row.min_ms, 1), max_ms=rounded(row.max_ms, 1), rule_ms=[1000 * lo, 1000 * hi],
                         in_rule_fraction=rounded(((k >= lo - 1e-6) & (k <= hi + 1e-6)).mean()))
if "nod" in latency and "measured_abs_err_ms" in lat_summary:
    latency["nod"]["measured_abs_err_ms"] = rounded(lat_summary.loc["nod", "measured_abs_err_ms"], 1)
sp, li = (var_table.loc[r] if r in var_table.index else None for r in ("speaker", "listener"))
metrics = {
    "corpus": dict(dir=str(corpus_dir), source=source, n_conversations=len(corpus.conversations),
                   n_clips=int(corpus.manifest.clip_id.nunique()), n_identities=int(corpus.manifest.identity.nunique()),
                   size=corpus.meta["size"], voice_backend=corpus.meta["voice_backend"],
                   voice_backend_description=corpus.meta.get("voice_backend_description"),
                   build_seconds=corpus.meta.get("build_seconds"),
                   per_split=summary.reset_index().to_dict(orient="records")),
    "identities_in_more_than_one_split": overlap,
    "vad": dict(backend=vad_used, detection_error_rate=rounded(deter), n_tracks=len(vad_df),
                miss_s=rounded(vad_df.miss_s.sum(), 2), false_alarm_s=rounded(vad_df.false_alarm_s.sum(), 2),
                speech_s=rounded(vad_df.speech_s.sum(), 2)),
    "motion_variance": dict(
        speaker_exp_var=rounded(sp.exp_var if sp is not None else None, 5),
        listener_exp_var=rounded(li.exp_var if li is not None else None, 5),
        speaker_pose_var=rounded(sp.pose_var if sp is not None else None, 6),
        listener_pose_var=rounded(li.pose_var if li is not None else None, 6),
        n_windows={r: int((roles.role == r).sum()) for r in ("speaker", "listener")}),
    "reaction_latency": latency,
    "mouth_audio_pearson_r": rounded(lip.r.mean()),
}
path = write_metrics(out, metrics, profile=profile, seed=seed, figures=figures,
                     config=dict(source=source, corpus_dir=str(corpus_dir), hours=hours, size=size, voice=voice,
                                 vad_backend=vad_backend), wall_time_s=round(time.time() - t_start, 2))
display(Markdown(f"wrote `{path}`"))
print(json.dumps(metrics, indent=1)[:3000])'''


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata.update(KERNEL)
    params = new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        new_markdown_cell(INTRO), params, new_code_cell(SETUP),
        new_markdown_cell("## The corpus\nBuilt atomically into `corpus_dir` (reused when its settings match)."),
        new_code_cell(BUILD),
        new_markdown_cell("## Sample frames\nIdentities differ in face shape, skin, hair, eyes and background."),
        new_code_cell(GRID),
        new_markdown_cell("## Turn-taking and VAD\nGround-truth vocal activity per person (speech, backchannels, "
                          "laughter) against a VAD run on that person's own track, with the face parameters."),
        new_code_cell(VAD),
        new_markdown_cell("## Speaker vs listener motion (paper Fig. 5)\nListeners move less than speakers."),
        new_code_cell(VARIANCE),
        new_markdown_cell("## Reaction latencies\nLogged latencies against the rule table; nods are also measured "
                          "back from the listener's pitch track."),
        new_code_cell(LATENCY),
        new_markdown_cell("## Clips and hours per split\nSplits are identity-disjoint: val/test people are never "
                          "seen in training."),
        new_code_cell(SPLITS),
        new_markdown_cell("## metrics.json"),
        new_code_cell(METRICS),
    ]
    return nb


if __name__ == "__main__":
    write_notebook(build(), "notebooks/01_dataset_curation.ipynb")
