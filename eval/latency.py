"""Latency harness. Timers are time.perf_counter_ns, warm-up blocks are dropped, the torch thread count
is set explicitly (importing silero_vad silently sets it to 1), and CUDA is synchronised before every
reading so the same code gives the paper-comparable number on a GPU."""
from __future__ import annotations

import os
import resource
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from afcore.config import get_config
from afcore.dfot import FlowTransformer
from afcore.io import provenance
from afcore.session import Session


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), falling back to the peak."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summarize(ms: np.ndarray) -> dict:
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "n": int(ms.size)}


def bench_stream(config: str = "tiny", seconds: float = 60.0, *, nfe: int | None = None, threads: int = 2,
                 warmup_blocks: int = 3, device: str = "cpu", seed: int = 0, progress: bool = True,
                 model: FlowTransformer | None = None) -> dict:
    """Stream `seconds` of random condition inputs block by block and time each block's compute.

    Records per-block compute (median, p95) with its split, blocks per second, and the median cost and
    memory of the first vs the last 10 seconds (a flat session has a ratio near 1)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cfg = model.cfg if model is not None else get_config(config)
    dev = torch.device(device)
    model = (model or FlowTransformer(cfg)).to(dev).eval()
    session = Session(model, torch.randn(1, cfg.latent_dim, device=dev), nfe=nfe,
                      generator=torch.Generator(dev).manual_seed(seed))
    n_blocks = warmup_blocks + max(1, round(seconds * cfg.fps / cfg.block))
    block_ms, splits, rss = [], [], []
    gen = torch.Generator(dev).manual_seed(seed + 1)
    for _ in tqdm(range(n_blocks), desc=f"stream {cfg.name}", disable=not progress, unit="block"):
        inputs = [torch.randn(1, cfg.block, cfg.cond_dim, generator=gen, device=dev) for _ in range(3)]
        _sync(dev)
        t0 = time.perf_counter_ns()
        session.step(*inputs)
        _sync(dev)
        block_ms.append((time.perf_counter_ns() - t0) / 1e6)
        splits.append(session.last_timing)
        rss.append(_rss_mb())
    block_ms, rss = np.array(block_ms[warmup_blocks:]), np.array(rss[warmup_blocks:])
    per_10s = max(1, round(10 * cfg.fps / cfg.block))
    first, last = block_ms[:per_10s], block_ms[-per_10s:]
    block_duration_ms = 1000 * cfg.block / cfg.fps
    return {
        "config": cfg.name, "device": str(dev), "dtype": "float32", "threads": threads,
        "nfe": session.nfe, "block_frames": cfg.block, "kv_cache": True, "seconds_streamed": len(block_ms) * block_duration_ms / 1000,
        "warmup_blocks_dropped": warmup_blocks,
        "per_block_compute": summarize(block_ms),
        "split_median_ms": {k: float(np.median([s[k] for s in splits[warmup_blocks:]])) for k in splits[0]},
        "blocks_per_second": float(1000 / np.median(block_ms)),
        "block_duration_ms": block_duration_ms,
        "real_time_factor": float(np.median(block_ms) / block_duration_ms),
        "first_10s_median_ms": float(np.median(first)), "last_10s_median_ms": float(np.median(last)),
        "last_over_first": float(np.median(last) / np.median(first)),
        "rss_mb_first": float(rss[:per_10s].mean()), "rss_mb_last": float(rss[-per_10s:].mean()),
        "provenance": provenance(),
    }
