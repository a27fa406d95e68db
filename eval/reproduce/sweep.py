"""`afsuite sweep NOTEBOOK -g grid.yaml --jobs N`: a parameter grid through papermill, one run folder per
point (`<out>/runs/<k=v_...>/`, each atomic with its run.json), gathered into one tidy table
(`sweep.parquet` + `sweep.csv`: a row per point and numeric metric), a mean/spread summary over seeds
(`summary.csv`) and one plot per swept parameter (`sweep_<param>.png`).

grid.yaml maps parameter names to a list of values (swept) or a single value (fixed):
    seed: [0, 1, 2]
    beta: [0.1, 0.5]
    n_steps: 200
"""
from __future__ import annotations

import fnmatch
import itertools
import json
import math
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

from eval.reproduce import runner
from eval.reproduce.compare import numeric_leaves

MAX_PLOTTED_METRICS = 6
SEED_NAMES = ("seed",)


def load_grid(path: str | Path) -> dict:
    grid = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"{path}: expected a mapping of parameter -> list of values (or one fixed value)")
    return grid


def grid_points(grid: dict) -> tuple[list[str], list[dict]]:
    """(swept parameter names, one {param: value} per point); scalars are fixed in every point."""
    swept = [k for k, v in grid.items() if isinstance(v, list)]
    for k in swept:
        if not grid[k]:
            raise ValueError(f"grid: {k!r} has an empty list of values")
    fixed = {k: v for k, v in grid.items() if k not in swept}
    points = [{**fixed, **dict(zip(swept, values))} for values in itertools.product(*(grid[k] for k in swept))]
    return swept, points


def point_id(point: dict, swept: list[str]) -> str:
    text = "_".join(f"{k}={json.dumps(point[k]) if not isinstance(point[k], str) else point[k]}" for k in swept)
    return re.sub(r"[^A-Za-z0-9_=.,+-]+", "-", text)[:150] or "point"


