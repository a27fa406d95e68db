"""Write notebooks/04_dpo.ipynb (no outputs) with nbformat.

Run from the repo root: `.venv/bin/python notebooks/src/make_04.py`.
"""

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbwrite import KERNEL, write_notebook

INTRO = """# 04 · Learning from losing: DPO fine-tuning (stage 2)

The paper fine-tunes the stage-1 model with L_ft = L_DF + λ·L_DPO (App. C), λ = 0.1, β = 1000, against a
frozen copy of itself. The preferred sample is the **ground-truth** motion; the less-preferred one is a
sample of a **talking-only model conditioned on the avatar audio alone** (`talking`, trained in 03). We
also try the cheaper **dropped** loser (the stage-1 model itself with the user conditions zeroed) and
compare the two, and sweep β, whose useful range depends on the scale of the per-frame L1 errors (hence
on the latent scale, recorded by 02).

Table 5/6 layout: w/o m_u (03), w/ m_u (03, stage 1), w/ m_u + DPO (here), scored on the held-out test
identities with 02's ridge readout. FID, FVD, CSIM, LSE-D, LSE-C are scored on frames drawn from each row's
motion (`eval.video_scores`) by the networks with real weights when those are local, else by the embedded
extractors trained on the synthetic corpus; every number names its extractor, and they are "not measured" only
when the extractors can be neither loaded nor trained (the reason is printed). Outputs: `checkpoint.pt` (the DPO
model with the paper's loser, for 07), a before/after video, tables, figures and `metrics.json`. `latents` must
match 03's (see there: "oracle" is a labelled control that bypasses stage 0)."""

PARAMETERS = '''profile = "smoke"
out_dir = "results/smoke/04_dpo"
corpus_dir = "data/corpus_smoke"
autoencoder = ""              # 02's motion_autoencoder.pt (decodes the video)
readout = ""                  # 02's readout.pt; empty: fit the ridge readout on the corpus here
checkpoint = ""               # 03's checkpoint.pt: the stage-1 model (w/ m_u) that DPO starts from
talking_checkpoint = ""       # 03's talking.pt: the paper's loser generator
no_user_checkpoint = ""       # 03's no_user_motion.pt: the "w/o m_u" row (optional)
seed = 0
threads = 1                   # one thread is fastest when other processes share the cores
latents = "autoencoder"        # "autoencoder": 02's latents; "oracle": a fixed linear embedding of the TRUE
                              # face parameters (a control that bypasses stage 0, see eval.experiments)
dpo_steps = 6
batch_size = 2
lr = 1e-4
lam = 0.1                     # paper: 0.1
beta = 1000.0                 # paper: 1000
beta_sweep = []               # extra betas, run with the talking-only loser
losers = ["talking", "dropped"]
loser_nfe = 4                 # transformer calls per block when sampling losers
nfe = 10                      # when sampling the held-out clips
image_path = True             # also score decoded frames with eval.extractors' face-parameter CNN (autoencoder latents)
facecnn = ""                  # a saved embedded-facecnn checkpoint; empty: train one here
facecnn_steps = 600
video_metrics = True          # FID, FVD, CSIM, LSE-D, LSE-C of drawn frames (eval.video_scores)
video_extractors_dir = "data/extractors_bench"  # embedded video extractors missing from the registry's locations
                              # are trained here once at the quick budgets (~30 s on the smoke corpus), then reused
eval_max_frames = 0           # crop held-out clips (0: whole clips)
eval_max_clips = 0            # score at most this many held-out avatar clips, spread evenly (0: all)
video_seconds = 8.0'''

