"""Training machinery for stage 1 (diffusion forcing; also trains the INFP* and talking-only baselines) and
stage 2 (DPO: L_ft = L_DF + lambda L_DPO against a frozen copy of the stage-1 model).

One loop serves both stages. It is exactly resumable: every random draw of step s comes from generators
seeded by (seed, step, rank) and the data order is a pure function of (seed, step), so a run killed after
its checkpoint at step k and resumed ends with the same bits as an unbroken run (same device and threads).
Under `torchrun` (WORLD_SIZE > 1) it is DistributedDataParallel: the global batch of `batch_size` windows is
sharded by rank and only rank 0 writes. Outputs in `out/`: last.pt (atomic), log.csv, metrics.json.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import math
import os
import random
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .config import ModelConfig
from .io import atomic_path, write_metrics
from .model import AvatarForcing, load_checkpoint, save_checkpoint
from .objectives import diffusion_forcing_loss, dpo_loss
from .session import generate
from .train_data import WINDOW_KEYS, RandomWindows, TrainError, WindowBatches, check_window, step_generator  # noqa: F401

RESUME_KEYS = ("config", "model", "optimizer", "step", "stage", "profile", "rng", "sampler", "meta")
# Profile fields that may change between a run and its resume: they do not alter the trajectory.
RESUMABLE_CHANGES = ("steps", "log_every", "ckpt_every", "workers")


# ------------------------------------------------------------------------------------------------ profiles
@dataclass(frozen=True)
class TrainProfile:
    name: str
    steps: int  # optimiser steps of stage 1 (a DPO profile from `get_profile(.., "dpo")` carries dpo_steps here)
    batch_size: int  # global batch: split over the ranks of a DDP run
    lr: float
    log_every: int
    ckpt_every: int
    seed: int = 0
    grad_clip: float | None = 1.0  # None: no clipping (the paper reports none)
    workers: int = 0  # DataLoader worker processes
    dpo_steps: int = 0
    lam: float = 0.1  # lambda in L_ft = L_DF + lambda L_DPO
    beta: float = 1000.0
    loser: str = "talking"  # "talking": talking-only model (paper); "dropped": stage-1 model, user conditions zeroed
    loser_nfe: int | None = None  # transformer calls per block when sampling losers; None: the config's nfe


PROFILES = {
    "smoke": TrainProfile("smoke", steps=30, batch_size=2, lr=1e-3, log_every=5, ckpt_every=10, dpo_steps=6,
                          loser="dropped", loser_nfe=4),
    "quick": TrainProfile("quick", steps=300, batch_size=4, lr=5e-4, log_every=10, ckpt_every=100, dpo_steps=60,
                          loser="dropped", loser_nfe=6),
    "full": TrainProfile("full", steps=3000, batch_size=8, lr=3e-4, log_every=50, ckpt_every=500, dpo_steps=500),
    # Paper 5.2 / App. D.2: Adam, lr 1e-4, batch 8, 2000k steps; DPO 5k steps, lambda 0.1, beta 1000.
    "paper": TrainProfile("paper", steps=2_000_000, batch_size=8, lr=1e-4, log_every=100, ckpt_every=10_000,
                          grad_clip=None, workers=4, dpo_steps=5000),
}


def get_profile(name: str, stage: str = "stage1", **overrides) -> TrainProfile:
    """The named profile for `stage` ("stage1" | "dpo"); overrides apply last, so `steps=` sets either stage."""
    if name not in PROFILES:
        raise KeyError(f"unknown training profile {name!r}; choose from {sorted(PROFILES)}")
    profile = PROFILES[name]
    if stage == "dpo":
        profile = replace(profile, steps=profile.dpo_steps)
    profile = replace(profile, **overrides)
    if profile.loser not in ("talking", "dropped"):
        raise ValueError(f"loser must be 'talking' or 'dropped', got {profile.loser!r}")
    return profile


# ------------------------------------------------------------------------------------------------ runtime
@dataclass
class Runtime:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextmanager
def runtime(device: str | None = None, threads: int | None = None):
    """Process set-up: threads, determinism, and (under torchrun) the process group; undone on exit."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        if world > 1:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
    if threads:
        torch.set_num_threads(threads)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if world > 1:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    try:
        yield Runtime(rank, world, dev)
    finally:
        if world > 1:
            dist.destroy_process_group()
        torch.use_deterministic_algorithms(was_deterministic)


