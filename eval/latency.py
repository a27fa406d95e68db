"""Latency harness (issue 6): the parts of "latency" apart, on this machine, against the baselines, in one run.

- algorithmic: input that must be buffered before a unit (block, or INFP* window) can be generated, plus
  any look-ahead past it (`algorithmic_latency`, pure arithmetic);
- start-up: time to the first output block = its buffering + the first step's compute;
- steady-state compute per unit, warm-up dropped, split into condition encoding, denoising steps and cache
  write (Session.last_timing); decoding latents to frames is timed as its own term (`decode_cost`): it is the
  same autoencoder for every system and costs the same per 10-frame chunk (the official decode batch);
- the paper's figure ("motion generation time using 10 NFEs", audio features pre-extracted; read as buffering
  + generation compute, paper_digest.md section 5) for every system, timed in one process and interleaved
  unit by unit (`run_interleaved`), so machine drift cancels in the INFP*/ours ratio.
Cue-to-reaction lives in eval/latency_cue.py, the sweeps and the full benchmark in eval/latency_bench.py.

Timers are time.perf_counter_ns; on CUDA every reading is synchronised, and so is every model call (so the
Session's own split is right on a GPU too); the torch thread count is set explicitly (importing silero_vad
silently sets it to 1); float32 unless dtype="bfloat16" (autocast, as the official GPU inference).
"""
from __future__ import annotations

import contextlib
import os
import resource
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from afcore.config import ModelConfig, get_config, infp_config, talking_config
from afcore.dfot import FlowTransformer
from afcore.flow import cfg_combine, denoising_steps, euler_step
from afcore.io import provenance
from afcore.session import Session, _cfg_branches

SYSTEMS = ("ours", "infp", "talking")
LABELS = {"ours": "Avatar Forcing", "infp": "INFP*", "talking": "talking-only"}
NFE_MIN = 3  # the official step list linspace(1000, 0, nfe - 1) needs nfe >= 3: "NFE 2" runs as 3
DECODE_CHUNK = 10  # frames per autoencoder call, as the official decode_latent_into_image


def system_config(config: str, system: str = "ours", **overrides) -> ModelConfig:
    """`config` in ("tiny", "paper", ...) with overrides (e.g. block=5) -> the config of one system."""
    base = get_config(config, **overrides)
    makers = {"ours": lambda c: c, "infp": infp_config, "talking": talking_config}
    if system not in makers:
        raise KeyError(f"unknown system {system!r}; choose from {SYSTEMS}")
    return makers[system](base)


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """"auto": CUDA when present (the paper-comparable number from the same command), with bfloat16 autocast
    there (the official inference) and float32 on the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if torch.device(device).type == "cuda" else "float32"
    return device, dtype


def effective_nfe(nfe: int) -> int:
    """The NFE actually run for a requested one (nfe 2 has no valid step list; 3 = 1 Euler update + cache pass)."""
    return max(int(nfe), NFE_MIN)


def algorithmic_latency(cfg: ModelConfig, *, audio_lookahead_frames: int = 0, warmup: str = "block") -> dict:
    """Input to buffer before one unit can be generated, in frames and ms (no compute).

    Causal model: a block is generated once its last input frame is in. Its l-frame self-attention look-ahead
    and the +-cross_band condition band are cut at the window's end, and the re-fed offset frames are clean
    and never revised, so the model's look-ahead adds nothing past the block. Only a feature extractor that
    needs future audio adds (`audio_lookahead_frames`; 0 for the causal mel encoder and for pre-extracted
    features, the paper's convention). INFP* must buffer its whole window (its context frames are past).
    The first unit: one block (warmup="block"), or the official 50-frame window (warmup="window")."""
    frame_ms = 1000.0 / cfg.fps
    windowed = cfg.mask == "bidirectional"
    unit = cfg.window if windowed else cfg.block
    first = cfg.window if (windowed or warmup == "window") else cfg.block
    return {"frame_ms": frame_ms, "unit_frames": unit, "buffer_ms": unit * frame_ms,
            "model_lookahead_frames": cfg.window if windowed else cfg.lookahead,
            "model_lookahead_added_ms": 0.0, "audio_lookahead_frames": audio_lookahead_frames,
            "algorithmic_ms": (unit + audio_lookahead_frames) * frame_ms,
            "first_unit_frames": first, "startup_buffer_ms": (first + audio_lookahead_frames) * frame_ms,
            "mean_wait_ms": (unit - 1) * frame_ms / 2}  # a cue on a uniformly random frame of the unit


# --------------------------------------------------------------------------------------------- timing primitives
def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_sync = sync  # the old private name


class _Synced:
    """Duck-typed FlowTransformer that synchronises CUDA after every call, so a Session's perf_counter split
    measures device time, not kernel launches. Used only on CUDA."""

    def __init__(self, model: FlowTransformer, device: torch.device):
        self.model, self.cfg, self.device = model, model.cfg, device

    def encode_conditions(self, *args):
        out = self.model.encode_conditions(*args)
        sync(self.device)
        return out

    def __call__(self, *args, **kw):
        out = self.model(*args, **kw)
        sync(self.device)
        return out


def rss_mb() -> float:
    """Current resident set size (Linux /proc), falling back to the peak."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_rss_mb = rss_mb


def summarize(ms) -> dict:
    ms = np.asarray(ms, dtype=float)
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "n": int(ms.size)}