SETUP = '''import sys
from pathlib import Path

root = Path.cwd().resolve()
while not (root / "afcore").is_dir() and root != root.parent:  # Jupyter starts in the notebook's folder
    root = root.parent
sys.path.insert(0, str(root))

import time
from dataclasses import asdict

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, Video, display

from afcore.data import CorpusWindows
from afcore.io import write_metrics
from afcore.model import load_checkpoint
from afcore.train import get_profile
from afcore.train_ae import load_autoencoder
from data_prep.corpus import Corpus
from data_prep.media import write_mp4
from eval import scoring
from eval.experiments import (decode_motion, export_checkpoint, frame_strip, generate_clips, held_out_clips,
                              image_path_params, oracle_latent_corpus, render_params, side_by_side)
from eval.readout import ParamReadout, fit_corpus_readout
from eval.tables import build_table, get_table, to_markdown, write_table
from eval.video_scores import EXTRACTOR_OF, video_columns

torch.set_num_threads(threads)
pd.set_option("display.width", 220)
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
wall, figures, claims = {}, [], []

def save(fig, name):
    fig.savefig(out / name, dpi=110, bbox_inches="tight")
    figures.append(name)
    plt.show()

for name, path in (("checkpoint", checkpoint), ("talking_checkpoint", talking_checkpoint)):
    if (name == "checkpoint" or "talking" in losers) and not (path and Path(path).is_file()):
        raise FileNotFoundError(f"{name} = {path!r}: run notebook 03 first (it writes checkpoint.pt and talking.pt) "
                                "and pass their paths, or `afsuite reproduce --only 04` to wire them")
stage1_model, _ = load_checkpoint(checkpoint)
cfg = stage1_model.cfg
if latents == "oracle":  # the same view 03 trained on (deterministic)
    latent_corpus = str(oracle_latent_corpus(corpus_dir, cfg.latent_dim))
    readout_model = fit_corpus_readout(latent_corpus)
    LATENTS = "ORACLE latents (linear embedding of the true face params; stage 0 bypassed)"
    display(Markdown("**ORACLE LATENTS** (as in 03): a fixed linear embedding of the true face parameters, not the "
                     "autoencoder's; the video is drawn by the corpus renderer from the read-out parameters."))
elif latents == "autoencoder":
    latent_corpus = corpus_dir
    readout_model = ParamReadout.load(readout) if readout else fit_corpus_readout(corpus_dir)
    LATENTS = "autoencoder latents (02)"
else:
    raise ValueError(f"latents must be 'autoencoder' or 'oracle', got {latents!r}")
r2 = readout_model.info["r2_test"]["mean"]
readout_model.save(out / "readout.pt")  # the readout of the latent space this stage's checkpoints live in
clips = held_out_clips(latent_corpus, "test", max_frames=eval_max_frames, max_clips=eval_max_clips)
windows = CorpusWindows(latent_corpus, cfg, "train")
SOURCE = (f"ours: {LATENTS}; synthetic corpus, test split ({len(clips)} avatar clips); config {cfg.name}; DPO {dpo_steps} steps "
          f"x batch {batch_size}, lambda {lam}; params by latent-readout-ridge (test R² {r2:.2f}); nfe {nfe}")'''

DPO = '''from afcore.train import dpo

runs = {f"dpo_{loser}": (loser, beta, lam) for loser in losers}
runs.update({f"dpo_talking_beta{b:g}": ("talking", b, lam) for b in beta_sweep if b != beta and "talking" in losers})
# Control: the same fine-tuning with lambda = 0 (L_DF only, same steps and lr), so that "DPO" is not credited
# with what the extra diffusion-forcing steps do (the loser is sampled but unused).
runs["df_only_control"] = ("dropped", beta, 0.0)
dpo_summaries = {}
for run, (loser, b, lam_run) in runs.items():
    t0 = time.perf_counter()
    prof = get_profile(profile, "dpo", steps=dpo_steps, batch_size=batch_size, lr=lr, lam=lam_run, beta=b,
                       loser=loser, loser_nfe=loser_nfe, seed=seed, ckpt_every=max(dpo_steps, 1),
                       log_every=max(1, dpo_steps // 20))
    dpo_summaries[run] = dpo(checkpoint, windows, prof, out / "runs" / run,
                             loser_model=talking_checkpoint if loser == "talking" else None)
    wall[f"train_{run}"] = time.perf_counter() - t0
main_run = "dpo_talking" if "talking" in losers else f"dpo_{losers[0]}"
export_checkpoint(out / "runs" / main_run / "last.pt", out / "checkpoint.pt", latent_corpus)  # for 07
fig, axes = plt.subplots(1, 4, figsize=(16, 3))
for run in runs:
    log = pd.read_csv(out / "runs" / run / "log.csv")
    dpo_summaries[run]["mean_dpo_weight"] = float(log.dpo_weight.mean())
    for ax, col in zip(axes, ("dpo_loss", "implicit_acc", "reward_margin", "dpo_weight")):
        ax.plot(log.step, log[col], label=run, lw=1)
        ax.set(xlabel="step", title=col)
axes[0].legend(fontsize=7)
save(fig, "dpo_training.png")
display(pd.DataFrame(dpo_summaries).T[["final_loss", "final_df_loss", "final_dpo_loss", "final_implicit_acc",
                                       "final_reward_margin", "final_dpo_weight", "mean_dpo_weight",
                                       "wall_s"]].astype(float).round(4))
display(Markdown("`dpo_weight` = sigmoid(-margin), the factor on L_DPO's gradient: 0.5 at the start (policy = "
                 "reference), near 0 once beta x (error difference) is large, and then DPO has stopped acting; "
                 "compare the run with the lambda = 0 control."))'''

