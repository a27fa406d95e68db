"""Atomic file and folder writes, and the provenance record every metrics.json carries."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import torch

TRACKED_PACKAGES = ("torch", "numpy", "transformers", "torchmetrics", "pandas", "papermill", "safetensors")


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        if Path(tmp).is_file():  # mkstemp makes 0600 files; give the result the usual permissions
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False,
               hint: str = "pass overwrite=True or choose another path"):
    """Yield a new hidden folder beside `path`; rename it onto `path` only if the block succeeds, so a failed or
    interrupted build leaves nothing half-written. An existing `path` is an error (ending in `hint`) unless
    `overwrite`, and is then swapped out only once the new folder is complete."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists: {hint}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():  # rename(2) cannot replace a non-empty folder: move the old one aside first
            trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, trash)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike, obj) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return Path(path)


def torch_save(obj, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def package_versions(names=TRACKED_PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance() -> dict:
    """Where a number was made: machine, threads, packages and code version."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "packages": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent),
    }


def write_metrics(out_dir: str | os.PathLike, metrics: dict, **context) -> Path:
    """Write `out_dir/metrics.json`: the metrics plus the context (profile, seed, configs, extractors,
    wall times, ...) and the provenance record, so that every number can be traced to how it was made."""
    record = {"metrics": metrics, **context, "provenance": provenance()}
    return write_json(Path(out_dir) / "metrics.json", record)