def autocast(device: torch.device, dtype: str):
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype != "bfloat16":
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def build_model(cfg: ModelConfig, device="cpu", seed: int = 0, compile: bool = False):
    """Untrained generator (the cost of a matmul does not depend on its weights); optionally torch.compile'd."""
    torch.manual_seed(seed)
    model = FlowTransformer(cfg).to(torch.device(device)).eval()
    return torch.compile(model) if compile else model


# --------------------------------------------------------------------------------------------- steppers
class StreamStepper:
    """Ours and talking-only: one block per step through afcore.session.Session (KV cache on or off)."""

    def __init__(self, model, *, nfe: int | None = None, cache: bool = True, warmup: str = "block",
                 device="cpu", seed: int = 0, threads: int | None = None):
        dev = torch.device(device)
        self.cfg, self.device, self.threads = model.cfg, dev, threads
        g = torch.Generator(dev).manual_seed(seed)
        ref = torch.randn(1, self.cfg.latent_dim, generator=g, device=dev)
        self.session = Session(_Synced(model, dev) if dev.type == "cuda" else model, ref, nfe=nfe, cache=cache,
                               warmup=warmup, generator=g)
        self.nfe, self.cache = self.session.nfe, cache
        self.last_timing: dict = {}

    @property
    def next_frames(self) -> int:
        return self.session.next_block_frames

    def step(self, inputs):  # three (1, n, C) condition streams -> (1, n, D)
        out = self.session.step(*inputs)
        self.last_timing = dict(self.session.last_timing)
        return out


