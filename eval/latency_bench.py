"""`afsuite bench latency`: ours vs INFP* vs talking-only in one process, the sweeps (NFE, block size, threads,
KV cache, torch.compile), a long session's flatness, and cue-to-reaction; every figure in one JSON dict.

Every comparison is interleaved unit by unit (eval.latency.run_interleaved), so a ratio is measured on the
same machine state. Targets (issue 6) are evaluated and recorded, never asserted: timings on a shared CPU are
noisy, so they are benchmarks, not tests.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from afcore.io import provenance
from eval.latency import (
    LABELS,
    SYSTEMS,
    algorithmic_latency,
    build_model,
    decode_cost,
    effective_nfe,
    make_stepper,
    random_inputs,
    resolve_device,
    rss_mb,
    run_interleaved,
    steady_summary,
    summarize,
    system_config,
    timed_step,
)
from eval.tables import get_table

SCHEMA = "afsuite.bench.latency/1"
PAPER_RATIO = 6.8  # abstract: "6.8x speedup" = INFP* 3.4 s / ours 0.5 s (paper Table 1)
TARGETS = {"per_block_p50_ms": 40.0, "algorithmic_plus_compute_ms": 450.0, "ratio_infp_over_ours": PAPER_RATIO,
           "session_drift": 0.10}
PROFILES = {  # parameter sets of `afsuite bench latency --profile` and of notebook 05
    "smoke": dict(nfe_list=[3, 10], blocks=[5, 10], thread_list=[1, 2], rounds=4, warmup=1, session_seconds=4.0,
                  session_window_s=1.2, kv_seconds=2.0, decode_repeats=1, startup_repeats=1, compile=False,
                  cue_injections=4),
    "full": dict(nfe_list=[2, 4, 10], blocks=[5, 10, 25], thread_list=[1, 2], rounds=40, warmup=5,
                 session_seconds=600.0, session_window_s=60.0, kv_seconds=20.0, decode_repeats=5, startup_repeats=5,
                 compile=True, cue_injections=100),
    "compare": dict(nfe_list=[], blocks=[], thread_list=[], rounds=3, warmup=1, session_seconds=0.0,
                      session_window_s=0.0, kv_seconds=0.0, decode_repeats=1, startup_repeats=1, compile=False,
                      cue_injections=0),
}


def paper_reference() -> dict:
    """Latency columns of the paper's Table 1 (method -> s) and Table 7 (frames per block -> s)."""
    t1, t7 = get_table("table1"), get_table("table7")
    latency = lambda t, row: row[2 + len(t.label_columns) + t.metrics.index("Latency (s)")]
    return {"table1_latency_s": {row[0]: latency(t1, row) for row in t1.rows if latency(t1, row) is not None},
            "table7_latency_s": {int(row[3]): latency(t7, row) for row in t7.rows},
            "ratio_infp_over_ours": PAPER_RATIO,
            "definition": "motion generation time with 10 NFEs, audio features pre-extracted, one H100 (paper 5.2-5.3)"}


def _settings(cfg, stepper, *, nfe_requested, threads, device, dtype, compile=False, overrides=None) -> dict:
    return {"config": cfg.name, "config_overrides": dict(overrides or {}), "device": str(device), "dtype": dtype,
            "threads": threads, "nfe": stepper.nfe, "nfe_requested": nfe_requested, "block_frames": cfg.block,
            "window_frames": cfg.window,
            "mask": cfg.mask, "conditioner": cfg.conditioner,
            "kv_cache": stepper.cache if cfg.mask != "bidirectional" else "none (10 context frames recomputed)",
            "compile": compile, "weights": "untrained (cost does not depend on weights)"}