SCORE = '''models = {"w/o m_u": (no_user_checkpoint, False), "w/ m_u": (checkpoint, True)}
models.update({f"w/ m_u + DPO ({run.removeprefix('dpo_')})": (out / "runs" / run / "last.pt", True)
               for run in runs if run.startswith("dpo_")})
models["w/ m_u + L_DF only (control)"] = (out / "runs" / "df_only_control" / "last.pt", True)
generated, scores = {}, {}
for label, (path, user_motion) in models.items():
    if not path:
        continue
    t0 = time.perf_counter()
    model, _ = load_checkpoint(path)
    generated[label] = generate_clips(model, clips, user_motion=user_motion, nfe=nfe, seed=seed)
    scores[label] = scoring.score_latents(generated[label], clips, readout_model, seed=seed)
    wall[f"generate_{label}"] = time.perf_counter() - t0
refs = scoring.reference_rows(clips, readout_model, seed=seed)
display(pd.DataFrame({**scores, **refs}).T.round(4))

# The paper's route: decode -> image-based face-parameter network (a second extractor, rows marked "image path")
image_scores, image_card = {}, None
if image_path and latents == "autoencoder" and autoencoder:
    t0 = time.perf_counter()
    try:
        from eval.extractors.facecnn import FaceParamExtractor, train_facecnn
        fx = FaceParamExtractor.load(facecnn) if facecnn else train_facecnn(steps=facecnn_steps, seed=seed)
        image_card = fx.card
    except Exception as err:  # the extractor package is optional: say why and go on
        image_card = {"name": "not computed", "why": f"{type(err).__name__}: {err}"}
    if "why" not in image_card:
        ae = load_autoencoder(autoencoder)[0]
        user, truth = [c["user_params"] for c in clips], [c["avatar_params"] for c in clips]
        for label in [lab for lab in generated if "beta" not in lab] + ["GT latents decoded"]:
            lat = [c["avatar_latents"] for c in clips] if label.startswith("GT") else generated[label]
            image_scores[label] = scoring.motion_scores(image_path_params(ae, fx, clips, lat, corpus_dir), user, truth,
                                                        seed=seed)
        display(Markdown(f"**Image path** ({image_card['name']}, held-out render R² "
                         f"{image_card.get('quality', {}).get('r2_mean_heldout_renders', float('nan')):.2f}): "
                         "decoded frames -> face-parameter CNN."))
        display(pd.DataFrame(image_scores).T.round(4))
    wall["image_path"] = time.perf_counter() - t0'''

VIDEO_SCORES = '''in_table = {label: generated[label] for label in scores if "beta" not in label}
video_cols = video_columns(in_table, clips, corpus_dir, enabled=video_metrics, latents=latents, autoencoder=autoencoder,
                           readout=readout_model, extractors_dir=video_extractors_dir, threads=threads)
vscores, not_measured = video_cols["scores"], video_cols["not_measured"]
wall.update(video_cols["wall"])
if vscores:
    display(Markdown(video_cols["summary"]))
    display(pd.DataFrame(vscores).T[list(EXTRACTOR_OF)].astype(float).round(4))'''