def run_sweep(notebook: str | Path, grid: dict, *, profile: str, out_dir: str | Path, jobs: int = 2,
              stage=None, profiles: dict | None = None, base: dict | None = None,
              run_dir: str | Path | None = None, resume: bool = False, timeout: float | None = None,
              plot_metrics=(), echo=print) -> dict:
    """Run every grid point (in parallel up to `jobs`), gather, summarise and plot. Returns
    {"table": tidy DataFrame, "summary": DataFrame, "points": [{"id", "status", "error", ...}],
    "figures": [paths], "failed": n}."""
    out_dir = Path(out_dir)
    swept, points = grid_points(grid)
    plans, results = [], []
    for i, point in enumerate(points):  # plan everything first: a bad parameter name fails before anything runs
        pid = point_id(point, swept)
        if any(pid == other for other, _, _ in plans):  # two values that read the same once sanitised
            pid = f"{pid}-{i}"
        plan = runner.make_plan(notebook, out_dir / "runs" / pid, profile=profile, stage=stage, profiles=profiles,
                                extra={**(base or {}), **point}, run_dir=run_dir)
        plan.name = f"{plan.name} {pid}"
        plans.append((pid, point, plan))
    for note in dict.fromkeys(n for _, _, p in plans for n in p.notes):
        echo(f"[sweep] note: {note}")
    todo = []
    for pid, point, plan in plans:
        if resume and runner.unchanged(plan):
            echo(runner.progress_line(plan.name, "skipped (unchanged)"))
            results.append({"id": pid, "point": point, "status": "unchanged", "out_dir": plan.out_dir})
        else:
            todo.append((pid, point, plan))
    if todo:
        threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
        with ProcessPoolExecutor(max(1, jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            staged = []
            for pid, point, plan in todo:
                staging = runner.stage_staging(plan)
                job = runner.make_job(plan, staging, threads=threads, timeout=timeout)
                staged.append((pid, point, plan, staging, job, pool.submit(runner.execute, job)))
            for pid, point, plan, staging, job, future in staged:  # in grid order; they run in parallel
                try:
                    outcome = future.result()
                except Exception as err:  # the worker died
                    outcome = {"status": "failed", "started": None, "wall_time_s": None,
                               "error": {"cell": None, "ename": type(err).__name__, "evalue": str(err)}}
                record = runner.finish(plan, staging, outcome, job=job)
                where = plan.out_dir if record["status"] == "ok" else runner.failed_dir(plan.out_dir)
                echo(runner.progress_line(plan.name, record["status"], record, where))
                results.append({"id": pid, "point": point, "status": record["status"], "out_dir": where,
                                "error": record["error"], "wall_time_s": record["wall_time_s"]})
    order = {pid: i for i, (pid, _, _) in enumerate(plans)}
    results.sort(key=lambda r: order[r["id"]])
    table = gather(results, swept)
    summary = summarise(table, swept)
    figures = plot(summary, table, swept, out_dir, plot_metrics)
    _write_tables(table, summary, out_dir, results, swept)
    return {"table": table, "summary": summary, "points": results, "figures": figures,
            "failed": sum(r["status"] == "failed" for r in results)}


def gather(results, swept):
    """Tidy table: one row per (point, numeric metric) with the point's swept parameters as columns."""
    import pandas as pd
    rows = []
    for r in results:
        if r["status"] not in ("ok", "unchanged"):
            continue
        path = Path(r["out_dir"]) / "metrics.json"
        if not path.is_file():  # the notebook ran but wrote no metrics: nothing to gather
            continue
        record = json.loads(path.read_text())
        for metric, value in numeric_leaves(record.get("metrics", record), none_as_nan=False).items():
            rows.append({"run": r["id"], **{k: r["point"][k] for k in swept}, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=["run", *swept, "metric", "value"])


def summarise(table, swept):
    """Mean, standard deviation and count over seeds for every other setting and metric."""
    import pandas as pd
    keys = [k for k in swept if k not in SEED_NAMES] + ["metric"]
    if table.empty:
        return pd.DataFrame(columns=[*keys, "mean", "std", "n"])
    out = _hashable(table, keys[:-1]).groupby(keys, sort=False, dropna=False)["value"].agg(["mean", "std", "count"])
    return out.rename(columns={"count": "n"}).reset_index()


def _hashable(table, columns):
    """Columns holding lists or dicts (or mixed types) as JSON text, so they can be grouped and stored."""
    def mixed(col):
        kinds = {type(v) for v in table[col]}
        return len(kinds) > 1 or kinds & {list, dict}
    return table.assign(**{c: table[c].map(json.dumps) for c in columns if mixed(c)})


def _chosen_metrics(summary, patterns) -> list[str]:
    metrics = list(dict.fromkeys(summary["metric"]))
    if patterns:
        return [m for m in metrics if any(fnmatch.fnmatch(m, p) for p in patterns)][:4 * MAX_PLOTTED_METRICS]
    varying = [m for m in metrics if summary.loc[summary["metric"] == m, "mean"].nunique() > 1]
    return (varying or metrics)[:MAX_PLOTTED_METRICS]


def plot(summary, table, swept, out_dir: Path, patterns=()) -> list[Path]:
    """One figure per swept parameter (seed only when it is the only one): each chosen metric against the
    parameter, mean over seeds with a +-1 sd bar, one line per setting of the other parameters."""
    from matplotlib.figure import Figure
    from afcore.io import atomic_path
    params = [k for k in swept if k not in SEED_NAMES]
    data = summary
    if not params:  # only seeds swept: plot each seed's value
        params, data = [k for k in swept if k in SEED_NAMES], table.rename(columns={"value": "mean"}).assign(std=0.0)
    if data.empty or not params:
        return []
    metrics = _chosen_metrics(data, patterns)
    paths = []
    for param in params:
        others = [k for k in swept if k not in SEED_NAMES and k != param]
        fig = Figure(figsize=(4.2 * min(3, len(metrics)), 3.2 * math.ceil(len(metrics) / 3)), layout="constrained")
        axes = fig.subplots(math.ceil(len(metrics) / 3), min(3, len(metrics)), squeeze=False).ravel()
        for ax, metric in zip(axes, metrics):
            sub = data[data["metric"] == metric]
            groups = sub.groupby(others, sort=False) if others else [((), sub)]
            for label, g in groups:
                x = list(g[param])
                numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x)
                xs = x if numeric else list(range(len(x)))
                ax.errorbar(xs, g["mean"], yerr=g["std"].fillna(0), marker="o", capsize=3,
                            label=", ".join(f"{k}={v}" for k, v in zip(others, label if isinstance(label, tuple) else (label,))) or None)
                if not numeric:
                    ax.set_xticks(xs, [str(v) for v in x])
            ax.set_title(metric if len(metric) < 48 else "..." + metric[-45:], fontsize=8)
            ax.set_xlabel(param)
            if others:
                ax.legend(fontsize=6)
        for ax in axes[len(metrics):]:
            ax.set_visible(False)
        fig.suptitle(f"mean +- sd over {', '.join(SEED_NAMES)}" if any(s in swept for s in SEED_NAMES) else "one run per point",
                     fontsize=9)
        path = out_dir / f"sweep_{re.sub(r'[^A-Za-z0-9_.-]+', '-', param)}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        paths.append(path)
    return paths


def _write_tables(table, summary, out_dir: Path, results, swept) -> None:
    from afcore.io import atomic_path, write_json
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "sweep.parquet") as tmp:
        _hashable(table, swept).to_parquet(tmp, index=False)  # list or mixed-type columns as JSON text
    with atomic_path(out_dir / "sweep.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out_dir / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    write_json(out_dir / "sweep.json", {"swept": swept, "points": [
        {**{k: v for k, v in r.items() if k != "out_dir"}, "out_dir": runner.shown_path(r["out_dir"])} for r in results]})