def _ratio(num_alg, num_ms, den_alg, den_ms) -> dict:
    """INFP*/ours-style ratio of (buffering + compute), per paired round and of the medians."""
    a, b = np.asarray(num_ms), np.asarray(den_ms)
    paired = (num_alg + a) / (den_alg + b)
    compute = a / b
    return {"paper_style_median_paired": float(np.median(paired)), "paper_style_p5": float(np.percentile(paired, 5)),
            "paper_style_p95": float(np.percentile(paired, 95)),
            "paper_style_of_medians": float((num_alg + np.median(a)) / (den_alg + np.median(b))),
            "compute_only_median_paired": float(np.median(compute)), "n_rounds": int(a.size)}


def first_step_ms(model, *, nfe, device, dtype, seed, warmup="block") -> float:
    """Compute of the first step of a fresh session (the model already loaded)."""
    stepper = make_stepper(model, nfe=nfe, warmup=warmup, device=device, seed=seed)
    inputs = random_inputs(stepper.cfg, stepper.next_frames, torch.Generator(stepper.device).manual_seed(seed),
                           stepper.device)
    return timed_step(stepper, inputs, dtype)[1]


def compare_systems(config: str = "tiny", *, systems=SYSTEMS, nfe: int = 10, threads: int = 2, rounds: int = 20,
                    warmup: int = 3, device="cpu", dtype: str = "float32", seed: int = 0, decode_repeats: int = 3,
                    startup_repeats: int = 3, compile: bool = False, overrides: dict | None = None,
                    progress: bool = True) -> dict:
    """Items 1, 2, 3 and 5 of the issue for every system, measured in one process, interleaved.
    `overrides`: ModelConfig fields changed on the base config before deriving the baselines (e.g. block=5)."""
    torch.set_num_threads(threads)
    run_nfe = effective_nfe(nfe)
    cfgs = {s: system_config(config, s, **(overrides or {})) for s in systems}
    models = {s: build_model(cfgs[s], device, seed, compile) for s in systems}
    kw = dict(nfe=run_nfe, device=device, dtype=dtype)
    cold = {s: first_step_ms(models[s], seed=seed, **kw) for s in systems}  # first call in the process
    steppers = {s: make_stepper(models[s], nfe=run_nfe, device=device, seed=seed) for s in systems}
    runs = run_interleaved(steppers, rounds, warmup, dtype=dtype, seed=seed, progress=progress,
                           desc=f"{config}: {' / '.join(systems)}")
    warm = {s: [] for s in systems}
    official = {s: [] for s in systems if cfgs[s].mask != "bidirectional"}
    for i in range(startup_repeats):  # interleaved too
        for s in systems:
            warm[s].append(first_step_ms(models[s], seed=seed + 10 + i, **kw))
            if s in official:
                official[s].append(first_step_ms(models[s], seed=seed + 10 + i, warmup="window", **kw))
    decode = decode_cost(cfgs[systems[0]], decode_repeats, device=device, dtype=dtype) if decode_repeats else None
    out = {}
    for s in systems:
        cfg, alg = cfgs[s], algorithmic_latency(cfgs[s])
        steady = steady_summary(cfg, runs[s])
        p50 = steady["per_unit"]["median_ms"]
        first = float(np.median(warm[s]))
        dec_first = decode["median_ms"] if decode else 0.0
        startup = {"buffer_ms": alg["startup_buffer_ms"], "first_step_cold_ms": cold[s], "first_step_ms": first,
                   "startup_ms": alg["startup_buffer_ms"] + first, "startup_with_decode_ms":
                   alg["startup_buffer_ms"] + first + dec_first}
        if s in official:  # the official start: a 50-frame window (2 s of input) before any output
            win = float(np.median(official[s]))
            startup["official_window"] = {"buffer_ms": algorithmic_latency(cfg, warmup="window")["startup_buffer_ms"],
                                          "first_step_ms": win}
            startup["official_window"]["startup_ms"] = startup["official_window"]["buffer_ms"] + win
        out[s] = {"label": LABELS[s], "settings": _settings(cfg, steppers[s], nfe_requested=nfe, threads=threads,
                                                           device=device, dtype=dtype, compile=compile,
                                                           overrides=overrides),
                  "algorithmic": alg, "startup": startup, "steady": steady,
                  "decode": None if decode is None else {"first_chunk_ms": dec_first, "unit_ms": dec_first * math.ceil(
                      steady["unit_frames"] / decode["chunk_frames"])},
                  "paper_style_ms": alg["algorithmic_ms"] + p50, "with_decode_ms": alg["algorithmic_ms"] + p50 + dec_first,
                  "series_ms": np.round(runs[s]["ms"], 3).tolist()}
    ratios = {}
    if "ours" in out:
        for s in systems:
            if s != "ours":
                ratios[f"{s}_over_ours"] = _ratio(out[s]["algorithmic"]["algorithmic_ms"], runs[s]["ms"],
                                                  out["ours"]["algorithmic"]["algorithmic_ms"], runs["ours"]["ms"])
    return {"config": config, "systems": out, "ratios": ratios, "decode": decode, "rounds": rounds,
            "warmup_rounds_dropped": warmup, "interleaved": True}