TABLE = '''T = get_table("table5_6").metrics
main = f"w/ m_u + DPO ({main_run.removeprefix('dpo_')})"
VSOURCE = f"; FID/FVD/CSIM/LSE: {video_cols['source']}" if vscores else ""
rows = [scoring.table_row(f"ours: {label}", SOURCE + VSOURCE, {**scores[label], **vscores.get(label, {})}, T,
                          **{"w/ m_u": "✗" if label == "w/o m_u" else "✓", "DPO": "✓" if "DPO" in label else "✗"})
        for label in scores if "beta" not in label]
control = scores["w/ m_u + L_DF only (control)"]
rows.append(scoring.table_row("GT latents via readout", SOURCE + VSOURCE, {**refs["GT latents via readout"],
                              **vscores.get("GT latents via readout", {})}, T, reference=True))
if vscores:
    rows.append(scoring.table_row("GT (corpus params and frames)",
                                  f"{SOURCE}; FID/FVD/CSIM/LSE: the corpus frames, scored by {video_cols['scored_by']}",
                                  {**refs["GT (corpus params)"], **vscores["GT (corpus frames)"]}, T, reference=True))
if image_scores:
    fx_r2 = image_card.get("quality", {}).get("r2_mean_heldout_renders", float("nan"))
    IMAGE_SOURCE = (SOURCE + VSOURCE).replace(f"params by latent-readout-ridge (test R² {r2:.2f})",
                                              f"params by decoding + {image_card['name']} (held-out render R² {fx_r2:.2f})")
for label, sc in image_scores.items():  # the same decoded frames as above, so the same video scores
    video_of = vscores.get("GT latents via readout" if label.startswith("GT") else label, {})
    rows.append(scoring.table_row(f"ours (image path): {label}", IMAGE_SOURCE, {**sc, **video_of}, T,
                                  reference=label.startswith("GT")))
df = build_table("table5_6", rows, paper_scale=False)  # our scales are not the paper's: bold apart
write_table(df, "table5_6", out)
display(Markdown(to_markdown(df, "table5_6")))
if not_measured:
    display(Markdown("FID, FVD, CSIM, LSE-D, LSE-C: **not measured**: "
                     + "; ".join(sorted(set(not_measured.values())))))
else:
    display(Markdown(f"FID, FVD, CSIM, LSE-D, LSE-C: {video_cols['source']}. Embedded extractors give numbers on their "
                     "own scales: compare our rows with each other and with the GT rows, not with the paper's."))
def dpo_claims(label, b, qualifier="", why=""):  # the paper's four DPO directions, stage 1 -> the run `label`
    return [scoring.direction_claim(f"DPO (talking-only loser) {'lowers' if better == 'down' else 'raises'} {metric} "
                                    f"(Tables 5/6){qualifier}", paper, scores["w/ m_u"][metric], scores[label][metric],
                                    better, metric=metric, extractor_r2=r2,
                                    why=f"{dpo_steps} DPO steps, beta {b:g}; the same steps with lambda = 0 give {metric} "
                                        f"{control[metric]:.4g}; read-out parameters{why}")
            for metric, better, paper in (("rPCC-Exp", "down", "0.042 -> 0.003"), ("rPCC-Pose", "down", "0.146 -> 0.036"),
                                          ("SID", "up", "2.236 -> 2.442"), ("Var", "up", "1.408 -> 1.734"))]
claims += dpo_claims(main, beta)
if "w/o m_u" in scores:
    claims.append(scoring.direction_claim("User motion lowers rPCC-Exp (Table 5)", "0.052 -> 0.042",
                                          scores["w/o m_u"]["rPCC-Exp"], scores["w/ m_u"]["rPCC-Exp"], "down",
                                          metric="rPCC-Exp", why="03's stage-1 checkpoints, rescored here",
                                          extractor_r2=r2))'''

