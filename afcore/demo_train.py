"""How the live demo's tiny bundle is made: stage 0 (motion autoencoder) -> latents -> stage 1 (diffusion
forcing, the suite's own trainer) -> readout, saved in float16 (about 1 MB for both files).

One deviation from the paper's recipe, for this bundle only: the autoencoder is trained with an auxiliary
loss that asks a linear map of its motion code lambda to predict the frame's ground-truth face parameters
(known in the synthetic corpus). Without it a tiny autoencoder trained for minutes puts pose into its motion
latent and next to nothing of the expression (readout R^2 for smile ~0 in-sample, < 0 on held-out people,
measured), so no generator trained on those latents could see a user's smile, let alone answer it. The
generator is trained exactly as in `afcore.train` and learns any reaction from the corpus conversations.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .config import get_config
from .data import (LATENT_DIR, CorpusWindows, FramePairs, corpus_view, encode_corpus_latents, frames_to_images,
                   oracle_latent_corpus)
from .demo_model import DemoModels, demo_config, load_demo_models, readout_for
from .io import torch_save
from .model import load_checkpoint
from .motion_ae import MotionAutoencoder
from .train import TrainProfile, WindowBatches, dpo, runtime, stage1
from .train_ae import ae_tag, evaluate_autoencoder, load_autoencoder


class ParamPairs(FramePairs):
    """FramePairs plus the driving frame's ground-truth parameters (same pairs for the same seed)."""

    def __getitem__(self, i):
        row = self.rows.iloc[i % len(self.rows)]
        rng = np.random.default_rng((self.seed, i))
        a, b = row.start_frame + rng.integers(0, row.n_frames, size=2)
        s = self.corpus.stream(row.conversation_id, row.person)
        return {"source": frames_to_images(s["frames"][a]), "driving": frames_to_images(s["frames"][b]),
                "params": torch.from_numpy(np.array(s["params"][b], np.float32))}


# Per-column weights of the auxiliary loss: what the demo shows (smile, brows, jaw, head pose) counts most;
# blink and gaze are a pixel or two at 64 px and mostly noise to the encoder.
AUX_COLUMN_WEIGHTS = {"jaw_open": 1.0, "smile": 3.0, "brow_raise": 2.0, "blink": 0.3, "gaze_x": 0.3, "gaze_y": 0.3,
                      "laugh": 1.0, "yaw": 1.0, "pitch": 1.0, "roll": 1.0}