def _rows_from_runs(runs, meta) -> list[dict]:
    rows = []
    for key, rec in runs.items():
        cfg, info = meta[key]
        s = summarize(rec["ms"])
        alg = algorithmic_latency(cfg)["algorithmic_ms"]
        rows.append({**info, "per_unit_median_ms": s["median_ms"], "per_unit_p95_ms": s["p95_ms"],
                     "algorithmic_ms": alg, "paper_style_ms": alg + s["median_ms"],
                     "split_median_ms": {k: float(np.median(v)) for k, v in rec["split"].items()}})
    return rows


def sweep_nfe(config="tiny", nfe_list=(2, 4, 10), *, systems=("ours", "infp"), threads=2, rounds=10, warmup=2,
              device="cpu", dtype="float32", seed=0, overrides=None, progress=True) -> dict:
    torch.set_num_threads(threads)
    models = {s: build_model(system_config(config, s, **(overrides or {})), device, seed) for s in systems}
    steppers, meta = {}, {}
    for n in nfe_list:
        for s in systems:
            key = f"{s}|nfe{n}"
            steppers[key] = make_stepper(models[s], nfe=effective_nfe(n), device=device, seed=seed)
            meta[key] = (models[s].cfg, {"system": s, "nfe_requested": n, "nfe": effective_nfe(n)})
    rows = _rows_from_runs(run_interleaved(steppers, rounds, warmup, dtype=dtype, seed=seed, progress=progress,
                                           desc="NFE sweep"), meta)
    return {"rows": rows, "threads": threads, "rounds": rounds,
            "note": f"nfe < {effective_nfe(0)} has no valid step list (linspace(1000, 0, nfe - 1)); requested "
                    "nfe 2 runs as 3 = one Euler update + the cache-write pass (the wasted t=0 call is skipped)"}


def sweep_block(config="tiny", blocks=(5, 10, 25), *, nfe=10, threads=2, rounds=10, warmup=3, device="cpu",
                dtype="float32", seed=0, overrides=None, progress=True) -> dict:
    """Ours with 5/10/25-frame blocks (window stays 50), beside paper Table 7."""
    torch.set_num_threads(threads)
    table7 = paper_reference()["table7_latency_s"]
    steppers, meta = {}, {}
    for b in blocks:
        cfg = system_config(config, "ours", **{**(overrides or {}), "block": b})
        steppers[f"block{b}"] = make_stepper(build_model(cfg, device, seed), nfe=effective_nfe(nfe), device=device,
                                             seed=seed)
        meta[f"block{b}"] = (cfg, {"block_frames": b, "nfe": effective_nfe(nfe), "paper_table7_latency_s": table7.get(b)})
    warmup = max(warmup, math.ceil(cfg.window / min(blocks)))  # until the smallest block's cache is full
    rows = _rows_from_runs(run_interleaved(steppers, rounds, warmup, dtype=dtype, seed=seed, progress=progress,
                                           desc="block sweep"), meta)
    return {"rows": rows, "threads": threads, "rounds": rounds}