LOSERS = '''compare = pd.DataFrame({label: scores[label] for label in scores
                        if ("DPO" in label or "control" in label) and "beta" not in label}).T
display(Markdown("**Loser kinds** (same init, steps, beta): the paper's talking-only model vs the stage-1 model with "
                 "the user conditions dropped; the control is the same fine-tuning with lambda = 0."))
display(compare[["rPCC-Exp", "rPCC-Pose", "SID", "Var", "FD-Exp", "FD-Pose"]].round(4))
sweep = {b: scores[f"w/ m_u + DPO (talking_beta{b:g})" if b != beta else main] for b in sorted({beta, *beta_sweep})
         if (f"w/ m_u + DPO (talking_beta{b:g})" if b != beta else main) in scores}
if len(sweep) > 1:
    sweep_df = pd.DataFrame(sweep).T
    sweep_df.index.name = "beta"
    for col in ("final_reward_margin", "mean_dpo_weight"):
        sweep_df[col] = [dpo_summaries["dpo_talking" if b == beta else f"dpo_talking_beta{b:g}"][col] for b in sweep_df.index]
    display(Markdown("**Beta sweep** (talking-only loser). The implicit reward is beta x (error difference); once it is "
                     "large the sigmoid saturates and the DPO gradient vanishes, so a useful beta scales with 1 / error scale."))
    display(sweep_df[["rPCC-Exp", "rPCC-Pose", "SID", "Var", "final_reward_margin", "mean_dpo_weight"]].round(4))
    weights = sweep_df["mean_dpo_weight"].to_dict()
    active = scoring.active_beta(weights)
    display(Markdown(f"Largest beta whose DPO term stayed active (mean DPO weight >= {scoring.DPO_ACTIVE_MIN_WEIGHT}): "
                     f"**{active}**; at the paper's beta {beta:g} the mean weight is {weights[beta]:.3g}."))
    if active is not None and active != beta:  # the DPO directions where DPO still acts, beside the paper's beta
        claims += dpo_claims(f"w/ m_u + DPO (talking_beta{active:g})", active, ", at the largest swept beta whose DPO "
                             "term stays active", f"; beta chosen from the training logs only: mean DPO weight "
                             f"{weights[active]:.2f} (paper's beta: {weights[beta]:.2g}), rule eval.scoring.active_beta")
    sweep_df.to_csv(out / "beta_sweep.csv")
    fig, axes = plt.subplots(1, 4, figsize=(13, 2.8))
    for ax, m in zip(axes, ("rPCC-Exp", "rPCC-Pose", "SID", "Var")):
        ax.plot(sweep_df.index, sweep_df[m], marker="o")
        ax.axhline(scores["w/ m_u"][m], color="k", ls="--", lw=0.8, label="stage 1")
        ax.axhline(scores["w/ m_u + L_DF only (control)"][m], color="tab:gray", ls=":", lw=0.8, label="lambda = 0")
        ax.set(xscale="log", xlabel="beta", title=m)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, "beta_sweep.png")'''

VIDEO = '''video = None
if autoencoder or latents == "oracle":
    t0 = time.perf_counter()
    corpus = Corpus(corpus_dir)
    i = 0  # the first held-out clip
    c = clips[i]
    n = min(c["frames"], int(video_seconds * cfg.fps))
    a = c["start_frame"]
    stream, partner = corpus.stream(c["conversation_id"], c["person"]), corpus.stream(c["conversation_id"], c["partner"])
    if latents == "oracle":  # the autoencoder cannot decode oracle latents: draw the read-out parameters
        show = lambda m: render_params(corpus_dir, c["identity"], readout_model(m[:n]))  # noqa: E731
    else:
        ae, ref_frame = load_autoencoder(autoencoder)[0], np.asarray(stream["frames"][a])
        show = lambda m: decode_motion(ae, ref_frame, m[:n])  # noqa: E731
    panels = [np.asarray(partner["frames"][a:a + n]), show(c["avatar_latents"]), show(generated["w/ m_u"][i]),
              show(generated[main][i])]
    audio = np.clip(c["avatar_wave"][:n * 640] + c["user_wave"][:n * 640], -1, 1)
    video = "before_after_dpo.mp4"
    write_mp4(out / video, side_by_side(panels), audio=audio)
    wall["video"] = time.perf_counter() - t0
    how = ("drawn by the corpus renderer from the read-out parameters" if latents == "oracle"
           else "Dec(z_S + m_t, feats_S) of the avatar's first frame")
    display(Markdown("Left to right: the user (corpus frames), the avatar's ground truth, stage 1, stage 1 + DPO; "
                     f"avatar panels are {how}."))
    display(Video(str(out / video), embed=True, width=512))
    save(frame_strip(panels, ["user", "avatar GT", "stage 1", "stage 1 + DPO"], every=12, fps=cfg.fps),
         "before_after_dpo.png")
else:
    print("No autoencoder given: no video (pass 02's motion_autoencoder.pt).")'''

