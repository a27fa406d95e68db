"""Shared test set-up: where the official-parity fixtures live, and quiet, deterministic torch."""
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


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield
