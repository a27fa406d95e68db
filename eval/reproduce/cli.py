"""`afsuite run | reproduce | sweep | compare | report`: batch reruns of the notebooks with papermill and the
reproduction report. Exit status: 0 all good, 1 a stage (or sweep point, or comparison) failed, 2 bad input."""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from eval.reproduce.stages import REPO

RESULTS = REPO / "results"  # notebooks run with the repo root as cwd, so results live there too


def _value(text: str):
    """A -p value as papermill would read it: Python literals (1, 0.5, 1e-3, True, [1, 2], "x"), else text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None, "null": None}.get(text.lower(), text)


def _parameters(args) -> dict:
    import yaml
    params = {}
    for path in args.file or ():
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of parameter -> value")
        params.update(loaded)
    params.update({key: _value(value) for key, value in args.param or ()})
    return params


def _notebook_and_stage(text: str):
    """A notebook path, or a registered stage's name or prefix ("03")."""
    from eval.reproduce.stages import STAGES, find_stage, select
    path = Path(text)
    if path.suffix == ".ipynb" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"{text}: no such notebook")
        return path, find_stage(STAGES, path)
    names = select(STAGES, [text])
    if len(names) > 1:
        raise ValueError(f"{text!r} matches several stages ({', '.join(names)}); give more of the name")
    name = names[0]
    stage = next(s for s in STAGES if s.name == name)
    if not stage.notebook_path().is_file():
        raise FileNotFoundError(f"stage {name}: {stage.notebook} is not built yet")
    return stage.notebook_path(), stage


def _reported(command):
    """Bad input (unknown parameter, missing file, bad YAML) -> one line on stderr and exit status 2."""
    def run(args) -> int:
        from eval.reproduce.notebook import NotebookError
        from eval.reproduce.stages import RegistryError
        try:
            return command(args)
        except (NotebookError, RegistryError, FileNotFoundError, ValueError) as err:
            print(f"afsuite {args.command}: {err}", file=sys.stderr)
            return 2
    return run


@_reported
def cmd_run(args) -> int:
    from eval.reproduce.runner import run_notebook
    from eval.reproduce.stages import load_profiles
    notebook, stage = _notebook_and_stage(args.notebook)
    out = Path(args.out) if args.out else RESULTS / args.profile / (stage.name if stage else notebook.stem)
    record = run_notebook(notebook, out, profile=args.profile, stage=stage, profiles=load_profiles(),
                          extra=_parameters(args), run_dir=RESULTS / args.profile,  # where upstreams ran
                          resume=args.resume, threads=args.threads, timeout=args.timeout)
    return 0 if record["status"] in ("ok", "unchanged") else 1


@_reported
def cmd_reproduce(args) -> int:
    from eval.reproduce.report import write_report
    from eval.reproduce.schedule import reproduce
    out = Path(args.out) if args.out else RESULTS / args.profile
    summary = reproduce(args.profile, run_dir=out, jobs=args.jobs, only=args.only, resume=args.resume,
                        timeout=args.timeout)
    from eval.reproduce.report import STATUS_TEXT
    counts = {}
    for entry in summary["stages"].values():
        label = STATUS_TEXT.get(entry["status"], entry["status"])
        counts[label] = counts.get(label, 0) + 1
    print(f"reproduce {args.profile}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) +
          f" in {summary['wall_time_s']:.0f} s")
    if not args.no_report:
        md, page = write_report(out)
        print(f"wrote {md} and {page}")
    return summary["exit_code"]


@_reported
def cmd_sweep(args) -> int:
    from eval.reproduce.stages import load_profiles
    from eval.reproduce.sweep import load_grid, run_sweep
    notebook, stage = _notebook_and_stage(args.notebook)
    name = stage.name if stage else notebook.stem
    out = Path(args.out) if args.out else RESULTS / args.profile / "sweeps" / name
    result = run_sweep(notebook, load_grid(args.grid), profile=args.profile, out_dir=out, jobs=args.jobs,
                       stage=stage, profiles=load_profiles(), base=_parameters(args),
                       run_dir=RESULTS / args.profile, resume=args.resume, timeout=args.timeout,
                       plot_metrics=args.plot_metrics or ())
    print(f"sweep {name}: {len(result['points'])} points, {result['failed']} failed; "
          f"{len(result['table'])} rows in {out / 'sweep.parquet'} (+ .csv, summary.csv), "
          f"{len(result['figures'])} plots")
    return 1 if result["failed"] else 0


