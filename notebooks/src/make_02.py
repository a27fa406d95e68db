"""Write notebooks/02_motion_autoencoder.ipynb (no outputs) with nbformat.

Run from the repo root: `.venv/bin/python notebooks/src/make_02.py`.
"""

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nbwrite import KERNEL, write_notebook

INTRO = """# 02 · Motion autoencoder (stage 0)

The paper retrains FLOAT's LIA-style motion autoencoder on its own data (App. B.1): a frame's latent is
z = z_S + m, with m = Q·λ in the span of 20 learned orthonormal directions, trained by reconstructing a
driving frame D from a source frame S of the same clip, Dec(z_S + m_D, feats_S). This notebook trains it on
the corpus (`afcore.train_ae`), scores cross-frame reconstruction of **held-out identities** (test split),
shows reconstructions and traversals along the 20 directions, encodes every stream to motion latents for
stages 1-2, and fits our face-parameter extractor for generated motion, the ridge readout
`eval.readout.ParamReadout` ("latent-readout-ridge"), whose held-out R² says how much of the corpus's
expression and pose the latents carry.

Outputs in `out_dir`: `motion_autoencoder.pt` (03, 04, 07 read it), `readout.pt`, figures, `metrics.json`."""

PARAMETERS = '''profile = "smoke"
out_dir = "results/smoke/02_motion_autoencoder"
corpus_dir = "data/corpus_smoke"
seed = 0
threads = 1                   # one thread is fastest when other processes share the cores
config = "tiny"               # afcore.config registry name; the corpus frames must be config.image_size px
model_overrides = {}          # ModelConfig fields to change
ae_steps = 40
ae_batch_size = 8
ae_lr = 2e-3
eval_pairs = 64               # held-out (test split) source/driving pairs for PSNR / SSIM
readout_every = 1             # fit the readout on every n-th frame
grid_pairs = 6
traversal_steps = 5'''

SETUP = '''import sys
from pathlib import Path

root = Path.cwd().resolve()
while not (root / "afcore").is_dir() and root != root.parent:  # Jupyter starts in the notebook's folder
    root = root.parent
sys.path.insert(0, str(root))

import shutil
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from afcore.data import encode_corpus_latents, latents_path
from afcore.io import write_metrics
from afcore.train_ae import ae_tag, get_ae_profile, load_autoencoder, train_autoencoder
from data_prep.corpus import Corpus
from data_prep.schema import PARAM_COLUMNS
from eval.experiments import autoencoder_lpips, base_config, reconstruction_grid, traversal_grid
from eval.readout import fit_corpus_readout

torch.set_num_threads(threads)
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
wall, figures, claims = {}, [], []

def save(fig, name):
    fig.savefig(out / name, dpi=110, bbox_inches="tight")
    figures.append(name)
    plt.show()

def show(img, title, name, width=10):
    fig, ax = plt.subplots(figsize=(width, width * img.shape[0] / img.shape[1]))
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    save(fig, name)'''

TRAIN = '''t0 = time.perf_counter()
cfg = base_config(config, model_overrides)
corpus = Corpus(corpus_dir)
if corpus.meta.get("size") != cfg.image_size:
    raise ValueError(f"{corpus_dir} has {corpus.meta.get('size')} px frames but config {config!r} needs "
                     f"{cfg.image_size}: rebuild the corpus with --size {cfg.image_size} or set model_overrides")
ae_profile = get_ae_profile(profile, steps=ae_steps, batch_size=ae_batch_size, lr=ae_lr, seed=seed,
                            eval_pairs=eval_pairs, ckpt_every=max(ae_steps, 1))
summary = train_autoencoder(corpus_dir, cfg, ae_profile, out / "ae_run", progress=True)
shutil.copy(out / "ae_run" / "autoencoder.pt", out / "motion_autoencoder.pt")
ae, _ = load_autoencoder(out / "motion_autoencoder.pt")
wall["train_autoencoder"] = time.perf_counter() - t0
held = summary["held_out"]
t0 = time.perf_counter()
lpips = autoencoder_lpips(ae, corpus_dir, "test", eval_pairs, seed=1)  # the pairs evaluate_autoencoder scores
wall["lpips"] = time.perf_counter() - t0
lpips_text = (f"LPIPS {lpips['lpips']:.4f} ({lpips['extractor']['name']})" if lpips["lpips"] is not None
              else f"**LPIPS: not computed** ({lpips['why']})")
display(Markdown(f"{summary['steps']} steps in {summary['wall_s']:.0f} s. Held-out identities ({held['pairs']} "
                 f"test pairs): **PSNR {held['psnr_db']:.2f} dB, SSIM {held['ssim']:.3f}**, L1 {held['l1']:.4f}; "
                 + lpips_text))
log = pd.read_csv(out / "ae_run" / "ae_log.csv")
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(log.step, log.l1)
ax.set(xlabel="step", ylabel="L1 (train batch)", title="autoencoder training")
save(fig, "ae_loss.png")'''

FIGURES = '''t0 = time.perf_counter()
show(reconstruction_grid(ae, corpus_dir, "test", grid_pairs, seed=seed + 1),
     "held-out identities: source / driving / Dec(z_S + m_D)", "reconstructions.png")
wall["figures_reconstruction"] = time.perf_counter() - t0'''

ENCODE = '''t0 = time.perf_counter()
tag = ae_tag(ae)
encode_corpus_latents(corpus_dir, ae, tag)
wall["encode_latents"] = time.perf_counter() - t0
streams = corpus.manifest[["conversation_id", "person", "split"]].drop_duplicates()
train_latents = np.concatenate([np.load(latents_path(corpus_dir, r.conversation_id, r.person), mmap_mode="r")
                                for r in streams[streams.split == "train"].itertuples()])
Q = ae.directions().detach().numpy()
lambda_std = (train_latents @ Q).std(0)  # m = Q lambda with orthonormal Q: lambda = Q^T m
latent_scale = {"latent_std_mean": float(train_latents.std(0).mean()),
                "latent_norm_mean": float(np.linalg.norm(train_latents, axis=1).mean()),
                "lambda_std": lambda_std.tolist(), "frames": int(len(train_latents))}
display(Markdown(f"Encoded {len(streams)} streams in {wall['encode_latents']:.0f} s (ae_tag `{tag}`). Train latents: "
                 f"mean per-dim std {latent_scale['latent_std_mean']:.4f}, mean norm {latent_scale['latent_norm_mean']:.3f} "
                 "(the scale DPO's beta multiplies, see 04)."))
t0 = time.perf_counter()
test_row = corpus.manifest[corpus.manifest.split == "test"].iloc[0]
frame = np.asarray(corpus.stream(test_row.conversation_id, test_row.person)["frames"][test_row.start_frame])
show(traversal_grid(ae, frame, lambda_std, traversal_steps), "latent traversal: row k = direction k, "
     "lambda_k moved by -2..+2 train std", "traversals.png", width=5)
wall["figures_traversal"] = time.perf_counter() - t0'''

READOUT = '''t0 = time.perf_counter()
readout = fit_corpus_readout(corpus_dir, every=readout_every)
readout.save(out / "readout.pt")
wall["fit_readout"] = time.perf_counter() - t0
r2 = readout.info["r2_test"]
r2_table = pd.DataFrame({split: readout.info[f"r2_{split}"]["per_param"] for split in ("train", "val", "test")})
display(Markdown(f"**Readout R² on held-out identities (test): mean {r2['mean']:.3f}** (expression "
                 f"{r2['expression_mean']:.3f}, pose {r2['pose_mean']:.3f}); alpha {readout.info['alpha']:g} chosen on val."))
display(r2_table.round(3))
sens = np.abs(Q.T @ readout.weight)  # |d param / d lambda_k|: which direction moves which parameter
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
r2_table["test"].plot.bar(ax=axes[0], ylim=(min(0, r2_table["test"].min()), 1), title="readout R² per parameter (test)")
im = axes[1].imshow(sens / sens.max(0, keepdims=True), aspect="auto", cmap="viridis")
axes[1].set(yticks=range(len(Q.T)), xticks=range(len(PARAM_COLUMNS)), xlabel="parameter", ylabel="direction k",
            title="|readout weight| along each direction (column-normalised)")
axes[1].set_xticklabels(PARAM_COLUMNS, rotation=60, fontsize=7)
axes[1].tick_params(axis="y", labelsize=6)
fig.tight_layout()
save(fig, "readout.png")'''

WRITE = '''threshold = 0.5  # fixed before looking: a latent that carries a parameter explains at least half its variance
carried = r2["expression_mean"] >= threshold and r2["pose_mean"] >= threshold
claims.append({"claim": "The motion latent m of z = z_S + m carries facial expression and head motion (paper 2.1)",
               "paper": "qualitative (FLOAT/LIA latent; no number)",
               "ours": f"ridge readout R² on held-out identities: expression {r2['expression_mean']:.3f}, pose {r2['pose_mean']:.3f}",
               "verdict": "reproduced" if carried else "not reproduced",
               "why": f"threshold R² >= {threshold} for both, fixed in advance; {summary['steps']} autoencoder steps"})
metrics = {"autoencoder": {**summary, "ae_tag": tag, "config": cfg.name, "lpips": lpips},
           "readout": readout.card, "readout_r2_test": r2, "latent_scale": latent_scale,
           "streams_encoded": int(len(streams))}
extractors = {"motion_params": readout.card,
              "reconstruction": "PSNR/SSIM via torchmetrics (data range 2) on test-split pairs",
              "lpips": lpips.get("extractor") or f"not computed: {lpips['why']}"}
path = write_metrics(out, metrics, profile=profile, seed=seed, threads=threads, wall_times=wall, figures=figures,
                     extractors=extractors, claims=claims, config=cfg.to_dict(), corpus=str(corpus_dir),
                     outputs={"autoencoder": "motion_autoencoder.pt", "readout": "readout.pt"},
                     headline={"psnr_db": held["psnr_db"], "ssim": held["ssim"], "lpips": lpips["lpips"],
                               "readout_r2_test_mean": r2["mean"]},
                     wall_time_s=sum(wall.values()))
print(f"wrote {path}")
display(pd.Series(wall, name="seconds").round(1))'''


def notebook():
    md = new_markdown_cell
    cells = [md(INTRO), new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}), new_code_cell(SETUP),
             md("## Train, and score held-out identities"), new_code_cell(TRAIN),
             md("## Reconstructions of held-out identities"), new_code_cell(FIGURES),
             md("## Encode every stream; traversals along the 20 motion directions"), new_code_cell(ENCODE),
             md("## Our extractor: motion latent → face parameters (ridge readout)\n\nFitted on the train split's "
                "(latent, parameter) pairs; R² per parameter on the test split (identities never seen in "
                "training). Every motion metric of 03 and 04 goes through it."), new_code_cell(READOUT),
             md("## Claims and metrics"), new_code_cell(WRITE)]
    return new_notebook(cells=cells, metadata=KERNEL)


if __name__ == "__main__":
    write_notebook(notebook(), "notebooks/02_motion_autoencoder.ipynb")
