"""The study's vocabulary: criteria, vote columns, trials and the per-rater counterbalanced schedule.

A *trial* is one set (one user clip) shown with one pair of systems; each trial is judged on every
criterion. Which system appears on the left is decided per rater (`rater_schedule`), so every rater
sees each system on each side equally often (to within one trial per pair).
"""
from __future__ import annotations

import hashlib
import itertools
import re

import numpy as np

# The five criteria of the paper's study ([v2] section 5.4, App. D.6), with the question the form asks.
CRITERIA: dict[str, str] = {
    "Reactiveness": "Which avatar reacts better to the user's motion and speech?",
    "Motion Richness": "Which avatar moves more expressively?",
    "Verbal Alignment": "Which avatar's lip movements match its speech better?",
    "Non-verbal Alignment": "Which avatar shows more fitting non-verbal behaviour (eye contact, nodding)?",
    "Overall": "Which avatar do you prefer overall?",
}
COLUMNS = ("rater_id", "set_id", "criterion", "left_system", "right_system", "choice")
CHOICES = ("left", "tie", "right")
PAIR_SEP = "__vs__"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$")


class StudyError(ValueError):
    """Bad study input (votes, manifests, clip folders); the message says where and what to do."""


def pair_key(a: str, b: str) -> str:
    return f"{a}{PAIR_SEP}{b}"


def system_pairs(systems) -> list[tuple[str, str]]:
    """All unordered pairs, each as (A, B) with A earlier in `systems`."""
    return list(itertools.combinations(systems, 2))


def make_trials(sets, systems) -> list[dict]:
    return [{"set_id": s, "systems": [a, b]} for s in sets for a, b in system_pairs(systems)]


def check_id(value: str, what: str = "rater id") -> str:
    """Ids end up in CSV cells and file names: letters, digits and _ . @ + - only."""
    value = str(value).strip()
    if not ID_PATTERN.match(value):
        raise StudyError(f"{what} {value!r} is not valid: use letters, digits and _ . @ + - "
                         "(no spaces, commas or slashes), starting with a letter or digit")
    return value


def stable_seed(*parts) -> int:
    """A seed that depends only on the given values (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def rater_schedule(trials: list[dict], rater_id: str, seed: int = 0) -> list[dict]:
    """The trials in this rater's order, each with `left` and `right` filled in.

    The order is a per-rater random permutation. Sides alternate within each system pair along that
    order, starting on a random side, so each system of a pair is on the left for half of the rater's
    trials of that pair (an odd count leaves one extra).
    """
    rng = np.random.default_rng(stable_seed("schedule", seed, rater_id))
    order = rng.permutation(len(trials))
    parity: dict[tuple, int] = {}
    schedule = []
    for idx in order:
        trial = trials[int(idx)]
        a, b = trial["systems"]
        turn = parity.setdefault((a, b), int(rng.integers(2)))
        parity[(a, b)] = 1 - turn
        left, right = (a, b) if turn == 0 else (b, a)
        schedule.append({**trial, "left": left, "right": right})
    return schedule