WRITE = '''metrics = {"scores": scores, "reference_scores": refs, "image_path_scores": image_scores, "dpo": dpo_summaries,
           "main_run": main_run,
           "table5_6": df.drop(columns="source").to_dict("records"), "video_scores": vscores,
           "not_measured": not_measured,
           "video": video, "held_out_clips": len(clips)}
path = write_metrics(out, metrics, profile=profile, seed=seed, threads=threads, wall_times=wall, figures=figures,
                     extractors={"motion_params": readout_model.card, "motion_params_image_path": image_card,
                                 "video": video_cols["records"]},
                     claims=claims, config=cfg.to_dict(), dpo={"steps": dpo_steps, "batch_size": batch_size, "lr": lr, "lam": lam, "beta": beta,
                          "beta_sweep": beta_sweep, "losers": losers, "loser_nfe": loser_nfe},
                     corpus=str(corpus_dir), latents=latents, nfe=nfe, outputs={"checkpoint": "checkpoint.pt", "video": video},
                     headline={f"{m}_{k}": scores[label][m] for k, label in (("stage1", "w/ m_u"), ("dpo", main))
                               for m in ("rPCC-Exp", "rPCC-Pose", "SID", "Var")},
                     wall_time_s=sum(wall.values()))
print(f"wrote {path}")
display(pd.DataFrame(claims)[["claim", "paper", "ours", "verdict"]])
display(pd.Series(wall, name="seconds").round(1))'''


VIDEO_MD = """## Video metrics: FID, FVD, CSIM, LSE-D, LSE-C

Each Table 5/6 row's motion is drawn as frames (the corpus renderer for oracle latents, 02's autoencoder
otherwise) and scored against the avatar's corpus frames: FID on all frames, FVD on 16-frame windows, CSIM
against the avatar's first frame (the reference image), LSE with the avatar's own audio. The GT rows are the
yardstick: the corpus frames against themselves (FID = FVD = 0 by construction; their LSE is what the
extractor reads from true lips) and the ground-truth latents drawn the same way as ours. Real weights
(`data/weights/`) or full-budget embedded checkpoints (`data/extractors/`) are used when present; otherwise the
embedded extractors are trained once at `registry.train_defaults`' quick budgets into `video_extractors_dir`
(shared with `afsuite bench metrics`): ~30 s on the smoke corpus the first time, a load afterwards, so smoke,
quick and full score with the same extractors."""


def notebook():
    md = new_markdown_cell
    cells = [md(INTRO), new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}), new_code_cell(SETUP),
             md("## DPO runs: the paper's loser, the dropped loser, and the beta sweep"), new_code_cell(DPO),
             md("## Generate the held-out clips and score them"), new_code_cell(SCORE),
             md(VIDEO_MD), new_code_cell(VIDEO_SCORES),
             md("## Paper Tables 5/6 beside ours"), new_code_cell(TABLE),
             md("## Which loser, which beta"), new_code_cell(LOSERS),
             md("## One held-out clip before and after DPO"), new_code_cell(VIDEO),
             md("## Claims and metrics"), new_code_cell(WRITE)]
    return new_notebook(cells=cells, metadata=KERNEL)


if __name__ == "__main__":
    write_notebook(notebook(), "notebooks/04_dpo.ipynb")