def rng_state() -> dict:
    """The global generators (the loop draws from per-step ones; these cover any other code that draws)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def weights_digest(module: nn.Module) -> str:
    """sha256 of every state tensor's bytes, in key order: equal digests = bit-identical weights."""
    h = hashlib.sha256()
    for key, t in module.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ checkpoints
def read_checkpoint(path, need=RESUME_KEYS) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no checkpoint here; run without --resume to start, or point to the right file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are pickled
    except Exception as err:
        raise TrainError(f"{path}: cannot read this checkpoint ({type(err).__name__}: {err}); it is corrupt or "
                         "truncated: delete it and resume from a copy, or start again without --resume") from err
    missing = [k for k in need if not isinstance(state, dict) or k not in state]
    if missing:
        raise TrainError(f"{path}: not a resumable training checkpoint (missing {missing}); a model-only "
                         "checkpoint can start stage 2 with `train dpo --init`, not resume a run")
    return state


def load_model(path) -> tuple[AvatarForcing, dict]:
    """`load_checkpoint` with every failure as a TrainError that names the file."""
    try:
        return load_checkpoint(path)
    except (FileNotFoundError, ValueError) as err:  # their messages name the file already
        raise TrainError(str(err)) from err
    except Exception as err:
        raise TrainError(f"{path}: cannot load this checkpoint ({type(err).__name__}: {err}); it is corrupt, "
                         "truncated or from another model version: retrain it or pass another file") from err


def check_same_run(path, state: dict, stage: str, cfg: ModelConfig, profile: TrainProfile, meta: dict):
    """A resume must continue the same run: a different config, profile or DPO reference would not."""
    old, new = {**state["profile"], "stage": state["stage"]}, {**asdict(profile), "stage": stage}
    diffs = [f"profile {k}: {old.get(k)!r} -> {v!r}" for k, v in new.items()
             if k not in RESUMABLE_CHANGES and old.get(k) != v]
    diffs += [f"config {k}: {state['config'].get(k)!r} -> {v!r}" for k, v in asdict(cfg).items()
              if state["config"].get(k) != v]
    diffs += [f"{k}: {state['meta'].get(k)!r} -> {v!r}" for k, v in meta.items()
              if k.endswith("digest") and state["meta"].get(k) != v]
    if diffs:
        raise TrainError(f"{path}: written by a different run ({'; '.join(diffs)}); resume with the original options "
                         "or start a fresh run in another --out")


# ------------------------------------------------------------------------------------------------ objectives
class Objective(nn.Module):
    """What DDP wraps: one forward is the whole loss, so gradient hooks see every use of the weights."""

    def __init__(self, model: AvatarForcing, reference: AvatarForcing | None = None, lam=0.0, beta=0.0):
        super().__init__()
        self.model, self.reference, self.lam, self.beta = model, reference, lam, beta

    def train(self, mode: bool = True):
        super().train(mode)
        if self.reference is not None:
            self.reference.eval()  # frozen, always
        return self

    def forward(self, window: dict, loser: torch.Tensor | None, generator: torch.Generator):
        batch = self.model.batch(*(window[k] for k in WINDOW_KEYS))
        df = diffusion_forcing_loss(self.model.generator, batch, generator)
        if loser is None:
            return df, {"loss": df.item()}
        dpo, stats = dpo_loss(self.model.generator, self.reference.generator, batch, loser, self.beta, generator)
        loss = df + self.lam * dpo
        return loss, {"loss": loss.item(), "df_loss": df.item(), **stats}


@torch.no_grad()
def make_losers(sampler: AvatarForcing, window: dict, generator: torch.Generator, nfe: int | None = None):
    """(B, T, D) losers sampled from the avatar audio alone: user audio and user motion are null (zeros in
    the condition space, as for guidance). The first `cfg.window` frames are one block, as the official sampler
    starts a clip (for a training window: all of it, 5x cheaper than streaming it block by block); later
    frames stream. Noise is drawn on the CPU so CPU and CUDA runs share it."""
    cfg = sampler.cfg
    B, T, D = window["motion"].shape
    avatar = sampler.audio(window["avatar_wave"], T)  # (B, T, C), the sampler's own audio encoder
    null = torch.zeros_like(avatar)
    sizes = [cfg.window] + [cfg.block] * -(-max(T - cfg.window, 0) // cfg.block)
    noise = [torch.randn(B, n, D, generator=generator).to(avatar.device) for n in sizes]
    return generate(sampler.generator, window["ref"], avatar, null, null, noise=noise, nfe=nfe, warmup="window")


# ------------------------------------------------------------------------------------------------ the loop
class CsvLog:
    """log.csv, one row per log step. On resume, rows past the checkpoint are dropped (they are logged again)
    with any row a kill cut short."""

    def __init__(self, path: Path, columns: list[str], resume_step: int):
        self.path, self.columns = path, columns
        kept = []
        if resume_step and path.exists():
            with open(path, newline="") as f:
                kept = [r for r in csv.DictReader(f)
                        if None not in r.values() and r["step"].isdigit() and int(r["step"]) <= resume_step]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)

    def write(self, row: dict):
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(row)


def train(model: AvatarForcing, dataset: Dataset, profile: TrainProfile, out, *, stage: str = "stage1",
          reference: AvatarForcing | None = None, loser_sampler: AvatarForcing | None = None, resume: bool = False,
          meta: dict | None = None, rt: Runtime | None = None) -> dict:
    """Run `profile.steps` optimiser steps (all of them, or the rest after a resume); return the summary."""
    rt, out, meta = rt or Runtime(), Path(out), meta or {}
    ckpt_path = out / "last.pt"
    check_window(dataset[0], model.cfg, type(dataset).__name__)
    for m in filter(None, (model, reference, loser_sampler)):
        m.to(rt.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=profile.lr)
    for seed_global in (random.seed, np.random.seed, torch.manual_seed):  # the loop draws from its own generators;
        seed_global(profile.seed)  # seeded globals make any other code that draws reproducible too
    step, elapsed, sums, n_sum = 0, 0.0, {}, 0  # sums / n_sum: stats of the steps since the last log row
    if resume:
        state = read_checkpoint(ckpt_path)
        check_same_run(ckpt_path, state, stage, model.cfg, profile, meta)
        if state.get("threads") != torch.get_num_threads() or state.get("world_size") != rt.world:
            warnings.warn(f"{ckpt_path}: written with {state.get('threads')} threads x {state.get('world_size')} "
                          "processes; resuming with another layout continues the run but not bit for bit")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state.get("elapsed_s", 0.0)
        sums, n_sum = state.get("log_window", ({}, 0))  # the next row averages the same steps (DDP: rank 0's)
        set_rng_state(state["rng"])
    objective = Objective(model, reference, profile.lam, profile.beta).train()
    if rt.world > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[rt.device] if rt.device.type == "cuda" else None)
    sampler = WindowBatches(len(dataset), profile.batch_size, profile.seed, step, rt.rank, rt.world)
    batches = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=profile.workers))
    columns = ["step", "loss", "grad_norm", "lr", "steps_per_s", "elapsed_s"]
    columns += ["df_loss", "dpo_loss", "implicit_acc", "reward_margin", "dpo_weight"] if stage == "dpo" else []
    log = CsvLog(out / "log.csv", columns, step) if rt.main else None
    bar = tqdm(total=profile.steps, initial=step, desc=f"{stage} {model.cfg.name}", disable=not rt.main,
               dynamic_ncols=True)
    start_step, timed_from, last_row = step, step, {}
    t_start = t_window = time.perf_counter()
    while step < profile.steps:
        window = {k: v.to(rt.device) for k, v in next(batches).items() if isinstance(v, torch.Tensor)}
        loser = None
        if stage == "dpo":
            loser = make_losers(loser_sampler, window, step_generator(profile.seed, step, rt.rank, "loser"),
                                profile.loser_nfe)
        loss, stats = objective(window, loser, step_generator(profile.seed, step, rt.rank, "objective"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        stats["grad_norm"] = nn.utils.clip_grad_norm_(params, profile.grad_clip or math.inf).item()
        opt.step()
        step += 1
        bar.update(1)
        sums = {k: sums.get(k, 0.0) + v for k, v in stats.items()}
        n_sum += 1
        if step % profile.log_every == 0 or step == profile.steps:
            means = torch.tensor([sums[k] / n_sum for k in sorted(sums)], dtype=torch.float64)
            if rt.world > 1:  # every rank reaches every log step: the average over ranks is the global one
                dist.all_reduce(means)
                means /= rt.world
            now = time.perf_counter()
            last_row = {"step": step, **dict(zip(sorted(sums), means.tolist())), "lr": opt.param_groups[0]["lr"],
                        "steps_per_s": (step - timed_from) / (now - t_window), "elapsed_s": elapsed + now - t_start}
            sums, n_sum, t_window, timed_from = {}, 0, now, step
            if rt.main:
                log.write(last_row)
                bar.set_postfix(loss=f"{last_row['loss']:.4f}", steps_per_s=f"{last_row['steps_per_s']:.2f}")
        if rt.main and (step % profile.ckpt_every == 0 or step == profile.steps):
            save_checkpoint(ckpt_path, model, optimizer=opt.state_dict(), step=step, stage=stage,
                            profile=asdict(profile), rng=rng_state(), sampler=sampler.state(step), meta=meta,
                            elapsed_s=elapsed + time.perf_counter() - t_start, log_window=(sums, n_sum),
                            world_size=rt.world, threads=torch.get_num_threads())
    bar.close()
    wall = time.perf_counter() - t_start
    digests = [weights_digest(model)]
    if rt.world > 1:  # DDP keeps replicas equal; check it rather than trust it
        gathered = [None] * rt.world
        dist.all_gather_object(gathered, digests[0])
        digests = gathered
    summary = {"stage": stage, "steps": step, "resumed_from": start_step, "wall_s": wall,
               "steps_per_s": (step - start_step) / max(wall, 1e-9), "world_size": rt.world,
               "weights_digest": digests[0], "rank_weights_digests": digests,
               "replicas_identical": len(set(digests)) == 1,
               **{f"final_{k}": v for k, v in last_row.items() if k not in ("step", "lr", "elapsed_s")}}
    if rt.main:
        write_metrics(out, summary, profile=asdict(profile), config=asdict(model.cfg), meta=meta,
                      seed=profile.seed, threads=torch.get_num_threads())
    return summary


def stage1(cfg: ModelConfig, dataset: Dataset, profile: TrainProfile, out, *, resume=False, rt=None) -> dict:
    """Diffusion forcing from a seeded initialisation (every rank builds the same weights)."""
    torch.manual_seed(profile.seed)
    return train(AvatarForcing(cfg), dataset, profile, out, stage="stage1", resume=resume, rt=rt)


def dpo(init, dataset: Dataset, profile: TrainProfile, out, *, loser_model=None, resume=False, rt=None) -> dict:
    """Stage 2 from the stage-1 checkpoint `init`; the reference is a frozen copy of it. The audio encoder is
    frozen too, so the reference scores the windows on exactly the features it was trained with."""
    model, _ = load_model(init)
    if model.cfg.mask == "bidirectional" or model.cfg.context_frames:
        raise TrainError(f"{init}: DPO fine-tunes the causal Avatar Forcing model; {model.cfg.name!r} is a "
                         "windowed baseline")
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    model.audio.requires_grad_(False)
    meta = {"init": str(init), "init_digest": weights_digest(reference), "loser": profile.loser}
    if profile.loser == "talking":
        if loser_model is None:
            raise TrainError("loser 'talking' needs the talking-only checkpoint: pass --loser-model (train it with "
                             "`train stage1 --config tiny-talking`), or use --loser dropped")
        sampler, _ = load_model(loser_model)
        if sampler.cfg.conditioner != "avatar_only" or sampler.cfg.latent_dim != model.cfg.latent_dim:
            raise TrainError(f"{loser_model}: the loser model must be a talking-only model (conditioner "
                             f"'avatar_only') with latent_dim {model.cfg.latent_dim}; it is {sampler.cfg.name!r}")
        meta.update(loser_model=str(loser_model), loser_digest=weights_digest(sampler))
        sampler = sampler.eval().requires_grad_(False)
    else:
        sampler = reference  # the stage-1 model itself, user conditions zeroed
    return train(model, dataset, profile, out, stage="dpo", reference=reference, loser_sampler=sampler,
                 resume=resume, meta=meta, rt=rt)
