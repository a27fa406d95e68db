"""Vote counts RECONSTRUCTED from the paper's published percentages (not raw data).

The paper ([v2] section 5.4, Table 2) reports only shares of Ours / Tie / INFP* per criterion from 42
raters x 12 video sets, i.e. 504 judgements per criterion. Ours and Tie are printed with one decimal,
INFP* as a whole number; two Tie values are unlabelled and are derived here as 100 - Ours - INFP*.
Counts are the nearest integers to the printed shares; the remainder goes to INFP* (printed least
precisely) where Tie is printed, and to the derived Tie where it is not. Which rater gave which vote,
and on which side each system was shown, is unknown: the `clustering` argument spreads the outcomes
at random over raters and sets (no rater effect) or groups them rater by rater (the strongest rater
effect the totals allow, the widest clustered interval). Sides are assigned alternately, so the
side-bias test is uninformative here.

Note: no n <= 644 reproduces every printed v2 share exactly (e.g. 80.3 % is not k/504 for any k), so
the paper's percentages were not all computed as plain shares of 504 votes; the reconstruction's
shares differ from the printed ones by less than 0.1 percentage point (half a vote in 504).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from eval.study.design import CRITERIA, StudyError

SYSTEMS = ("Ours", "INFP*")
# (Ours %, Tie % or None when unlabelled, INFP* %), in the order of CRITERIA.
PAPER_SHARES = {
    "v2": {  # arXiv v2, Table 2
        "Reactiveness": (73.0, 14.4, 13), "Motion Richness": (78.6, None, 12),
        "Verbal Alignment": (56.7, 28.8, 14), "Non-verbal Alignment": (76.0, 11.5, 13),
        "Overall": (80.3, None, 14),
    },
    "project_page": {  # Jan-2026 project-page figure (probably arXiv v1)
        "Reactiveness": (66.4, 23.9, 10), "Motion Richness": (76.7, 13.1, 10),
        "Verbal Alignment": (51.1, 39.2, 10), "Non-verbal Alignment": (71.0, 17.6, 11),
        "Overall": (80.1, None, 12),
    },
}
assert all(list(v) == list(CRITERIA) for v in PAPER_SHARES.values())


def paper_counts(version: str = "v2", n: int = 504) -> dict[str, tuple[int, int, int]]:
    """(Ours, Tie, INFP*) counts per criterion that best match the printed shares for n votes."""
    if version not in PAPER_SHARES:
        raise StudyError(f"unknown paper version {version!r}; choose from {sorted(PAPER_SHARES)}")
    counts = {}
    for criterion, (ours, tie, infp) in PAPER_SHARES[version].items():
        k_ours = round(n * ours / 100)
        if tie is None:
            k_infp = round(n * infp / 100)
            k_tie = n - k_ours - k_infp
        else:
            k_tie = round(n * tie / 100)
            k_infp = n - k_ours - k_tie
        counts[criterion] = (k_ours, k_tie, k_infp)
    return counts


def reconstruct_paper_votes(version: str = "v2", n_raters: int = 42, n_sets: int = 12,
                            clustering: str = "spread") -> pd.DataFrame:
    """A votes table with the paper's totals per criterion (RECONSTRUCTED, see the module docstring).

    clustering="spread": the outcomes are dealt to the rater x set cells in a fixed random order
    (seed 0), so no rater or set is systematically different. clustering="by_rater": rater 1 gets
    the first n_sets outcomes of the sorted list, rater 2 the next, ..., so most raters vote one way
    throughout while every set still gets a mix.
    """
    if clustering not in ("spread", "by_rater"):
        raise StudyError(f"clustering must be 'spread' or 'by_rater', not {clustering!r}")
    n = n_raters * n_sets
    rows = []
    for criterion, (k_ours, k_tie, k_infp) in paper_counts(version, n).items():
        outcomes = np.repeat(["Ours", "tie", "INFP*"], [k_ours, k_tie, k_infp])
        if clustering == "spread":
            outcomes = np.random.default_rng(0).permutation(outcomes)
        for k, outcome in enumerate(outcomes):
            rater, set_ = divmod(k, n_sets)
            ours_left = (rater + set_) % 2 == 0
            left, right = SYSTEMS if ours_left else SYSTEMS[::-1]
            choice = "tie" if outcome == "tie" else ("left" if outcome == left else "right")
            rows.append((f"r{rater + 1:02d}", f"s{set_ + 1:02d}", criterion, left, right, choice))
    return pd.DataFrame(rows, columns=["rater_id", "set_id", "criterion", "left_system", "right_system", "choice"])
