"""`afsuite bench latency` (wired by afcore.commands calling `add_bench_latency`), also `python -m eval.latency_cli`.

    afsuite bench latency --config tiny --profile full --json results/bench/latency_tiny.json
    afsuite bench latency --config paper --profile compare     # on a GPU: --profile full
"""
from __future__ import annotations

import argparse
import sys

from afcore.config import CONFIGS

PROFILE_NAMES = ("smoke", "full", "compare")  # = eval.latency_bench.PROFILES (not imported: keeps `afsuite` fast)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def add_bench_latency(bench_subparsers) -> argparse.ArgumentParser:
    p = bench_subparsers.add_parser("latency", help="ours vs INFP* vs talking-only: buffering, start-up, per-block "
                                                    "compute, sweeps, session flatness, cue-to-reaction")
    p.add_argument("--config", default="tiny", choices=[c for c in CONFIGS if c in ("tiny", "paper")],
                   help="base config; the baselines are derived from it")
    p.add_argument("--profile", default="smoke", choices=PROFILE_NAMES,
                   help="smoke: seconds; full: the issue's settings (10-minute session, torch.compile); "
                        "compare: only ours vs INFP* vs talking-only, a few rounds (the paper config on a CPU)")
    p.add_argument("--nfe", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="torch threads (set explicitly; silero_vad sets 1)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda (synchronised timers)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="auto: bfloat16 autocast on CUDA (the official inference), float32 on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, help="timed rounds per comparison (overrides the profile)")
    p.add_argument("--session-seconds", type=float, help="long-session length (overrides the profile)")
    p.add_argument("--nfe-list", type=_ints, help="e.g. 2,4,10 (2 runs as 3)")
    p.add_argument("--blocks", type=_ints, help="e.g. 5,10,25")
    p.add_argument("--thread-list", type=_ints, help="e.g. 1,2")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="include torch.compile")
    p.add_argument("--checkpoint", help="trained Avatar Forcing checkpoint (cue-to-reaction)")
    p.add_argument("--corpus", help="corpus folder with encoded latents (cue-to-reaction)")
    p.add_argument("--readout", help="latent -> parameter readout (.pt); default: ridge fit on the corpus")
    p.add_argument("--json", help="output (default results/bench/latency_<config>_<profile>.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench_latency)
    return p


def cmd_bench_latency(args) -> int:
    from afcore.io import write_json
    from eval.latency_bench import bench_latency
    from eval.latency_plots import summary_text
    overrides = {k: v for k, v in {"rounds": args.rounds, "session_seconds": args.session_seconds,
                                   "nfe_list": args.nfe_list, "blocks": args.blocks, "thread_list": args.thread_list,
                                   "compile": args.compile}.items() if v is not None}
    result = bench_latency(args.config, profile=args.profile, nfe=args.nfe, threads=args.threads, device=args.device,
                           dtype=args.dtype, seed=args.seed, checkpoint=args.checkpoint, corpus_dir=args.corpus,
                           readout=args.readout, progress=not args.quiet, **overrides)
    print(summary_text(result))
    path = args.json or f"results/bench/latency_{args.config}_{args.profile}.json"
    print(f"wrote {write_json(path, result)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.latency_cli")
    sub = parser.add_subparsers(dest="bench", required=True)
    add_bench_latency(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