class WindowStepper:
    """INFP*: one 75-frame window per step, bidirectional, after the last 10 generated frames as clean context.
    The loop of afcore.baselines.generate_windowed, with its state carried across calls so a window can be
    timed alone (tests/test_latency.py checks it gives generate_windowed's output exactly)."""

    def __init__(self, model, *, nfe: int | None = None, device="cpu", seed: int = 0, threads: int | None = None):
        dev = torch.device(device)
        self.model = _Synced(model, dev) if dev.type == "cuda" else model
        self.cfg, self.device, self.threads, self.cache = model.cfg, dev, threads, False
        self.generator = torch.Generator(dev).manual_seed(seed)
        self.ref3 = torch.randn(1, self.cfg.latent_dim, generator=self.generator, device=dev).repeat(3, 1)
        self.nfe = nfe or self.cfg.nfe
        self.steps = denoising_steps(self.nfe)
        self.ctx_x, self.ctx_cond = None, None  # (1, c, D) and three (1, c, C): the clean context
        self.last_timing: dict = {}

    @property
    def next_frames(self) -> int:
        return self.cfg.window

    @torch.no_grad()
    def step(self, inputs, noise: torch.Tensor | None = None):  # three (1, window, C) -> (1, window, D)
        cfg, dev = self.cfg, self.device
        if noise is None:
            noise = torch.randn(1, cfg.window, cfg.latent_dim, generator=self.generator, device=dev)
        ctx = 0 if self.ctx_x is None else self.ctx_x.shape[1]
        streams = [torch.cat([c, s], 1) for c, s in zip(self.ctx_cond, inputs)] if ctx else list(inputs)
        x = torch.cat([self.ctx_x, noise], 1) if ctx else noise
        t0 = time.perf_counter_ns()
        cond3 = self.model.encode_conditions(*_cfg_branches(*streams))  # (3, L, H)
        t1 = time.perf_counter_ns()
        L = x.shape[1]
        for t_cur, t_next in zip(self.steps[:-1], self.steps[1:]):
            t_tok = torch.full((1, L), float(t_cur), device=dev)
            t_nxt = torch.full((1, L), float(t_next), device=dev)
            t_tok[:, :ctx], t_nxt[:, :ctx] = 0, 0
            v3 = self.model(x.repeat(3, 1, 1), t_tok.repeat(3, 1), cond3, self.ref3)
            x = euler_step(x, cfg_combine(*v3.chunk(3), cfg.w_audio, cfg.w_user), t_tok, t_nxt)
        t2 = time.perf_counter_ns()
        keep = cfg.context_frames
        self.ctx_x, self.ctx_cond = x[:, -keep:], [s[:, -keep:] for s in streams]
        self.last_timing = {"condition_ms": (t1 - t0) / 1e6, "denoise_ms": (t2 - t1) / 1e6, "cache_write_ms": 0.0}
        return x[:, ctx:]


def make_stepper(model, *, nfe: int | None = None, cache: bool = True, warmup: str = "block", device="cpu",
                 seed: int = 0, threads: int | None = None):
    """The stepper a config calls for: INFP*-style windows for a bidirectional model, a Session otherwise."""
    if model.cfg.mask == "bidirectional":
        return WindowStepper(model, nfe=nfe, device=device, seed=seed, threads=threads)
    return StreamStepper(model, nfe=nfe, cache=cache, warmup=warmup, device=device, seed=seed, threads=threads)


