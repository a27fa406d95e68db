"""`afsuite info` and `afsuite bench ...`."""
from __future__ import annotations

import json

import torch

from .config import CONFIGS
from .dfot import FlowTransformer


def parameter_counts(cfg) -> dict[str, int]:
    """Counted on the meta device: no memory is allocated, so the paper size is instant."""
    counts = {}
    with torch.device("meta"):
        counts["flow_transformer"] = sum(p.numel() for p in FlowTransformer(cfg).parameters())
        try:
            from .motion_ae import MotionAutoencoder
            counts["motion_autoencoder"] = sum(p.numel() for p in MotionAutoencoder(cfg).parameters())
        except ImportError:
            pass
    return counts


def cmd_info(args) -> int:
    rows = []
    for name, cfg in CONFIGS.items():
        counts = parameter_counts(cfg)
        rows.append((name, cfg, counts))
        if args.json:
            continue
        print(f"{name:14s} latent {cfg.latent_dim:4d}  hidden {cfg.hidden:4d}  depth {cfg.depth}  heads {cfg.heads}  "
              f"window {cfg.window} = {cfg.window // cfg.block} x {cfg.block}  look-ahead {cfg.lookahead} "
              f"({cfg.mask})  image {cfg.image_size}px  audio {cfg.audio_encoder}")
        for part, n in counts.items():
            print(f"{'':14s} {part:20s} {n:>13,d} parameters")
    if args.json:
        print(json.dumps({n: {"config": c.to_dict(), "parameters": k} for n, c, k in rows}, indent=2))
    return 0


def cmd_bench_stream(args) -> int:
    from eval.latency import bench_stream
    from .io import write_json
    result = bench_stream(args.config, args.seconds, nfe=args.nfe, threads=args.threads, device=args.device,
                          seed=args.seed)
    c = result["per_block_compute"]
    print(f"{result['config']}: per-block compute median {c['median_ms']:.1f} ms, p95 {c['p95_ms']:.1f} ms "
          f"(block = {result['block_duration_ms']:.0f} ms; real-time factor {result['real_time_factor']:.3f}); "
          f"last/first 10 s = {result['last_over_first']:.3f}")
    if args.json:
        print(f"wrote {write_json(args.json, result)}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("info", help="named configs and their parameter counts")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)

    bench = sub.add_parser("bench", help="benchmarks that write JSON under results/").add_subparsers(
        dest="bench", required=True)
    p = bench.add_parser("stream", help="stream random inputs through a Session and time every block")
    p.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    p.add_argument("--seconds", type=float, default=60.0, help="stream length after warm-up")
    p.add_argument("--nfe", type=int, default=None, help="default: the config's (10)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="where to write the result, e.g. results/bench/stream_tiny.json")
    p.set_defaults(func=cmd_bench_stream)
    from eval.latency_cli import add_bench_latency
    add_bench_latency(bench)
    from eval.metrics_bench import add_bench_metrics
    add_bench_metrics(bench)
