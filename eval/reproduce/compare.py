"""`afsuite compare RUN_A RUN_B`: the numeric leaves of every metrics.json in two runs, side by side;
prints those that differ beyond tolerance (|a - b| > atol + rtol * |b|, as numpy.isclose) and those
present on one side only. Only the `metrics` part of each file is compared: context such as wall times
and provenance differs between any two runs by design."""
from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path

DEFAULT_IGNORE = ("*wall_time*",)  # machine load, not results
# What a committed reference run keeps: the report, every stage's numbers and figures, no checkpoints,
# executed notebooks or HTML (they are large and a rerun makes them again).
REFERENCE_FILES = ("REPORT.md", "reproduce.json", "**/metrics.json", "**/run.json", "*/*.png", "*/*.csv", "*/*.md")
STAGE_MISSING = "(no metrics.json)"


def numeric_leaves(obj, prefix: str = "", none_as_nan: bool = True) -> dict[str, float]:
    """{"a.b[0].c": value} for every int/float/bool leaf (bools as 0/1; None as NaN, so that a number
    turning into None is a difference, unless none_as_nan=False)."""
    out = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(numeric_leaves(value, f"{prefix}.{key}" if prefix else str(key), none_as_nan))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            out.update(numeric_leaves(value, f"{prefix}[{i}]", none_as_nan))
    elif isinstance(obj, (bool, int, float)):
        out[prefix] = float(obj)
    elif obj is None and prefix and none_as_nan:
        out[prefix] = math.nan
    return out


def metrics_files(run: str | Path) -> dict[str, Path]:
    """{stage folder relative to the run: metrics.json} for a run folder or a single stage folder;
    staging, failed and hidden folders are left out."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder (give results/<profile> or a stage folder)")
    found = {}
    for path in sorted(run.rglob("metrics.json")):
        rel = path.parent.relative_to(run)
        if any(part.startswith(".") or part.endswith(".failed") for part in rel.parts):
            continue
        found[rel.as_posix() if rel.parts else "."] = path
    return found


@dataclass
class Difference:
    stage: str
    key: str
    a: float | None  # None: missing on that side
    b: float | None

    def __str__(self) -> str:
        if self.a is None or self.b is None:
            side = "A" if self.b is None else "B"
            if self.key == STAGE_MISSING:
                return f"{self.stage}: metrics.json only in run {side}"
            return f"{self.stage}: {self.key}: only in run {side} ({self.a if self.b is None else self.b:g})"
        return f"{self.stage}: {self.key}: {self.a:.6g} vs {self.b:.6g} (diff {self.a - self.b:+.3g})"


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * abs(b)


def _load(path: Path) -> dict[str, float]:
    record = json.loads(path.read_text())
    return numeric_leaves(record.get("metrics", record) if isinstance(record, dict) else record)


def compare_runs(run_a, run_b, *, rtol: float = 1e-3, atol: float = 1e-6,
                 ignore=DEFAULT_IGNORE) -> tuple[list[Difference], int]:
    """(differences beyond tolerance, number of values compared). A stage on one side only is one
    Difference with key STAGE_MISSING."""
    files_a, files_b = metrics_files(run_a), metrics_files(run_b)
    diffs, compared = [], 0
    for stage in sorted(set(files_a) | set(files_b)):
        if stage not in files_a or stage not in files_b:
            diffs.append(Difference(stage, STAGE_MISSING, 1.0 if stage in files_a else None,
                                    1.0 if stage in files_b else None))
            continue
        a, b = _load(files_a[stage]), _load(files_b[stage])
        for key in sorted(set(a) | set(b)):
            if any(fnmatch.fnmatch(key, pattern) for pattern in ignore):
                continue
            if key not in a or key not in b:
                diffs.append(Difference(stage, key, a.get(key), b.get(key)))
                continue
            compared += 1
            if not _close(a[key], b[key], rtol, atol):
                diffs.append(Difference(stage, key, a[key], b[key]))
    return diffs, compared


def main(args) -> int:
    try:
        diffs, compared = compare_runs(args.run_a, args.run_b, rtol=args.rtol, atol=args.atol,
                                       ignore=(*DEFAULT_IGNORE, *args.ignore))
    except (FileNotFoundError, ValueError) as err:
        print(f"afsuite compare: {err}")
        return 2
    shown = diffs if args.max_lines <= 0 else diffs[:args.max_lines]
    for diff in shown:
        print(diff)
    if len(shown) < len(diffs):
        print(f"... {len(diffs) - len(shown)} more (--max-lines 0 shows all)")
    verdict = "no differences" if not diffs else f"{len(diffs)} differences"
    print(f"{verdict} beyond rtol={args.rtol:g}, atol={args.atol:g} ({compared} values compared; "
          f"ignored: {', '.join((*DEFAULT_IGNORE, *args.ignore))})")
    return 1 if diffs else 0


def export_reference(run, dest, overwrite: bool = False) -> list[Path]:
    """Copy the small files of a run folder (REFERENCE_FILES) into `dest`, atomically; returns what was copied.
    `afsuite compare dest RUN` then checks a new run against it."""
    import shutil

    from afcore.io import atomic_dir
    run = Path(run)
    if not (run / "REPORT.md").is_file():
        raise FileNotFoundError(f"{run}: no REPORT.md here; export a finished `afsuite reproduce` run folder")
    files = sorted({p for pattern in REFERENCE_FILES for p in run.glob(pattern) if p.is_file()})
    notes = Path(dest) / "README.md"  # written by hand (how the run was made): kept across a refresh
    with atomic_dir(dest, overwrite=overwrite, hint="pass --overwrite to replace the reference") as tmp:
        if notes.is_file():
            shutil.copy2(notes, tmp / "README.md")
        for f in files:
            (tmp / f.relative_to(run)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, tmp / f.relative_to(run))
    return [Path(dest) / f.relative_to(run) for f in files]
