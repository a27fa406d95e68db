"""Stage 0: train the motion autoencoder on corpus frames (paper App. B.1: reconstruct a driving frame from
a source frame's identity plus the driving frame's motion), evaluate it on held-out identities, and encode
every stream to motion latents for stages 1-2. Resumable like the generator's loop (same sampler, same
per-step generators), with its own checkpoint because the model and the batches differ."""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .config import ModelConfig
from .data import FramePairs
from .io import torch_save, write_metrics
from .motion_ae import MotionAutoencoder
from .train import RESUMABLE_CHANGES, CsvLog, TrainError, WindowBatches, rng_state, set_rng_state


@dataclass(frozen=True)
class AEProfile:
    name: str
    steps: int
    batch_size: int
    lr: float = 2e-3
    log_every: int = 10
    ckpt_every: int = 100
    seed: int = 0
    eval_pairs: int = 64


AE_PROFILES = {
    "smoke": AEProfile("smoke", steps=40, batch_size=8, log_every=10, ckpt_every=20),
    "quick": AEProfile("quick", steps=400, batch_size=16, ckpt_every=200),
    "full": AEProfile("full", steps=2500, batch_size=16, log_every=50, ckpt_every=500, eval_pairs=256),
    "paper": AEProfile("paper", steps=500_000, batch_size=8, lr=2e-4, log_every=100, ckpt_every=10_000, eval_pairs=1024),
}


def get_ae_profile(name: str, **overrides) -> AEProfile:
    if name not in AE_PROFILES:
        raise KeyError(f"unknown autoencoder profile {name!r}; choose from {sorted(AE_PROFILES)}")
    return replace(AE_PROFILES[name], **overrides)


def save_autoencoder(path, ae: MotionAutoencoder, cfg: ModelConfig, **extra) -> Path:
    return torch_save({"config": asdict(cfg), "autoencoder": ae.state_dict(), **extra}, path)


def load_autoencoder(path) -> tuple[MotionAutoencoder, dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no motion-autoencoder checkpoint; train one with `afsuite train ae`")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "autoencoder" not in state:
        raise ValueError(f"{path}: not a motion-autoencoder checkpoint (no 'autoencoder' entry); official "
                         "weights load with afcore.motion_ae.load_official_motion_ae")
    ae = MotionAutoencoder(ModelConfig(**state["config"]))
    ae.load_state_dict(state["autoencoder"])
    return ae.eval(), state


def ae_tag(ae: MotionAutoencoder) -> str:
    """A short digest of the weights: latents are only valid for the autoencoder that made them."""
    h = hashlib.sha256()
    for k, t in ae.state_dict().items():
        h.update(k.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def evaluate_autoencoder(ae: MotionAutoencoder, corpus_dir, split: str = "test", pairs: int = 64, seed: int = 1) -> dict:
    """Cross-frame reconstruction of held-out identities: L1, PSNR and SSIM (torchmetrics, data range 2)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    data = FramePairs(corpus_dir, split, pairs_per_clip=max(1, pairs // 4), seed=seed)
    batch = next(iter(DataLoader(data, batch_size=min(pairs, len(data)), shuffle=False)))
    recon = ae.eval().reconstruct(batch["source"], batch["driving"]).clamp(-1, 1)
    target = batch["driving"]
    return {"split": split, "pairs": int(target.shape[0]), "l1": F.l1_loss(recon, target).item(),
            "psnr_db": peak_signal_noise_ratio(recon, target, data_range=2.0).item(),
            "ssim": structural_similarity_index_measure(recon, target, data_range=2.0).item()}


def train_autoencoder(corpus_dir, cfg: ModelConfig, profile: AEProfile, out, *, resume: bool = False,
                      progress: bool = True) -> dict:
    out = Path(out)
    ckpt = out / "ae_last.pt"
    torch.manual_seed(profile.seed)
    ae = MotionAutoencoder(cfg)
    opt = torch.optim.Adam(ae.parameters(), lr=profile.lr, betas=(0.5, 0.99))
    step = 0
    if resume:
        if not ckpt.is_file():
            raise TrainError(f"{ckpt}: nothing to resume; run without --resume to start")
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        changed = [k for k, v in asdict(profile).items() if k not in RESUMABLE_CHANGES and state["profile"].get(k) != v]
        if changed or state["config"] != asdict(cfg):
            raise TrainError(f"{ckpt}: written by a run with another profile or config; resume with the same options")
        ae.load_state_dict(state["autoencoder"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        set_rng_state(state["rng"])
    data = FramePairs(corpus_dir, "train", seed=profile.seed)
    sampler = WindowBatches(len(data), profile.batch_size, profile.seed, step)
    batches = iter(DataLoader(data, batch_sampler=sampler))
    log = CsvLog(out / "ae_log.csv", ["step", "l1", "steps_per_s"], step)
    t0, t_log, s_log = time.perf_counter(), time.perf_counter(), step
    ae.train()
    with tqdm(total=profile.steps, initial=step, desc=f"autoencoder {cfg.name}", disable=not progress) as bar:
        while step < profile.steps:
            batch = next(batches)
            loss = F.l1_loss(ae.reconstruct(batch["source"], batch["driving"]), batch["driving"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            if step % profile.log_every == 0 or step == profile.steps:
                now = time.perf_counter()
                log.write({"step": step, "l1": loss.item(), "steps_per_s": (step - s_log) / (now - t_log)})
                bar.set_postfix(l1=f"{loss.item():.4f}")
                t_log, s_log = now, step
            if step % profile.ckpt_every == 0 or step == profile.steps:
                save_autoencoder(ckpt, ae, cfg, optimizer=opt.state_dict(), step=step, profile=asdict(profile),
                                 rng=rng_state())
    wall = time.perf_counter() - t0
    ae.eval()
    tag = ae_tag(ae)
    save_autoencoder(out / "autoencoder.pt", ae, cfg, ae_tag=tag, profile=asdict(profile))
    summary = {"steps": step, "wall_s": wall, "final_l1": loss.item() if profile.steps else None, "ae_tag": tag,
               "held_out": evaluate_autoencoder(ae, corpus_dir, "test", profile.eval_pairs)}
    write_metrics(out, summary, stage="autoencoder", profile=asdict(profile), config=asdict(cfg), corpus=str(corpus_dir))
    return summary
