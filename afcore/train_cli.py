"""`afsuite train stage1|dpo`, also runnable as `python -m afcore.train_cli stage1|dpo` (what torchrun launches):

    afsuite train stage1 --config tiny --profile quick --data synthetic --out runs/tiny
    torchrun --standalone --nproc_per_node 2 -m afcore.train_cli stage1 --data CORPUS --out runs/tiny
    afsuite train stage1 --config tiny-talking --profile quick --data CORPUS --out runs/talking
    afsuite train dpo --init runs/tiny/last.pt --loser talking --loser-model runs/talking/last.pt \
        --profile quick --data CORPUS --out runs/dpo

Re-run the same command with --resume to continue from out/last.pt, bit for bit.
"""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import fields
from pathlib import Path

from . import train
from .config import CONFIGS, get_config


def parse_sets(pairs: list[str], base, what: str) -> dict:
    """["depth=2", "lr=1e-3"] -> {field: value} typed like `base`'s fields (Python literals, else strings)."""
    names, out = {f.name for f in fields(base)}, {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in names:
            raise train.TrainError(f"--set/--profile-set {pair!r}: expected KEY=VALUE with KEY a {what} field, "
                                   f"one of {sorted(names)}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        out[key] = float(value) if isinstance(getattr(base, key), float) and isinstance(value, int) else value
    return out


def open_dataset(spec: str, cfg):
    if spec == "synthetic":
        return train.RandomWindows(cfg)
    try:
        from .data import CorpusWindows
    except ModuleNotFoundError as err:
        if err.name not in ("afcore.data", "afcore"):
            raise
        raise train.TrainError(f"--data {spec}: the corpus reader afcore.data.CorpusWindows is not built yet; "
                               "use --data synthetic") from err
    if not Path(spec).exists():
        raise train.TrainError(f"--data {spec}: no corpus at this path; build one with data_prep, "
                               "or use --data synthetic")
    try:
        return CorpusWindows(spec, cfg, split="train")
    except (FileNotFoundError, ValueError) as err:  # its messages name the corpus and the fix
        raise train.TrainError(str(err)) from err


def _config(args):
    try:
        return get_config(args.config, **parse_sets(args.set, get_config(args.config), "model config"))
    except ValueError as err:  # a field combination the config rejects
        raise train.TrainError(f"--config {args.config} {' '.join(args.set)}: {err}") from err


def _profile(args, stage: str) -> train.TrainProfile:
    overrides = parse_sets(args.profile_set, train.get_profile(args.profile, stage), "training profile")
    overrides.update({k: getattr(args, k) for k in ("loser", "beta", "lam") if getattr(args, k, None) is not None})
    try:
        return train.get_profile(args.profile, stage, **overrides)
    except ValueError as err:
        raise train.TrainError(f"--profile {args.profile}: {err}") from err


def _report(summary: dict, out) -> None:
    print(f"{summary['stage']}: step {summary['steps']} (from {summary['resumed_from']}), "
          f"{summary['steps_per_s']:.2f} steps/s, final loss {summary.get('final_loss', float('nan')):.4f}; "
          f"wrote {Path(out) / 'last.pt'}, log.csv, metrics.json")


def cmd_stage1(args) -> int:
    try:
        cfg, profile = _config(args), _profile(args, "stage1")
        with train.runtime(args.device, args.threads) as rt:
            summary = train.stage1(cfg, open_dataset(args.data, cfg), profile, args.out, resume=args.resume, rt=rt)
    except train.TrainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if rt.main:
        _report(summary, args.out)
    return 0


def cmd_dpo(args) -> int:
    try:
        profile = _profile(args, "dpo")
        cfg = train.load_model(args.init)[0].cfg
        with train.runtime(args.device, args.threads) as rt:
            summary = train.dpo(args.init, open_dataset(args.data, cfg), profile, args.out,
                                loser_model=args.loser_model, resume=args.resume, rt=rt)
    except train.TrainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if rt.main:
        _report(summary, args.out)
    return 0


def cmd_ae(args) -> int:
    from .train_ae import get_ae_profile, train_autoencoder
    try:
        cfg = _config(args)
        profile = get_ae_profile(args.profile, **parse_sets(args.profile_set, get_ae_profile(args.profile), "autoencoder profile"))
        if not Path(args.data).exists():
            raise train.TrainError(f"--data {args.data}: no corpus at this path; build one with `afsuite data synth`")
        with train.runtime(args.device, args.threads):
            summary = train_autoencoder(args.data, cfg, profile, args.out, resume=args.resume)
    except (train.TrainError, FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    held = summary["held_out"]
    print(f"autoencoder: {summary['steps']} steps in {summary['wall_s']:.0f} s; held-out identities "
          f"PSNR {held['psnr_db']:.2f} dB, SSIM {held['ssim']:.3f}; wrote {Path(args.out) / 'autoencoder.pt'}")
    return 0


def add_commands(sub) -> None:
    def common(p):
        p.add_argument("--profile", default="smoke", choices=sorted(train.PROFILES),
                       help="smoke: seconds; quick, full: CPU budgets; paper: the paper's recipe")
        p.add_argument("--profile-set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a training-profile field, e.g. steps=100 (repeatable)")
        p.add_argument("--data", required=True, help="a corpus path (afcore.data.CorpusWindows) or 'synthetic'")
        p.add_argument("--out", required=True, help="run folder: last.pt, log.csv, metrics.json")
        p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (same options as the run)")
        p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads (fix it for bit-exact resume)")

    p = sub.add_parser("ae", help="stage 0: the motion autoencoder on corpus frames (then `afsuite data latents`)")
    p.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a model-config field")
    p.add_argument("--profile", default="smoke", choices=("smoke", "quick", "full", "paper"))
    p.add_argument("--profile-set", action="append", default=[], metavar="KEY=VALUE", help="override a profile field")
    p.add_argument("--data", required=True, help="a corpus folder")
    p.add_argument("--out", required=True, help="run folder: autoencoder.pt, ae_last.pt, ae_log.csv, metrics.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ae_last.pt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=cmd_ae)

    p = sub.add_parser("stage1", help="diffusion forcing (the main model and both baselines)")
    p.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model-config field, e.g. depth=2 (repeatable)")
    common(p)
    p.set_defaults(func=cmd_stage1)

    p = sub.add_parser("dpo", help="DPO fine-tuning of a stage-1 checkpoint (L_DF + lambda L_DPO)")
    p.add_argument("--init", required=True, help="stage-1 checkpoint; a frozen copy is the DPO reference")
    p.add_argument("--loser", choices=("talking", "dropped"), default=None,
                   help="talking: talking-only model (paper); dropped: the stage-1 model, user conditions zeroed")
    p.add_argument("--loser-model", default=None, help="talking-only checkpoint (for --loser talking)")
    p.add_argument("--beta", type=float, default=None, help="default: the profile's (paper 1000)")
    p.add_argument("--lam", type=float, default=None, help="default: the profile's (paper 0.1)")
    common(p)
    p.set_defaults(func=cmd_dpo)


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="stage 0 (motion autoencoder), 1 (diffusion forcing), 2 (DPO)")
    add_commands(p.add_subparsers(dest="train_stage", required=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m afcore.train_cli",
                                     description="stage 1 (diffusion forcing) and stage 2 (DPO) training")
    add_commands(parser.add_subparsers(dest="train_stage", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
