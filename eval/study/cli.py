"""`afsuite study ...`: build a study, import survey exports, write reconstructed or simulated votes,
and analyse votes into JSON and figures."""
from __future__ import annotations

import argparse
import sys

from eval.study.design import CRITERIA, StudyError


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _named(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _reported(func):
    """Turn a StudyError into a message on stderr and exit status 2 (bad input, not a crash)."""
    def run(args) -> int:
        try:
            return func(args) or 0
        except StudyError as err:
            print(f"afsuite study {args.study_command}: {err}", file=sys.stderr)
            return 2
    return run


@_reported
def cmd_analyze(args) -> int:
    import pandas as pd

    from afcore.io import write_json
    from eval.study.analyze import analyze, summary_table
    from eval.study.votes import read_votes
    votes = read_votes(args.votes)
    result = analyze(votes, systems=args.systems, criteria=args.criteria, n_boot=args.n_boot, seed=args.seed)
    result["votes_files"] = [str(p) for p in args.votes]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary_table(result).to_string(index=False))
    pb = result["position_bias"]
    if pb["left_share"] is not None:
        print(f"position bias: left share {pb['left_share']:.3f} of {pb['n_decisive']} non-tie votes, "
              f"p = {pb['p']:.3g}")
    if args.json:
        print(f"wrote {write_json(args.json, result)}")
    if args.figures:
        from eval.study.plots import save_figures
        for path in save_figures(result, args.figures):
            print(f"wrote {path}")
    return 0


@_reported
def cmd_build(args) -> int:
    from eval.study.build import build_study
    systems = dict(args.system)
    if len(systems) != len(args.system):
        raise StudyError("each --system NAME must be given once")
    path = build_study(systems, args.user, args.out, sets=args.sets, practice_set=args.practice,
                       practice_note=args.practice_note, criteria=args.criteria, seed=args.seed)
    print(f"wrote {path}; rate with eval/study/rate.ipynb (JupyterLab or Voila) or RatingForm({str(path)!r}, VOTES)")
    return 0


@_reported
def cmd_import(args) -> int:
    from eval.study.votes import import_wide, write_votes
    votes = import_wide(args.export, args.mapping)
    print(f"wrote {write_votes(votes, args.out)} ({len(votes)} votes from {votes['rater_id'].nunique()} raters)")
    return 0


@_reported
def cmd_paper(args) -> int:
    from eval.study.paper import reconstruct_paper_votes
    from eval.study.votes import write_votes
    votes = reconstruct_paper_votes(args.version, args.raters, args.sets, args.clustering)
    print(f"wrote {write_votes(votes, args.out)}: RECONSTRUCTED from the paper's {args.version} percentages, "
          "not raw data; which rater cast which vote is unknown")
    return 0


@_reported
def cmd_simulate(args) -> int:
    from afcore.io import write_json
    from eval.study.simulate import simulate_votes
    from eval.study.votes import write_votes
    strengths = {name: float(value) for name, value in args.strength}
    votes, truth = simulate_votes(list(strengths), args.criteria or list(CRITERIA), strengths, args.raters,
                                  args.sets, args.tie_rate, args.left_share, args.rater_sd, args.set_sd, args.seed)
    print(f"wrote {write_votes(votes, args.out)} (SIMULATED, {len(votes)} votes)")
    if args.truth:
        print(f"wrote {write_json(args.truth, truth)} (the planted truth)")
    return 0


def register(subparsers) -> None:
    study = subparsers.add_parser("study", help="preference study: build, import, simulate, analyse",
                                  description=__doc__)
    sub = study.add_subparsers(dest="study_command", required=True)

    p = sub.add_parser("analyze", help="statistics of a votes CSV: shares, intervals, tests, BT, kappa, side bias")
    p.add_argument("votes", nargs="+",
                   help="votes CSV file(s): rater_id,set_id,criterion,left_system,right_system,choice")
    p.add_argument("--json", help="write every statistic to this JSON file")
    p.add_argument("--figures", help="write PNG figures into this folder")
    p.add_argument("--systems", type=_csv_list, help="comma-separated order; A of each pair is the earlier one "
                                                     "(default: alphabetical)")
    p.add_argument("--criteria", type=_csv_list, help="comma-separated criteria to analyse (default: all in the votes)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("build", help="pair videos + study.json from per-system clip folders")
    p.add_argument("--system", type=_named, action="append", required=True, metavar="NAME=DIR",
                   help="a system's clip folder with <set_id>.mp4 (give at least two)")
    p.add_argument("--user", required=True, help="folder with the user's <set_id>.mp4 (and optional <set_id>.wav)")
    p.add_argument("--out", required=True, help="output folder (pairs/ and study.json)")
    p.add_argument("--sets", type=_csv_list, help="comma-separated set ids (default: all found)")
    p.add_argument("--practice", help="set id used for the practice pair and left out of rating (default: first)")
    p.add_argument("--practice-note", default="", help="reference answer shown with the practice pair")
    p.add_argument("--criteria", type=_csv_list, help="comma-separated criteria (default: the paper's five)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-rater order and sides")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("import", help="wide survey export (one column per question) + mapping JSON -> votes CSV",
                       description="Mapping JSON: {\"rater_column\": ..., \"skip_rows\": 0, \"choices\": {answer: "
                                   "left|tie|right}, \"questions\": {column: {set_id, criterion, left_system, "
                                   "right_system}}}; a field may be {\"column\": NAME} to read it per respondent. "
                                   "See eval/study/README.md.")
    p.add_argument("export", help="the survey export CSV")
    p.add_argument("--mapping", required=True, help="mapping JSON file")
    p.add_argument("--out", required=True, help="votes CSV to write")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("paper", help="votes RECONSTRUCTED from the paper's published shares (not raw data)")
    p.add_argument("--out", required=True)
    p.add_argument("--version", default="v2", choices=["v2", "project_page"])
    p.add_argument("--raters", type=int, default=42)
    p.add_argument("--sets", type=int, default=12)
    p.add_argument("--clustering", default="spread", choices=["spread", "by_rater"],
                   help="how the unknown rater assignment is filled in (default: spread at random)")
    p.set_defaults(func=cmd_paper)

    p = sub.add_parser("simulate", help="SIMULATED votes with known preferences and a planted side bias")
    p.add_argument("--out", required=True)
    p.add_argument("--truth", help="write the planted truth to this JSON file")
    p.add_argument("--strength", type=_named, action="append", required=True, metavar="SYSTEM=LOGIT",
                   help="Bradley-Terry log-strength of a system (give two or more), e.g. --strength Ours=1.5 "
                        "--strength INFP=0")
    p.add_argument("--criteria", type=_csv_list, help="comma-separated (default: the paper's five)")
    p.add_argument("--raters", type=int, default=42)
    p.add_argument("--sets", type=int, default=12)
    p.add_argument("--tie-rate", type=float, default=0.1)
    p.add_argument("--left-share", type=float, default=0.5, help="planted side bias: 0.5 none, 0.6 = 60%% left")
    p.add_argument("--rater-sd", type=float, default=0.5, help="SD of rater effects on the logit scale")
    p.add_argument("--set-sd", type=float, default=0.3, help="SD of set effects on the logit scale")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_simulate)