def train_expressive_autoencoder(corpus_dir, cfg, out, *, steps: int, batch: int = 16, lr: float = 2e-3,
                                 aux_weight: float = 1.0, seed: int = 0, progress: bool = False) -> tuple:
    """L1 cross-frame reconstruction (App. B.1) + aux_weight x weighted MSE(linear(lambda), standardised params)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    ae, head = MotionAutoencoder(cfg), nn.Linear(cfg.motion_dirs, 10)
    data = ParamPairs(corpus_dir, "train", seed=seed)
    sample = np.concatenate([np.asarray(data.corpus.stream(c, p)["params"][::10]) for c, p in
                             data.rows[["conversation_id", "person"]].drop_duplicates().itertuples(index=False)])
    mean, std = torch.from_numpy(sample.mean(0)), torch.from_numpy(sample.std(0) + 1e-3)
    weights = torch.tensor([AUX_COLUMN_WEIGHTS[c] for c in data.corpus.columns]) / sum(AUX_COLUMN_WEIGHTS.values())
    opt = torch.optim.Adam([*ae.parameters(), *head.parameters()], lr=lr, betas=(0.5, 0.99))
    batches = iter(DataLoader(data, batch_sampler=WindowBatches(len(data), batch, seed)))
    log_path, t0 = out / "ae_log.csv", time.perf_counter()
    with open(log_path, "w", newline="") as f:
        log = csv.writer(f)
        log.writerow(["step", "l1", "aux_mse", "elapsed_s"])
        ae.train()
        for step in tqdm(range(1, steps + 1), desc="autoencoder (expressive)", disable=not progress):
            b = next(batches)
            n = b["source"].shape[0]
            z, feats = ae.encode_identity(torch.cat([b["source"], b["driving"]]))
            lam = ae.lambda_head(z[n:])
            recon = ae.decode(z[:n] + ae.lambda_to_motion(lam), [x[:n] for x in feats])
            l1 = F.l1_loss(recon, b["driving"])
            aux = (((head(lam) - (b["params"] - mean) / std) ** 2).mean(0) * weights).sum()
            opt.zero_grad(set_to_none=True)
            (l1 + aux_weight * aux).backward()
            opt.step()
            if step % 50 == 0 or step == steps:
                log.writerow([step, round(l1.item(), 5), round(aux.item(), 5), round(time.perf_counter() - t0, 1)])
                f.flush()
    ae.eval()
    half_round(ae)
    held = evaluate_autoencoder(ae, corpus_dir, "test", 32)
    return ae, {"steps": steps, "final_l1": l1.item(), "final_aux_mse": aux.item(), "held_out": held,
                "wall_s": round(time.perf_counter() - t0, 1)}


@torch.no_grad()
def half_round(module: nn.Module) -> nn.Module:
    """Round every float tensor through float16 in place: the bundle is stored in float16, so the latents the
    generator trains on must come from exactly the autoencoder that will be shipped."""
    for t in module.state_dict().values():
        if t.is_floating_point():
            t.copy_(t.half().float())
    return module


def _half_state(module: nn.Module) -> dict:
    return {k: (v.half() if v.is_floating_point() else v) for k, v in module.state_dict().items()}


def train_demo_models(corpus_dir, out, *, latents: str = "autoencoder", ae_steps: int = 2500, gen_steps: int = 4000,
                      ae_batch: int = 16, gen_batch: int = 8, lr: float = 1e-3, aux_weight: float = 1.0, threads: int = 1,
                      seed: int = 0, progress: bool = False, autoencoder=None, config: str | None = None,
                      dpo_steps: int = 0, dpo_beta: float = 1000.0, **config_overrides) -> DemoModels:
    """The whole recipe into `out`; returns the loaded bundle. Only `out/checkpoint.pt` (and, for autoencoder
    latents, `out/autoencoder.pt`; float16, no optimiser state) are meant to be kept. `latents`: "autoencoder"
    (stage 0 is trained, or `autoencoder` = a bundle's autoencoder.pt is reused) or "oracle" (the corpus' true
    parameters embedded, afcore.data.oracle_latent_corpus: no stage 0, the avatar is drawn by the renderer).
    `config`: a named config instead of the tiny-demo size (e.g. "tiny-reactive"). `dpo_steps` > 0 (oracle latents):
    then stage 2, DPO with the cheaper loser (this model with the user's conditions dropped), lr 1e-4, lambda 0.1."""
    if latents not in ("autoencoder", "oracle"):
        raise ValueError(f"latents must be 'autoencoder' or 'oracle', got {latents!r}")
    if dpo_steps and latents != "oracle":
        raise ValueError("dpo_steps is only wired for latents='oracle'; run `afsuite train dpo` on the checkpoint instead")
    out = Path(out)
    cfg = get_config(config, **config_overrides) if config else demo_config(**config_overrides)
    recipe = {"corpus": str(corpus_dir), "corpus_meta": json.loads((Path(corpus_dir) / "corpus.json").read_text())["config"],
              "latents": latents, "gen_steps": gen_steps, "gen_batch": gen_batch, "lr": lr, "seed": seed,
              "threads": threads, "config": asdict(cfg), "how": "afcore.demo_train.train_demo_models"}
    profile = TrainProfile("demo", steps=gen_steps, batch_size=gen_batch, lr=lr, log_every=50,
                           ckpt_every=max(min(gen_steps, 1000), 1), seed=seed)
    t0 = time.perf_counter()
    if latents == "oracle":
        view = oracle_latent_corpus(corpus_dir, cfg.latent_dim)
        windows, final = CorpusWindows(view, cfg, split="train"), out / "gen_run" / "last.pt"
        with runtime("cpu", threads):
            gen_summary = stage1(cfg, windows, profile, out / "gen_run", resume=final.exists())
            recipe.update(gen_final_loss=gen_summary.get("final_loss"))
            if dpo_steps:
                dpo_profile = TrainProfile("demo-dpo", steps=dpo_steps, dpo_steps=dpo_steps, batch_size=gen_batch, lr=1e-4,
                                           log_every=25, ckpt_every=max(min(dpo_steps, 200), 1), seed=seed,
                                           loser="dropped", loser_nfe=6, beta=dpo_beta)
                init, final = final, out / "dpo_run" / "last.pt"
                dpo_summary = dpo(init, windows, dpo_profile, out / "dpo_run", resume=final.exists())
                recipe.update(dpo_steps=dpo_steps, dpo_beta=dpo_beta, dpo_lr=1e-4, dpo_loser="dropped",
                              dpo_final={k: dpo_summary.get(f"final_{k}")
                                         for k in ("loss", "implicit_acc", "reward_margin", "dpo_weight")})
        recipe.update(wall_s=round(time.perf_counter() - t0, 1))
        return export_oracle_bundle(final, view, out / "checkpoint.pt", recipe)
    recipe.update(ae_steps=ae_steps, ae_batch=ae_batch, aux_weight=aux_weight, aux_column_weights=AUX_COLUMN_WEIGHTS)
    with runtime("cpu", threads):
        if autoencoder:
            ae, ae_state = load_autoencoder(autoencoder)
            ae_summary = {"reused": str(autoencoder), "recipe": (ae_state.get("recipe") or {}).get("ae")}
        else:
            ae, ae_summary = train_expressive_autoencoder(corpus_dir, cfg, out / "ae_run", steps=ae_steps, batch=ae_batch,
                                                          aux_weight=aux_weight, seed=seed, progress=progress)
        tag = ae_tag(ae)
        view = corpus_view(corpus_dir, out / "corpus_view")
        encode_corpus_latents(view, ae, tag, progress=progress)
        gen_summary = stage1(cfg, CorpusWindows(view, cfg, split="train"), profile, out / "gen_run")
    model, _ = load_checkpoint(out / "gen_run" / "last.pt")
    half_round(model)
    readout = readout_for(ae, corpus_dir)
    recipe.update(wall_s=round(time.perf_counter() - t0, 1), ae=ae_summary, gen_final_loss=gen_summary.get("final_loss"))
    torch_save({"config": asdict(cfg), "autoencoder": _half_state(ae), "ae_tag": tag, "recipe": recipe},
               out / "autoencoder.pt")
    torch_save({"config": asdict(model.cfg), "model": _half_state(model), "ae_tag": tag, "readout": readout.state(),
                "recipe": recipe}, out / "checkpoint.pt")
    return load_demo_models(out / "checkpoint.pt", out / "autoencoder.pt")


def export_oracle_bundle(checkpoint, latent_corpus, out, recipe: dict | None = None) -> DemoModels:
    """A stage-1 checkpoint trained on oracle latents (afcore.data.oracle_latent_corpus) -> one float16 file
    that carries its two linear maps (readout and embedding), so the demo needs neither the corpus view nor
    an autoencoder."""
    from .demo_model import oracle_maps
    model, state = load_checkpoint(checkpoint)
    half_round(model)
    readout, embedding = oracle_maps(latent_corpus)
    space = json.loads((Path(latent_corpus) / LATENT_DIR / "meta.json").read_text())["ae_tag"]
    torch_save({"config": asdict(model.cfg), "model": _half_state(model), "latents": "oracle", "latent_space": space,
                "readout": readout.state(), "embedding": embedding.state(),
                "recipe": {**(recipe or {}), "stage": state.get("stage"), "step": state.get("step")}}, out)
    return load_demo_models(out)