def cmd_compare(args) -> int:
    from eval.reproduce.compare import main
    return main(args)


def cmd_export(args) -> int:
    from eval.reproduce.compare import export_reference
    try:
        files = export_reference(args.run_dir, args.out, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError) as err:
        print(f"afsuite export-reference: error: {err}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} files ({size / 1e6:.1f} MB) to {args.out}")
    return 0


@_reported
def cmd_report(args) -> int:
    from eval.reproduce.report import write_report
    run_dir = Path(args.run_dir) if args.run_dir else RESULTS / (args.profile or "full")
    md, page = write_report(run_dir, profile=args.profile)
    print(f"wrote {md} and {page}")
    return 0


def _add_params(p) -> None:
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="set a notebook parameter (Python literal or text); repeatable; wins over -f")
    p.add_argument("-f", "--file", action="append", metavar="params.yaml", help="parameters from a YAML mapping")


def _add_common(p, profile_default="smoke") -> None:
    from eval.reproduce.stages import PROFILE_NAMES
    p.add_argument("--profile", default=profile_default, choices=PROFILE_NAMES,
                   help="parameter overrides from eval/reproduce/profiles.yaml")
    p.add_argument("--timeout", type=float, help="seconds a single cell may run before the notebook fails")


def register(subparsers) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser("run", formatter_class=fmt, help="run one notebook with papermill into results/<profile>/<notebook>/")
    p.add_argument("notebook", help="notebook path, or a stage name or prefix (e.g. 06)")
    _add_params(p)
    _add_common(p)
    p.add_argument("--out", help="output folder (default results/<profile>/<stage or notebook name>)")
    p.add_argument("--resume", action="store_true", help="do nothing if the same notebook and parameters already ran")
    p.add_argument("--threads", type=int, help="OMP/MKL threads for the kernel (default: unset)")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("reproduce", formatter_class=fmt, help="run every stage of a profile in dependency order, then write REPORT.md/.html")
    _add_common(p, profile_default="full")
    p.add_argument("--jobs", type=int, default=2, help="notebooks run in parallel (each gets cores/jobs threads)")
    p.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages (names or prefixes); others' earlier results are reused")
    p.add_argument("--resume", action="store_true", help="skip stages whose notebook, parameters and upstreams are unchanged")
    p.add_argument("--out", help="run folder (default results/<profile>)")
    p.add_argument("--no-report", action="store_true", help="do not write REPORT.md / REPORT.html")
    p.set_defaults(func=cmd_reproduce)

    p = subparsers.add_parser("sweep", formatter_class=fmt, help="a parameter grid through papermill, gathered into one table and plots")
    p.add_argument("notebook", help="notebook path, or a stage name or prefix")
    p.add_argument("-g", "--grid", required=True, help="YAML: parameter -> list of values (swept) or value (fixed)")
    _add_params(p)
    _add_common(p)
    p.add_argument("--jobs", type=int, default=2, help="grid points run in parallel")
    p.add_argument("--out", help="sweep folder (default results/<profile>/sweeps/<notebook>)")
    p.add_argument("--resume", action="store_true", help="skip points that already ran with the same parameters")
    p.add_argument("--plot-metrics", nargs="+", metavar="GLOB", help="metrics to plot (default: the first that vary)")
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser("compare", formatter_class=fmt, help="numeric differences between two runs' metrics.json files")
    p.add_argument("run_a", help="a run folder (results/<profile>) or one stage's folder")
    p.add_argument("run_b")
    p.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance (|a-b| <= atol + rtol*|b|)")
    p.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance")
    p.add_argument("--ignore", action="append", default=[], metavar="GLOB", help="leaf paths to skip, e.g. '*latency*'")
    p.add_argument("--max-lines", type=int, default=50, help="differences printed (0: all)")
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("export-reference", formatter_class=fmt,
                              help="copy a run's report, metrics and figures (no checkpoints) to a reference folder")
    p.add_argument("run_dir", help="a finished run folder, e.g. results/full")
    p.add_argument("--out", default="results/reference/full", help="where the reference goes (committed)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing reference")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("report", formatter_class=fmt, help="(re)write REPORT.md and REPORT.html of a run folder")
    p.add_argument("run_dir", nargs="?", help="run folder (default results/<profile>)")
    p.add_argument("--profile", help="the run's profile (default: from its reproduce.json; folder results/full)")
    p.set_defaults(func=cmd_report)