def random_inputs(cfg: ModelConfig, frames: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    return [torch.randn(1, frames, cfg.cond_dim, generator=generator, device=device) for _ in range(3)]


def timed_step(stepper, inputs, dtype: str = "float32"):
    """(output, wall ms) of one step; CUDA synchronised on both sides of the reading."""
    dev = stepper.device
    if stepper.threads:
        torch.set_num_threads(stepper.threads)
    with autocast(dev, dtype):
        sync(dev)
        t0 = time.perf_counter_ns()
        out = stepper.step(inputs)
        sync(dev)
    return out, (time.perf_counter_ns() - t0) / 1e6


def run_interleaved(steppers: dict, rounds: int, warmup: int = 3, *, dtype: str = "float32", seed: int = 0,
                    progress: bool = True, desc: str = "interleaved") -> dict:
    """Step every stepper once per round, the order rotated each round (ABC, BCA, CAB, ...), so drift and
    order effects fall on every system alike. The first `warmup` rounds are dropped.
    Returns {name: {"ms": [..], "split": {part: [..]}, "rss_mb": [..]}} over the kept rounds."""
    names = list(steppers)
    gens = {n: torch.Generator(s.device).manual_seed(seed + 1 + i) for i, (n, s) in enumerate(steppers.items())}
    out = {n: {"ms": [], "split": {}, "rss_mb": []} for n in names}
    for r in tqdm(range(warmup + rounds), desc=desc, disable=not progress, unit="round"):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            s = steppers[name]
            inputs = random_inputs(s.cfg, s.next_frames, gens[name], s.device)  # made outside the timer
            _, ms = timed_step(s, inputs, dtype)
            if r < warmup:
                continue
            rec = out[name]
            rec["ms"].append(ms)
            rec["rss_mb"].append(rss_mb())
            for part, v in s.last_timing.items():
                rec["split"].setdefault(part, []).append(v)
    return out


def steady_summary(cfg: ModelConfig, rec: dict) -> dict:
    """Per-unit compute (median, p95) and its split, per frame and as a real-time factor."""
    per_unit = summarize(rec["ms"])
    unit_frames = cfg.window if cfg.mask == "bidirectional" else cfg.block
    unit_ms = 1000.0 * unit_frames / cfg.fps
    return {"per_unit": per_unit, "unit_frames": unit_frames, "unit_duration_ms": unit_ms,
            "split_median_ms": {k: float(np.median(v)) for k, v in rec["split"].items()},
            "split_p95_ms": {k: float(np.percentile(v, 95)) for k, v in rec["split"].items()},
            "per_frame_ms": per_unit["median_ms"] / unit_frames,
            "real_time_factor": per_unit["median_ms"] / unit_ms, "rss_mb_median": float(np.median(rec["rss_mb"]))}


# --------------------------------------------------------------------------------------------- decoding
class FrameDecoder:
    """Motion latents -> frames with the motion autoencoder (untrained unless given): z = z_S + m per frame,
    decoded DECODE_CHUNK frames per call. Uses only encode_identity and decode."""

    def __init__(self, cfg: ModelConfig, device="cpu", autoencoder=None, seed: int = 0):
        from afcore.motion_ae import MotionAutoencoder
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.ae = (autoencoder or MotionAutoencoder(cfg)).to(self.device).eval()
        S = cfg.image_size
        with torch.no_grad():
            self.z_s, self.feats = self.ae.encode_identity(torch.rand(1, 3, S, S, device=self.device) * 2 - 1)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:  # (1, n, D) -> (n, 3, S, S)
        frames = []
        for chunk in latents[0].split(DECODE_CHUNK):
            k = chunk.shape[0]
            frames.append(self.ae.decode(self.z_s + chunk, [f.expand(k, -1, -1, -1) for f in self.feats]))
        return torch.cat(frames)


def decode_cost(cfg: ModelConfig, repeats: int = 5, *, device="cpu", dtype: str = "float32", warmup: int = 1,
                progress: bool = False) -> dict:
    """Wall time of decoding one DECODE_CHUNK-frame chunk (median over `repeats`, warm-up dropped)."""
    dec = FrameDecoder(cfg, device)
    dev = dec.device
    ms = []
    for r in tqdm(range(warmup + repeats), desc=f"decode {cfg.name}", disable=not progress, unit="chunk"):
        z = torch.randn(1, DECODE_CHUNK, cfg.latent_dim, device=dev) * 0.1
        with autocast(dev, dtype):
            sync(dev)
            t0 = time.perf_counter_ns()
            dec(z)
            sync(dev)
        if r >= warmup:
            ms.append((time.perf_counter_ns() - t0) / 1e6)
    s = summarize(ms)
    return {**s, "chunk_frames": DECODE_CHUNK, "image_size": cfg.image_size,
            "per_frame_ms": s["median_ms"] / DECODE_CHUNK, "weights": "untrained (cost only)"}


# --------------------------------------------------------------------------------------------- stream benchmark
def bench_stream(config: str = "tiny", seconds: float = 60.0, *, nfe: int | None = None, threads: int = 2,
                 warmup_blocks: int = 3, device: str = "cpu", seed: int = 0, progress: bool = True,
                 model: FlowTransformer | None = None, cache: bool = True, dtype: str = "float32",
                 window_seconds: float = 10.0, return_series: bool = False) -> dict:
    """Stream `seconds` of random condition inputs block by block and time each block's compute.

    Records per-block compute (median, p95) with its split, blocks per second, and the median cost and memory
    of the first vs the last `window_seconds` (a flat session has a ratio near 1; the *_10s keys keep their
    names for `afsuite bench stream`, the first_window/last_window keys follow `window_seconds`)."""
    torch.set_num_threads(threads)
    cfg = model.cfg if model is not None else get_config(config)
    dev = torch.device(device)
    model = (model or build_model(cfg, dev, seed)).to(dev).eval()
    stepper = StreamStepper(model, nfe=nfe, cache=cache, device=dev, seed=seed)
    n_blocks = warmup_blocks + max(1, round(seconds * cfg.fps / cfg.block))
    gen = torch.Generator(dev).manual_seed(seed + 1)
    block_ms, splits, rss, gpu = [], [], [], []
    for _ in tqdm(range(n_blocks), desc=f"stream {cfg.name}", disable=not progress, unit="block"):
        _, ms = timed_step(stepper, random_inputs(cfg, cfg.block, gen, dev), dtype)
        block_ms.append(ms)
        splits.append(stepper.last_timing)
        rss.append(rss_mb())
        if dev.type == "cuda":  # device memory is the memory that matters on a GPU
            gpu.append(torch.cuda.memory_allocated(dev) / 2**20)
    block_ms, rss = np.array(block_ms[warmup_blocks:]), np.array(rss[warmup_blocks:])
    block_duration_ms = 1000 * cfg.block / cfg.fps
    per_10s = max(1, round(10 * cfg.fps / cfg.block))
    per_win = max(1, round(window_seconds * cfg.fps / cfg.block))
    med = lambda a: float(np.median(a))
    result = {
        "config": cfg.name, "device": str(dev), "dtype": dtype, "threads": threads, "nfe": stepper.nfe,
        "block_frames": cfg.block, "kv_cache": cache, "seconds_streamed": len(block_ms) * block_duration_ms / 1000,
        "warmup_blocks_dropped": warmup_blocks,
        "per_block_compute": summarize(block_ms),
        "split_median_ms": {k: med([s[k] for s in splits[warmup_blocks:]]) for k in splits[0]},
        "blocks_per_second": float(1000 / np.median(block_ms)),
        "block_duration_ms": block_duration_ms,
        "real_time_factor": float(np.median(block_ms) / block_duration_ms),
        "first_10s_median_ms": med(block_ms[:per_10s]), "last_10s_median_ms": med(block_ms[-per_10s:]),
        "last_over_first": med(block_ms[-per_10s:]) / med(block_ms[:per_10s]),
        "rss_mb_first": float(rss[:per_10s].mean()), "rss_mb_last": float(rss[-per_10s:].mean()),
        "window_seconds": window_seconds,
        "first_window_median_ms": med(block_ms[:per_win]), "last_window_median_ms": med(block_ms[-per_win:]),
        "last_over_first_window": med(block_ms[-per_win:]) / med(block_ms[:per_win]),
        "rss_mb_first_window": float(rss[:per_win].mean()), "rss_mb_last_window": float(rss[-per_win:].mean()),
        "provenance": provenance(),
    }
    if gpu:
        gpu = np.array(gpu[warmup_blocks:])
        result.update(gpu_mb_first_window=float(gpu[:per_win].mean()), gpu_mb_last_window=float(gpu[-per_win:].mean()))
    if return_series:
        result["series"] = {"block_ms": block_ms.round(3).tolist(), "rss_mb": rss.round(2).tolist(),
                            "t_s": (np.arange(len(block_ms)) * block_duration_ms / 1000).round(3).tolist()}
    return result
