"""Shared test set-up: where the official-parity fixtures live, and quiet, deterministic torch."""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AF_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "official_parity"

if not FIXTURES.is_dir():
    message = (f"official-parity fixtures not found at {FIXTURES}: put the shared/ folder beside the repo "
               "or set AF_SHARED=/path/to/shared")
    if os.environ.get("CI"):
        raise RuntimeError(message)  # in CI a missing fixture is a broken set-up, never a skip
    FIXTURES_MISSING = message
else:
    FIXTURES_MISSING = None


def pytest_collection_modifyitems(config, items):
    if FIXTURES_MISSING:
        skip = pytest.mark.skip(reason=FIXTURES_MISSING)
        for item in items:
            if "official" in item.nodeid or "parity" in item.nodeid:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield
