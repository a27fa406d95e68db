"""Shared test set-up: where the official-parity fixtures live, a shared tiny corpus, running notebooks, and
quiet, deterministic torch."""
import json
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AF_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "official_parity"

_missing = None if FIXTURES.is_dir() else (
    f"official-parity fixtures not found at {FIXTURES}: put the shared/ folder beside the repo or set "
    "AF_SHARED=/path/to/shared")
if _missing and os.environ.get("CI"):
    raise RuntimeError(_missing)  # in CI a missing fixture is a broken set-up, never a skip
needs_fixtures = pytest.mark.skipif(_missing is not None, reason=_missing or "")


TINY_CORPUS = dict(hours=0.012, seed=3, size=64)  # 43 s of conversation: three conversations, one per split


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """One small synthetic corpus shared by every test that only reads it."""
    from data_prep.synth.build import SynthConfig, build_corpus
    return build_corpus(tmp_path_factory.mktemp("corpus") / "corpus", SynthConfig(workers=2, **TINY_CORPUS),
                        progress=False)


@pytest.fixture(scope="session")
def video_extractors_dir(tiny_corpus, tmp_path_factory):
    """The four video-metric extractors (FID, FVD, CSIM, LSE) trained once at the quick budgets on the tiny
    corpus (~30 s on one core), for the tests that score frames and for notebook 04's smoke run."""
    from eval.video_scores import video_extractors
    out = tmp_path_factory.mktemp("video_extractors")
    video_extractors(tiny_corpus, out, threads=1)  # trains only what the registry's default locations lack
    return out


def notebook_defaults(name: str) -> dict:
    """The literal defaults of notebooks/<name>.ipynb's single parameters cell; it must carry no outputs."""
    import nbformat
    from eval.reproduce.notebook import read_parameters

    path = REPO / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path} has stored outputs"
    return read_parameters(path)


def run_notebook(name: str, out_dir: Path, **parameters) -> dict:
    """Execute notebooks/<name>.ipynb with papermill (the venv's python3 kernel, cwd = the repo) writing
    into out_dir; return the metrics.json record it wrote."""
    import papermill

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(out_dir / "executed.ipynb"),
                               kernel_name="python3", cwd=str(REPO), progress_bar=False,
                               parameters={"out_dir": str(out_dir), **parameters})
    return json.loads((out_dir / "metrics.json").read_text())


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield
