"""`afsuite bench metrics`: how long every evaluation metric takes on 100 clips of 10 s (issue 4), as JSON.

    afsuite bench metrics                               # 100 x 10 s -> results/bench/metrics_timing.json
    afsuite bench metrics --quick --extractors untrained --out /tmp/m.json   # seconds (what the test runs)

The clips are synthetic arrays of the shapes the metrics take, made with the corpus renderer (nothing is read
from disk, so every machine times the same inputs):
* motion: per clip (T, 10) corpus parameters (7 expression + 3 pose, what eval.scoring scores) for the user,
  the ground-truth avatar (partly driven by the user) and a generated avatar (ground truth + smooth error),
  and the same at the paper's 3DMM sizes (expression d = 50, pose d = 6);
* REACT: predictions (N speakers, m = 10 samples, T, 25) with N * m = the clip count, the speakers' own
  series, a listener pool of N reactions and 3 appropriate listeners per speaker;
* video and audio: 64 px frames rendered from the ground-truth and the generated parameters (one random
  identity per clip) and 16 kHz audio whose loudness follows the ground-truth jaw.
Each metric runs once untimed on a 2-clip slice (warm-up), then on all clips; a run shorter than
`cheap_seconds` is repeated and the median kept. Extractors come from `eval.extractors.registry` (real weights
or embedded checkpoints); a missing embedded checkpoint is trained here with train_defaults' quick budgets
into `extractors_dir` and its training time is recorded apart from the metric timings. `extractors="untrained"`
uses the same architectures with random weights: the same inference cost, meaningless values (their names
end in "-untrained"). Timings on a shared CPU are noisy: a benchmark, never a test assertion.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from eval.metrics_bench_inputs import (DEFAULT_EXTRACTORS_DIR, FPS, FVD_CLIP, JITTER_BLOCK, JITTER_FIRST, PAPER_DIMS,
                                       SAMPLE_RATE, SIZE, TRAIN_STEPS, build_inputs, get_extractors, slice_inputs)

SCHEMA = "afsuite.bench.metrics/1"
DEFAULT_OUT = "results/bench/metrics_timing.json"
QUICK = {"clips": 4, "seconds": 3.0}  # FRSyn needs T >= 51 frames (lags +-49), hence 3 s, not 2
SID_K = {"Exp": 15, "Pose": 9}


# ---------------------------------------------------------------------------- the timed metrics

def metric_specs(ex: dict) -> list[dict]:
    """[{name, group, extractor, fn(data) -> value, clips(data) -> clips scored, inputs}] for every metric."""
    from eval import metrics as M
    from eval import react as R
    from eval.extractors.identity import csim
    from eval.extractors.quality import fid, fvd

    specs = []

    def add(name, group, fn, inputs, extractor=None, clips=lambda d: d["clips"]):
        specs.append({"name": name, "group": group, "fn": fn, "inputs": inputs, "extractor": extractor, "clips": clips})

    for src, label, dims in (("motion", "motion (corpus params)", {"Exp": 7, "Pose": 3}),
                             ("paper", "motion (paper 3DMM sizes)", PAPER_DIMS)):
        for part in ("Exp", "Pose"):
            tag = f"{part} (d={dims[part]})"
            def get(d, key, src=src, part=part):
                return d[src][part][key]
            add(f"rPCC-{tag}", label, lambda d, g=get: M.rpcc(g(d, "generated"), g(d, "user"), g(d, "ground_truth")),
                "generated, user, ground truth; pooled")
            add(f"SID-{tag}", label, lambda d, g=get, k=SID_K[part]: M.sid(g(d, "generated"), g(d, "ground_truth"), k),
                f"K-means k={SID_K[part]}, n_init=10 on ground-truth frames; pooled")
            add(f"Var-{tag}", label, lambda d, g=get: M.variance(g(d, "generated")), "generated; pooled")
            add(f"FD-{tag}", label, lambda d, g=get: M.frechet_distance(g(d, "generated"), g(d, "ground_truth")),
                "generated vs ground truth; pooled")
            add(f"P-FD-{tag}", label, lambda d, g=get: M.paired_frechet_distance(
                g(d, "generated"), g(d, "ground_truth"), g(d, "user")), "[user, generated] vs [user, ground truth]")
    add("jitter (d=10)", "motion (corpus params)",
        lambda d: M.jitter(d["generated_params"], JITTER_BLOCK, first_block=JITTER_FIRST),
        f"generated (T, 10); blocks of {JITTER_BLOCK} after a first block of {JITTER_FIRST}")

    react_clips = lambda d: int(np.prod(d["react"]["predictions"].shape[:2]))  # noqa: E731
    r = lambda d: d["react"]  # noqa: E731
    for name, fn, inputs in (
            ("FRCorr", lambda d: R.frcorr(r(d)["predictions"], r(d)["listener"], r(d)["appropriate"]),
             "CCC vs appropriate listeners"),
            ("FRDist", lambda d: R.frdist(r(d)["predictions"], r(d)["listener"], r(d)["appropriate"]),
             "weighted DTW (3 slices) vs appropriate listeners"),
            ("FRDiv", lambda d: R.frdiv(r(d)["predictions"]), "across the m samples"),
            ("FRVar", lambda d: R.frvar(r(d)["predictions"]), "over time"),
            ("FRDvs", lambda d: R.frdvs(r(d)["predictions"]), "across speakers"),
            ("FRSyn", lambda d: R.frsyn(r(d)["predictions"], r(d)["speaker"]), "TLCC, lags +-49 frames")):
        add(name, "REACT (D=25)", fn, inputs, clips=react_clips)

    def flat(a):
        return a.reshape(-1, *a.shape[2:])

    def face_params(d):
        p = ex["face_params"](flat(d["frames_gen"]))
        return {"frames": len(p), "mean_abs_param": float(np.abs(p).mean())}

    def lse(d):
        res = [ex["lipsync"](d["frames_gen"][i], d["audio"][i]) for i in range(d["clips"])]
        return {"lse_d": float(np.mean([x["lse_d"] for x in res])), "lse_c": float(np.mean([x["lse_c"] for x in res]))}

    def csim_all(d):
        return float(np.mean([csim(d["reference"][i], d["frames_gen"][i], ex["csim"])["csim"] for i in range(d["clips"])]))

    add("face params (extraction)", "video", face_params, "all generated frames -> (N, 10) params",
        "face_params")
    add("LSE-D / LSE-C", "video + audio", lse, "per clip: 5-frame mouth windows vs MFCC windows, offsets +-15",
        "lipsync")
    add("FID", "video", lambda d: fid(flat(d["frames_gt"]), flat(d["frames_gen"]), ex["fid"])["fid"],
        "all ground-truth frames vs all generated frames (features + Frechet)", "fid")
    add("FVD", "video", lambda d: fvd(d["videos_gt"], d["videos_gen"], ex["fvd"])["fvd"],
        f"non-overlapping {FVD_CLIP}-frame windows, ground truth vs generated", "fvd")
    add("CSIM", "video", csim_all, "per clip: first ground-truth frame vs every generated frame", "csim")
    add("LPIPS", "video", lambda d: float(ex["lpips"](flat(d["frames_gen"]), flat(d["frames_gt"])).mean()),
        "every generated frame vs its ground-truth frame (AlexNet)", "lpips")
    return specs


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    v = float(value)
    return v if math.isfinite(v) else str(v)


def time_metric(fn, data, *, repeats: int, cheap_seconds: float) -> tuple:
    """(value, wall runs, cpu runs): one run, plus repeats - 1 more when the first was cheap."""
    walls, cpus, value = [], [], None
    while True:
        c0, t0 = time.process_time(), time.perf_counter()
        value = fn(data)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if len(walls) >= repeats or walls[0] >= cheap_seconds:
            return value, walls, cpus


def bench_metrics(clips: int = 100, seconds: float = 10.0, *, threads: int = 1, repeats: int = 3,
                  cheap_seconds: float = 10.0, seed: int = 0, extractors: str = "auto",
                  extractors_dir=DEFAULT_EXTRACTORS_DIR, corpus_dir=None, train_budget: str = "quick",
                  only: list[str] | None = None, progress: bool = True) -> dict:
    """Time every metric on `clips` clips of `seconds` s; returns the JSON-ready result (see the module doc)."""
    import resource

    import torch
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from afcore.io import provenance

    started, load0 = time.perf_counter(), os.getloadavg()
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):  # numpy / scipy / sklearn BLAS and OpenMP pools too
        t0 = time.perf_counter()
        ex, ex_records = get_extractors(extractors, extractors_dir=extractors_dir, corpus_dir=corpus_dir,
                                        train_budget=train_budget, threads=threads, progress=progress)
        extractors_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = build_inputs(clips, seconds, seed=seed, progress=progress)
        inputs_s = time.perf_counter() - t0
        small = slice_inputs(data, 2)
        load_metrics = os.getloadavg()
        specs = metric_specs(ex)
        if only:
            unknown = set(only) - {s["name"] for s in specs}
            if unknown:
                raise ValueError(f"unknown metrics {sorted(unknown)}; known: {[s['name'] for s in specs]}")
            specs = [s for s in specs if s["name"] in only]
        rows = {}
        bar = tqdm(specs, desc="metrics", unit="metric", disable=not progress)
        for s in bar:
            bar.set_postfix_str(s["name"])
            s["fn"](small)  # warm-up (allocations, lazy imports, first-call paths), untimed
            value, walls, cpus = time_metric(s["fn"], data, repeats=repeats, cheap_seconds=cheap_seconds)
            n = s["clips"](data)
            total = float(np.median(walls))
            rows[s["name"]] = {
                "group": s["group"], "inputs": s["inputs"], "clips": n, "total_s": total,
                "per_clip_ms": 1000 * total / n, "cpu_s": float(np.median(cpus)), "runs_s": walls,
                "timing": f"median of {len(walls)} runs" if len(walls) > 1 else "1 run (not repeated: not cheap)",
                "extractor": ex_records[s["extractor"]]["name"] if s["extractor"] else None,
                "value": _clean(value)}
    training = {m: {k: r[k] for k in ("training_s", "training_budget", "training_steps", "corpus") if k in r}
                for m, r in ex_records.items() if "training_s" in r}
    return {
        "schema": SCHEMA,
        "settings": {"clips": clips, "seconds": seconds, "fps": FPS, "frames_per_clip": data["frames_per_clip"],
                     "sample_rate": SAMPLE_RATE, "image_size": SIZE, "threads": threads, "repeats": repeats,
                     "cheap_seconds": cheap_seconds, "seed": seed, "extractors": extractors,
                     "train_budget": train_budget, "warmup": "each metric once on the first 2 clips, untimed"},
        "inputs": {"layout": data["layout"], "build_s": inputs_s,
                   "how": "synthetic: smooth random parameter series rendered by data_prep.synth's FaceRenderer, "
                          "jaw-driven buzz audio, synthetic REACT attributes (eval/metrics_bench.py)"},
        "metrics": rows,
        "extractors": ex_records,
        "extractor_setup_s": extractors_s,
        "extractor_training": training or None,
        "extractor_training_note": ("embedded extractors trained in this run; their training time is NOT part of any "
                                    "metric timing" if training else "no extractor was trained in this run"),
        "machine": {"cpu_count": os.cpu_count(), "affinity_cpus": len(os.sched_getaffinity(0)),
                    "torch_threads": torch.get_num_threads(), "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
                    "nice": os.nice(0), "loadavg_start": load0, "loadavg_metrics_start": load_metrics,
                    "loadavg_end": os.getloadavg(),
                    "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
        "wall_time_s": time.perf_counter() - started,
        "provenance": provenance(),
    }


def summary_text(result: dict) -> str:
    s = result["settings"]
    lines = [f"{s['clips']} clips x {s['seconds']:g} s, {s['threads']} thread(s); "
             f"load {result['machine']['loadavg_start'][0]:.2f} -> {result['machine']['loadavg_end'][0]:.2f}",
             f"{'metric':32s} {'total s':>10s} {'per clip ms':>12s}  timing / extractor"]
    for name, r in result["metrics"].items():
        lines.append(f"{name:32s} {r['total_s']:10.3f} {r['per_clip_ms']:12.2f}  {r['timing']}"
                     + (f"; {r['extractor']}" if r["extractor"] else ""))
    for m, t in (result["extractor_training"] or {}).items():
        lines.append(f"(trained {m} extractor first: {t['training_s']:.1f} s, not counted above)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- command line

def add_bench_metrics(bench_subparsers) -> argparse.ArgumentParser:
    p = bench_subparsers.add_parser("metrics", help="time every evaluation metric on 100 clips of 10 s "
                                                    "(motion, REACT, LSE, FID, FVD, CSIM, LPIPS)")
    p.add_argument("--clips", type=int, help="number of clips (default 100; --quick: 4)")
    p.add_argument("--seconds", type=float, help="clip length in seconds at 25 fps (default 10; --quick: 3)")
    p.add_argument("--quick", action="store_true", help="4 clips of 3 s (seconds; what the test runs)")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    p.add_argument("--repeats", type=int, default=3, help="runs per cheap metric (the median is kept)")
    p.add_argument("--cheap-seconds", type=float, default=10.0, help="a first run shorter than this is repeated")
    p.add_argument("--extractors", default="auto", choices=["auto", "untrained"],
                   help="auto: configured weights, else embedded checkpoints, else train them first (timed "
                        "apart); untrained: random weights of the same architectures (timing only)")
    p.add_argument("--extractors-dir", default=DEFAULT_EXTRACTORS_DIR,
                   help="where embedded extractors trained by this bench are kept")
    p.add_argument("--train-budget", default="quick", choices=sorted(TRAIN_STEPS),
                   help="steps for extractors trained here (registry.train_defaults' quick or full budgets)")
    p.add_argument("--corpus", help="corpus for training extractors (default data/corpus_quick or corpus_smoke)")
    p.add_argument("--only", help="comma-separated metric names (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench_metrics)
    return p


def cmd_bench_metrics(args) -> int:
    from afcore.io import write_json
    clips = args.clips or (QUICK["clips"] if args.quick else 100)
    seconds = args.seconds or (QUICK["seconds"] if args.quick else 10.0)
    result = bench_metrics(clips, seconds, threads=args.threads, repeats=args.repeats, cheap_seconds=args.cheap_seconds,
                           seed=args.seed, extractors=args.extractors, extractors_dir=args.extractors_dir,
                           corpus_dir=args.corpus, train_budget=args.train_budget,
                           only=[x.strip() for x in args.only.split(",")] if args.only else None,
                           progress=not args.quiet)
    result["settings"]["quick"] = bool(args.quick)
    print(summary_text(result))
    print(f"wrote {write_json(args.out, result)}")
    return 0