def sweep_threads(config="tiny", thread_list=(1, 2), *, systems=("ours", "infp"), nfe=10, rounds=10, warmup=2,
                  device="cpu", dtype="float32", seed=0, overrides=None, progress=True) -> dict:
    """torch threads switched before every step (interleaved); restores the caller's thread count."""
    before = torch.get_num_threads()
    models = {s: build_model(system_config(config, s, **(overrides or {})), device, seed) for s in systems}
    steppers, meta = {}, {}
    for t in thread_list:
        for s in systems:
            steppers[f"{s}|t{t}"] = make_stepper(models[s], nfe=effective_nfe(nfe), device=device, seed=seed, threads=t)
            meta[f"{s}|t{t}"] = (models[s].cfg, {"system": s, "threads": t, "nfe": effective_nfe(nfe)})
    try:
        rows = _rows_from_runs(run_interleaved(steppers, rounds, warmup, dtype=dtype, seed=seed, progress=progress,
                                               desc="threads sweep"), meta)
    finally:
        torch.set_num_threads(before)
    return {"rows": rows, "rounds": rounds, "cpu_count": os.cpu_count()}


def kv_cache_effect(config="tiny", seconds=20.0, *, nfe=10, threads=2, device="cpu", dtype="float32", seed=0,
                    overrides=None, progress=True) -> dict:
    """KV cache on vs off over a SHORT session: without the cache every block re-runs all earlier clean passes
    (afcore.session's reference path), so its cost grows with the session length (O(n^2) in total)."""
    torch.set_num_threads(threads)
    model = build_model(system_config(config, "ours", **(overrides or {})), device, seed)
    n = max(2, round(seconds * model.cfg.fps / model.cfg.block))
    steppers = {c: make_stepper(model, nfe=effective_nfe(nfe), cache=c == "on", device=device, seed=seed)
                for c in ("on", "off")}
    runs = run_interleaved(steppers, n, 0, dtype=dtype, seed=seed, progress=progress, desc="KV cache on/off")
    out = {"seconds": n * model.cfg.block / model.cfg.fps, "blocks": n, "nfe": effective_nfe(nfe), "threads": threads,
           "note": "cache off = the O(n^2) reference path (recompute every earlier clean pass); limited to a short "
                   "session. Its recomputation is counted in condition_ms."}
    for c, rec in runs.items():
        ms = np.asarray(rec["ms"])
        k = max(1, min(5, n // 3))
        slope = float(np.polyfit(np.arange(n), ms, 1)[0]) if n > 2 else float("nan")
        out[c] = {"series_ms": ms.round(3).tolist(), "first_median_ms": float(np.median(ms[:k])),
                  "last_median_ms": float(np.median(ms[-k:])), "slope_ms_per_block": slope}
    out["last_off_over_on"] = out["off"]["last_median_ms"] / out["on"]["last_median_ms"]
    return out


def compile_effect(config="tiny", *, nfe=10, threads=2, rounds=20, warmup=3, device="cpu", dtype="float32", seed=0,
                   overrides=None, progress=True) -> dict:
    """Ours eager vs torch.compile (inductor) on the same weights, interleaved after compiling."""
    torch.set_num_threads(threads)
    eager = build_model(system_config(config, "ours", **(overrides or {})), device, seed)
    compiled = torch.compile(eager)
    fill = math.ceil(eager.cfg.window / eager.cfg.block) + 2  # the KV cache grows for a few blocks: shapes change
    stepper = make_stepper(compiled, nfe=effective_nfe(nfe), device=device, seed=seed)
    g = torch.Generator(stepper.device).manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(fill):
        timed_step(stepper, random_inputs(stepper.cfg, stepper.next_frames, g, stepper.device), dtype)
    compile_s = time.perf_counter() - t0
    steppers = {"eager": make_stepper(eager, nfe=effective_nfe(nfe), device=device, seed=seed), "compiled": stepper}
    runs = run_interleaved(steppers, rounds, max(warmup, fill), dtype=dtype, seed=seed, progress=progress,
                           desc="torch.compile")
    e, c = summarize(runs["eager"]["ms"]), summarize(runs["compiled"]["ms"])
    return {"eager": e, "compiled": c, "compiled_over_eager": c["median_ms"] / e["median_ms"],
            "compile_and_warmup_s": compile_s, "helps": c["median_ms"] < 0.95 * e["median_ms"],
            "note": "only the FlowTransformer forward is compiled (the Euler update and the condition encoder run "
                    "eagerly)"}


def session_drift(config="tiny", seconds=600.0, *, window_s=60.0, nfe=10, threads=2, device="cpu",
                  dtype="float32", seed=0, overrides=None, progress=True) -> dict:
    """Per-block cost and memory over a long session, with machine drift cancelled: every block of the long
    session is interleaved with a block of a reference session that is reset every `window_s` (always young).
    The long/reference ratio of the last window over the first says whether the session itself slows down;
    the raw last/first (bench_stream's figure) is kept beside it, and moves with the machine's load."""
    torch.set_num_threads(threads)
    model = build_model(system_config(config, "ours", **(overrides or {})), device, seed)
    cfg, run_nfe = model.cfg, effective_nfe(nfe)
    long, ref = (make_stepper(model, nfe=run_nfe, device=device, seed=seed + k) for k in (0, 7))
    fill = math.ceil(cfg.window / cfg.block) + 1  # blocks until a session's KV cache is full
    per_win = max(1, round(window_s * cfg.fps / cfg.block))
    reset_every = max(per_win, 2 * fill)
    n = fill + max(1, round(seconds * cfg.fps / cfg.block))
    g = torch.Generator(long.device).manual_seed(seed + 1)
    long_ms, ref_ms, ref_age, rss = [], [], [], []
    for i in tqdm(range(n), desc=f"session {cfg.name}", disable=not progress, unit="block"):
        if i % reset_every == 0:
            ref.session.reset()
        inputs = random_inputs(cfg, cfg.block, g, long.device)
        pair = [(long, long_ms), (ref, ref_ms)][:: 1 if i % 2 else -1]  # alternate who goes first
        for stepper, sink in pair:
            sink.append(timed_step(stepper, inputs, dtype)[1])
        ref_age.append(i % reset_every)
        rss.append(rss_mb())
    keep = slice(fill, None)  # drop the long session's cache fill (warm-up)
    lm, rm, age, rss = (np.asarray(a)[keep] for a in (long_ms, ref_ms, ref_age, rss))
    ratio = np.where(age >= fill, lm / rm, np.nan)  # skip blocks where the reference is filling its cache
    def med(a):  # NaN (not a warning) when a window has no valid block
        a = a[~np.isnan(a)]
        return float(np.median(a)) if a.size else float("nan")

    block_ms = 1000.0 * cfg.block / cfg.fps
    return {"config": cfg.name, "nfe": run_nfe, "threads": threads, "device": str(device), "dtype": dtype,
            "seconds_streamed": len(lm) * block_ms / 1000, "block_duration_ms": block_ms, "window_seconds": window_s,
            "per_block_compute": summarize(lm), "reference_per_block_compute": summarize(rm),
            "first_window_median_ms": med(lm[:per_win]), "last_window_median_ms": med(lm[-per_win:]),
            "last_over_first_window": med(lm[-per_win:]) / med(lm[:per_win]),
            "drift_cancelled_last_over_first": med(ratio[-per_win:]) / med(ratio[:per_win]),
            "rss_mb_first_window": float(rss[:per_win].mean()), "rss_mb_last_window": float(rss[-per_win:].mean()),
            "reference_reset_every_blocks": reset_every,
            "series": {"t_s": (np.arange(len(lm)) * block_ms / 1000).round(3).tolist(), "block_ms": lm.round(3).tolist(),
                       "reference_ms": rm.round(3).tolist(), "rss_mb": rss.round(2).tolist()}}


def evaluate_targets(result: dict) -> dict:
    """Issue 6's targets, recorded (never asserted): they apply to the tiny config on 2 CPU cores."""
    comp, ours = result["comparison"], result["comparison"]["systems"].get("ours")
    if ours is None:
        return {"applies": False, "reason": "ours was not measured"}
    p50 = ours["steady"]["per_unit"]["median_ms"]
    ratio = comp["ratios"].get("infp_over_ours", {}).get("paper_style_median_paired")
    st = ours["settings"]
    out = {"applies": (result["config"] == "tiny" and st["nfe"] == 10 and st["device"] == "cpu"
                       and not st["config_overrides"]),
           "per_block_p50_ms": p50, "per_block_p50_under_40ms": p50 < TARGETS["per_block_p50_ms"],
           "per_block_p50_under_block_duration": p50 < ours["steady"]["unit_duration_ms"],
           "algorithmic_plus_compute_ms": ours["paper_style_ms"],
           "algorithmic_plus_compute_under_450ms": ours["paper_style_ms"] < TARGETS["algorithmic_plus_compute_ms"],
           "ratio_infp_over_ours": ratio,
           "ratio_at_least_paper": None if ratio is None else ratio >= TARGETS["ratio_infp_over_ours"]}
    r = comp["ratios"].get("infp_over_ours")
    if r:  # (A_i + k c) / (A_o + c) >= R  <=>  c <= (A_i - R A_o) / (R - k), with INFP* compute = k x ours
        a_i, a_o = comp["systems"]["infp"]["algorithmic"]["algorithmic_ms"], ours["algorithmic"]["algorithmic_ms"]
        k, R = r["compute_only_median_paired"], TARGETS["ratio_infp_over_ours"]
        out["ratio_holds_while_ours_compute_below_ms"] = (a_i - R * a_o) / (R - k) if R > k else float("inf")
    out["under_450ms_while_ours_compute_below_ms"] = TARGETS["algorithmic_plus_compute_ms"] - ours["algorithmic"][
        "algorithmic_ms"]
    session = result.get("session")
    if session:
        drift = session["drift_cancelled_last_over_first"]
        out.update(session_last_over_first_window=drift, session_raw_last_over_first=session["last_over_first_window"],
                   session_window_s=session["window_seconds"], session_seconds=session["seconds_streamed"],
                   session_flat_within_10pct=abs(drift - 1) <= TARGETS["session_drift"])
    return out


def latency_claim(result: dict) -> dict:
    """The paper's latency claim (Table 1) with a verdict from one `bench_latency` result: the direction holds
    when ours waits + computes less than INFP*; the 6.8x itself depends on the hardware and is reported, not judged."""
    claim = "Motion latency about 0.5 s against 3.4 s for INFP*, a 6.8x speed-up (Table 1)"
    systems = result["comparison"]["systems"]
    if "ours" not in systems or "infp" not in systems:
        return {"claim": claim, "paper": "0.5 s vs 3.4 s (6.8x)", "ours": "", "verdict": "not measurable here",
                "why": "ours and INFP* were not both measured"}
    ours, infp = systems["ours"]["paper_style_ms"] / 1000, systems["infp"]["paper_style_ms"] / 1000
    r = result["comparison"]["ratios"]["infp_over_ours"]
    return {"claim": claim, "paper": "0.5 s vs 3.4 s (6.8x)",
            "ours": f"{ours:.2f} s vs {infp:.2f} s ({r['paper_style_median_paired']:.2f}x, p5-p95 "
                    f"{r['paper_style_p5']:.2f}-{r['paper_style_p95']:.2f}x)",
            "verdict": "reproduced in direction" if ours < infp else "not reproduced",
            "why": f"{result['config']} config on this CPU ({result['comparison']['rounds']} interleaved rounds): "
                   "input buffering (400 ms vs 3 s) + measured compute of one unit; the paper's is an H100"}


def bench_latency(config: str = "tiny", *, profile: str = "smoke", nfe: int = 10, threads: int = 2, device="auto",
                  dtype: str = "auto", seed: int = 0, systems=SYSTEMS, checkpoint: str | None = None,
                  corpus_dir: str | None = None, readout: str | None = None, model_overrides: dict | None = None,
                  progress: bool = True, **overrides) -> dict:
    """Everything issue 6 asks for, for one config; `profile` picks PROFILES[profile], `overrides` replace its
    entries. `model_overrides` change ModelConfig fields (tests use a narrower model; results then say so)."""
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    p = {**PROFILES[profile], **overrides}
    unknown = set(overrides) - set(PROFILES["smoke"])
    if unknown:
        raise TypeError(f"unknown settings {sorted(unknown)}; known: {sorted(PROFILES['smoke'])}")
    started, load0 = time.perf_counter(), os.getloadavg()
    device, dtype = resolve_device(device, dtype)
    common = dict(threads=threads, device=device, dtype=dtype, seed=seed, progress=progress,
                  overrides=model_overrides)
    result = {"schema": SCHEMA, "config": config, "profile": profile, "settings": {"nfe": nfe, **common, **p},
              "paper": paper_reference()}
    result["comparison"] = compare_systems(config, systems=systems, nfe=nfe, rounds=p["rounds"], warmup=p["warmup"],
                                           decode_repeats=p["decode_repeats"], startup_repeats=p["startup_repeats"],
                                           **common)
    rw = dict(rounds=max(2, p["rounds"] // 2), warmup=p["warmup"], device=device, dtype=dtype, seed=seed,
              overrides=model_overrides, progress=progress)
    sweeps = {}  # an empty list skips that sweep
    if p["nfe_list"]:
        sweeps["nfe"] = sweep_nfe(config, p["nfe_list"], threads=threads, **rw)
    if p["blocks"]:
        sweeps["block"] = sweep_block(config, p["blocks"], nfe=nfe, threads=threads, **rw)
    if p["thread_list"]:
        sweeps["threads"] = sweep_threads(config, p["thread_list"], nfe=nfe, **rw)
    if p["kv_seconds"]:
        sweeps["kv_cache"] = kv_cache_effect(config, p["kv_seconds"], nfe=nfe, **common)
    if p["compile"]:
        sweeps["compile"] = compile_effect(config, nfe=nfe, rounds=p["rounds"], warmup=p["warmup"], **common)
    result["sweeps"] = sweeps
    if p["session_seconds"]:
        result["session"] = session_drift(config, p["session_seconds"], window_s=p["session_window_s"], nfe=nfe,
                                          **common)
    from eval.latency_cue import measure_cue_to_reaction
    ours = result["comparison"]["systems"].get("ours")
    result["cue_to_reaction"] = measure_cue_to_reaction(
        checkpoint, corpus_dir, readout=readout, n_injections=p["cue_injections"], nfe=effective_nfe(nfe), seed=seed,
        compute_ms=ours["steady"]["per_unit"]["median_ms"] if ours else None, progress=progress)
    result["targets"] = evaluate_targets(result)
    result["machine"] = {"loadavg_start": load0, "loadavg_end": os.getloadavg(), "cpu_count": os.cpu_count(),
                         "cuda": torch.cuda.is_available()}
    result["wall_time_s"] = time.perf_counter() - started
    result["provenance"] = provenance()
    return result
