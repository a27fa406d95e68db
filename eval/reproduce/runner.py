"""Run one notebook with papermill, atomically: resolve its parameters (profile overrides, upstream
outputs, command-line values), fingerprint them, execute into a staging folder beside the output
folder, then rename it into place with a `run.json` (parameters, fingerprint, versions, commit, wall
time, error) beside the notebook's own `metrics.json`. A failed run lands in `<out>.failed/` and leaves
the last good output untouched.

`execute` is what a worker process runs; it only needs plain data, so the scheduler and the sweep can
hand it to a process pool. Everything else runs in the calling process.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from eval.reproduce.notebook import NotebookError, code_hash, read_parameters, source_cell_number
from eval.reproduce.stages import REPO, Stage

KERNEL = "python3"
RUN_FILE = "run.json"
TRACEBACK_LINES = 12
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EXTRA_PACKAGES = ("papermill", "nbclient", "ipykernel", "matplotlib", "pyarrow")


@dataclass
class Plan:
    """Everything decided before a notebook runs."""
    name: str
    notebook: Path
    out_dir: Path
    profile: str
    defaults: dict                  # the notebook's parameters cell
    overrides: dict                 # what papermill injects (out_dir as the final folder)
    upstream: dict = field(default_factory=dict)  # upstream stage -> its fingerprint
    fingerprint: str = ""
    exclusive: bool = False
    notes: list = field(default_factory=list)

    @property
    def parameters(self) -> dict:
        return {**self.defaults, **self.overrides}


def shown_path(path: Path) -> str:
    """Paths given to notebooks are relative to the repo root (their cwd) when inside it."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def read_run(out_dir: Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None


def _file_hash(value) -> str | None:
    """Content hash of a parameter that names an existing file (data given by path)."""
    if not isinstance(value, str) or not value or len(value) > 4096:
        return None
    path = Path(value) if Path(value).is_absolute() else REPO / value
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_plan(notebook: str | Path, out_dir: str | Path, *, profile: str, stage: Stage | None = None,
              profiles: dict | None = None, extra: dict | None = None, run_dir: str | Path | None = None,
              upstream_fps: dict | None = None) -> Plan:
    """Resolve parameters (notebook defaults < profile `all` < profile stage entry < upstream outputs <
    `extra`) and the fingerprint: hash(notebook code, parameters but out_dir, upstream fingerprints,
    contents of files named by parameters). Raises NotebookError if `extra` names an unknown parameter."""
    notebook, out_dir = Path(notebook), Path(out_dir)
    if not notebook.is_file():
        raise NotebookError(f"{notebook}: no such notebook")
    defaults = read_parameters(notebook)
    name = stage.name if stage else notebook.stem
    plan = Plan(name, notebook, out_dir, profile, defaults, {"profile": profile, "out_dir": shown_path(out_dir)},
                exclusive=bool(stage and stage.exclusive))
    layers = (profiles or {}).get(profile, {})
    plan.overrides.update({k: v for k, v in layers.get("all", {}).items() if k in defaults})
    for key, value in layers.get(name, {}).items():
        if key in defaults:
            plan.overrides[key] = value
        else:
            plan.notes.append(f"profiles.yaml sets {key!r} for {profile}, but the notebook has no such parameter "
                              "(skipped)")
    wired = {}
    for up in (stage.upstream if stage else ()):
        record = read_run(Path(run_dir or out_dir.parent) / up)
        fp = (upstream_fps or {}).get(up) or (record["fingerprint"] if record and record.get("status") == "ok" else None)
        if fp is None:
            plan.notes.append(f"upstream {up} has no results beside {shown_path(out_dir)}; run it first")
        plan.upstream[up] = fp
    for param, source in (stage.inputs.items() if stage else ()):
        if param not in defaults:
            plan.notes.append(f"stages.py wires {source} to {param!r}, which the notebook does not declare (skipped)")
            continue
        up_dir = Path(run_dir or out_dir.parent) / source.stage
        if source.param:
            ran_with = (read_run(up_dir) or {}).get("parameters", {})
            if source.param not in ran_with:
                plan.notes.append(f"{param!r}: {source.stage} has no run.json with {source.param!r}; "
                                  "the notebook's default is used")
                continue
            plan.overrides[param] = ran_with[source.param]
        else:
            plan.overrides[param] = shown_path(up_dir / source.path) if source.path else shown_path(up_dir)
        wired[param] = f"<upstream {source}>"  # its content is covered by the upstream's fingerprint
    unknown = sorted(set(extra or {}) - set(defaults))
    if unknown:
        raise NotebookError(f"{notebook}: no parameter named {', '.join(unknown)} in its parameters cell; "
                            f"it has: {', '.join(defaults)}")
    plan.overrides.update(extra or {})
    wired = {k: v for k, v in wired.items() if k not in (extra or {})}  # a value given by hand is hashed as is
    hashed = {k: wired.get(k, v) for k, v in plan.overrides.items() if k != "out_dir"}
    files = {k: h for k, v in plan.overrides.items() if k not in wired and (h := _file_hash(v))}
    blob = json.dumps({"code": code_hash(notebook), "parameters": hashed, "upstream": plan.upstream,
                       "files": files}, sort_keys=True, default=str)
    plan.fingerprint = hashlib.sha256(blob.encode()).hexdigest()
    return plan


def unchanged(plan: Plan) -> bool:
    """True if the output folder holds a successful run with the same fingerprint."""
    record = read_run(plan.out_dir)
    return bool(record and record.get("status") == "ok" and record.get("fingerprint") == plan.fingerprint
                and (plan.out_dir / "metrics.json").is_file())


@contextlib.contextmanager
def _kernel_env(threads: int | None):
    """The kernel inherits this process' environment: make the repo importable and cap BLAS/torch threads
    (unless the user set them) so parallel notebooks do not oversubscribe the cores."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    changes = {"PYTHONPATH": os.pathsep.join(dict.fromkeys([str(REPO), *paths]))}
    if threads:
        changes.update({v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
                        if v not in os.environ})
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute(job: dict) -> dict:
    """Run in a worker: papermill `job["notebook"]` -> `job["output"]`. Never raises for a notebook error;
    returns {"status", "started", "wall_time_s", "error"}."""
    import papermill
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    error = None
    try:
        with _kernel_env(job.get("threads")):
            papermill.execute_notebook(job["notebook"], job["output"], parameters=job["parameters"],
                                       kernel_name=job.get("kernel", KERNEL), cwd=job.get("cwd", str(REPO)),
                                       progress_bar=False, log_output=False,
                                       execution_timeout=job.get("timeout"))
    except papermill.PapermillExecutionError as err:
        error = {"cell": None, "cell_index": err.cell_index, "exec_count": err.exec_count, "ename": err.ename,
                 "evalue": _ANSI.sub("", str(err.evalue)), "source": err.source,
                 "traceback_tail": "\n".join(_ANSI.sub("", "\n".join(err.traceback)).splitlines()[-TRACEBACK_LINES:])}
        with contextlib.suppress(Exception):
            import nbformat
            error["cell"] = source_cell_number(nbformat.read(job["output"], as_version=4), err.cell_index)
    except Exception as err:  # kernel died, timeout, missing kernel...: still a failed stage, not a crash
        error = {"cell": None, "ename": type(err).__name__, "evalue": _ANSI.sub("", str(err))[-2000:],
                 "source": None, "traceback_tail": None}
    return {"status": "failed" if error else "ok", "started": started,
            "wall_time_s": round(time.perf_counter() - t0, 2), "error": error}


def stage_staging(plan: Plan) -> Path:
    """A fresh hidden folder beside the output (same file system, so the final rename is atomic);
    leftovers of crashed runs of this stage (their process is gone) are removed first."""
    parent = plan.out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob(f".{plan.out_dir.name}.staging-*"):
        pid = old.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{plan.out_dir.name}.staging-{os.getpid()}-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the renamed output folder should not be
    return staging


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_job(plan: Plan, staging: Path, *, threads: int | None = None, timeout: float | None = None,
             kernel: str = KERNEL) -> dict:
    return {"notebook": str(plan.notebook), "output": str(staging / f"{plan.notebook.stem}.ipynb"),
            "parameters": {**plan.overrides, "out_dir": shown_path(staging)}, "cwd": str(REPO),
            "threads": threads, "timeout": timeout, "kernel": kernel}


def _replace_dir(src: Path, dst: Path) -> None:
    """Move src onto dst; an existing dst is moved aside first and deleted after (rename(2) cannot
    replace a non-empty directory)."""
    aside = None
    if dst.exists():
        aside = dst.with_name(f".{dst.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(dst, aside)
    os.replace(src, dst)
    if aside:
        shutil.rmtree(aside, ignore_errors=True)


def _git_dirty() -> bool | None:
    import subprocess
    try:  # GIT_OPTIONAL_LOCKS=0: read-only, does not refresh the index
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, text=True,
                             capture_output=True, check=True, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
        return bool(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return None


def finish(plan: Plan, staging: Path, outcome: dict, *, job: dict) -> dict:
    """Write run.json into the staging folder and move it to the output folder (or `<out>.failed`)."""
    from afcore.io import TRACKED_PACKAGES, git_commit, package_versions, write_json  # lazy: imports torch
    import platform
    record = {"schema": "afsuite.run/1", "stage": plan.name, "notebook": shown_path(plan.notebook),
              "executed_notebook": Path(job["output"]).name, "profile": plan.profile,
              "parameters": plan.parameters, "overrides": plan.overrides, "upstream": plan.upstream,
              "fingerprint": plan.fingerprint, **outcome,
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "kernel": job["kernel"], "threads": job["threads"], "notes": plan.notes,
              "python": platform.python_version(), "packages": package_versions(TRACKED_PACKAGES + _EXTRA_PACKAGES),
              "git_commit": git_commit(REPO), "git_dirty": _git_dirty(), "command": sys.argv}
    write_json(staging / RUN_FILE, record)
    if outcome["status"] == "ok":
        _replace_dir(staging, plan.out_dir)
        shutil.rmtree(failed_dir(plan.out_dir), ignore_errors=True)
    else:
        _replace_dir(staging, failed_dir(plan.out_dir))
    return record


def count_metrics(out_dir: Path) -> int | None:
    from eval.reproduce.compare import numeric_leaves
    try:
        record = json.loads((Path(out_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return len(numeric_leaves(record.get("metrics", record), none_as_nan=False))


def progress_line(name: str, status: str, record: dict | None = None, out_dir: Path | None = None,
                  detail: str = "") -> str:
    """One line per stage, e.g. `[03_training_ablations] done in 312 s (metrics: 14 values)`."""
    if status == "ok":
        n = count_metrics(out_dir) if out_dir else None
        return (f"[{name}] done in {record['wall_time_s']:.0f} s "
                f"(metrics: {'no metrics.json' if n is None else f'{n} values'}){detail}")
    if status == "failed" and record and record.get("error"):
        err = record["error"]
        where = f" at cell {err['cell']}" if err.get("cell") else f" at In [{err['exec_count']}]" \
            if err.get("exec_count") else ""
        first = (err.get("evalue") or "").strip().splitlines()[:1]
        return f"[{name}] FAILED{where}: {err['ename']}: {first[0] if first else ''}{detail}"
    return f"[{name}] {status}{detail}"


def failed_dir(out_dir: Path) -> Path:
    return Path(out_dir).with_name(Path(out_dir).name + ".failed")


def run_notebook(notebook: str | Path, out_dir: str | Path, *, profile: str, stage: Stage | None = None,
                 profiles: dict | None = None, extra: dict | None = None, run_dir: str | Path | None = None,
                 resume: bool = False, threads: int | None = None, timeout: float | None = None,
                 kernel: str = KERNEL, echo=print) -> dict:
    """Plan and run one notebook in this process. Returns the run record ({"status": "unchanged"} when
    `resume` finds the same fingerprint)."""
    plan = make_plan(notebook, out_dir, profile=profile, stage=stage, profiles=profiles, extra=extra,
                     run_dir=run_dir)
    for note in plan.notes:
        echo(f"[{plan.name}] note: {note}")
    if resume and unchanged(plan):
        echo(progress_line(plan.name, "skipped (unchanged)"))
        return {**read_run(plan.out_dir), "status": "unchanged"}
    staging = stage_staging(plan)
    job = make_job(plan, staging, threads=threads, timeout=timeout, kernel=kernel)
    record = finish(plan, staging, execute(job), job=job)
    where = plan.out_dir if record["status"] == "ok" else failed_dir(plan.out_dir)
    echo(progress_line(plan.name, record["status"], record, where, f" -> {shown_path(where)}"))
    return record
