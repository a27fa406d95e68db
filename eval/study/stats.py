"""Estimators for pairwise preference votes. Each function states its formula and source.

Conventions: shares and intervals are fractions in [0, 1]; intervals are two-sided at `confidence`;
an estimate that does not exist for the data (e.g. no decisive votes) is None, never a made-up number.
"""
from __future__ import annotations

from collections import Counter

import choix
import numpy as np
import pandas as pd
from scipy.stats import binomtest
from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss_kappa


def proportion_ci(k: int, n: int, confidence: float = 0.95, method: str = "wilson") -> list[float] | None:
    """Interval for a binomial proportion k/n, via scipy.stats.binomtest(...).proportion_ci.

    wilson: Wilson (1927) score interval, the roots p of (k/n - p)^2 = z^2 p (1 - p) / n.
    exact: Clopper-Pearson (1934), [Beta(a/2; k, n-k+1), Beta(1-a/2; k+1, n-k)] quantiles.
    """
    if n == 0:
        return None
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method=method)
    return [float(ci.low), float(ci.high)]


def sign_test_p(a_wins: int, b_wins: int) -> float | None:
    """Two-sided exact sign test on the decisive (non-tie) votes: H0 P(A wins | not a tie) = 1/2,
    p = sum of Binomial(n, 1/2) probabilities no larger than that of the observed count (scipy)."""
    n = int(a_wins + b_wins)
    return float(binomtest(int(a_wins), n, 0.5).pvalue) if n else None


def cell_sums(values, raters, sets):
    """Sum `values` into a rater x set matrix (a crossed design: every vote has one rater and one set)."""
    r_idx, r_levels = pd.factorize(pd.Series(raters), sort=True)
    s_idx, s_levels = pd.factorize(pd.Series(sets), sort=True)
    cells = np.zeros((len(r_levels), len(s_levels)) + np.shape(values)[1:])
    np.add.at(cells, (r_idx, s_idx), values)
    return cells


def pigeonhole_weights(n_raters: int, n_sets: int, n_boot: int, seed: int):
    """Bootstrap multiplicities for raters and sets, drawn independently (Owen 2007, "The pigeonhole
    bootstrap", Ann. Appl. Stat. 1(2)): a replicate keeps every vote of a drawn rater on a drawn set,
    each cell (r, s) weighted by count_r * count_s. Resampling both factors keeps the dependence among
    one rater's votes and among the votes on one set, which an i.i.d. bootstrap ignores. It is
    conservative: with no rater or set effect at all its variance is about 3x the true one (intervals
    about 1.7x as wide as Wilson's, measured in tests/test_study.py); with real rater effects it is
    the interval that keeps its coverage where Wilson's does not."""
    rng = np.random.default_rng(seed)
    w_r = rng.multinomial(n_raters, np.full(n_raters, 1 / n_raters), size=n_boot).astype(float)
    w_s = rng.multinomial(n_sets, np.full(n_sets, 1 / n_sets), size=n_boot).astype(float)
    return w_r, w_s


def cluster_bootstrap_ci(numer, denom, raters, sets, n_boot: int = 2000, seed: int = 0,
                         confidence: float = 0.95) -> list[float] | None:
    """Percentile interval of the ratio sum(numer) / sum(denom) under the rater-and-set pigeonhole
    bootstrap. numer/denom are per-vote 0/1 values, e.g. (A won, 1) for the A share of all votes.
    Replicates whose denominator is zero are dropped."""
    numer, denom = np.asarray(numer, float), np.asarray(denom, float)
    if denom.sum() == 0:
        return None
    x, y = cell_sums(numer, raters, sets), cell_sums(denom, raters, sets)
    w_r, w_s = pigeonhole_weights(*x.shape, n_boot, seed)
    num = np.einsum("br,rs,bs->b", w_r, x, w_s)
    den = np.einsum("br,rs,bs->b", w_r, y, w_s)
    stats = num[den > 0] / den[den > 0]
    alpha = 1 - confidence
    return [float(v) for v in np.quantile(stats, [alpha / 2, 1 - alpha / 2])]


def fleiss_kappa(items, labels) -> dict:
    """Fleiss' (1971) kappa, (P_bar - P_e) / (1 - P_e), over items each judged by the same number of
    raters (statsmodels.stats.inter_rater.fleiss_kappa). P_bar is the mean pairwise agreement within
    an item and P_e = sum_j p_j^2 the agreement expected from the pooled category shares p_j.

    Fleiss' formula needs the same number of raters per item, so only items with the most common
    count are kept; the rest are counted in `items_dropped`.
    """
    table = pd.crosstab(pd.Series(list(items), name="item"), pd.Series(list(labels), name="label"))
    per_item = table.sum(axis=1)
    if len(per_item) == 0:
        return {"kappa": None, "reason": "no votes"}
    counts = Counter(per_item.tolist())
    raters = max(counts, key=lambda c: (counts[c], c))
    kept = table[per_item == raters]
    out = {"n_items": len(kept), "raters_per_item": int(raters), "items_dropped": int(len(table) - len(kept))}
    if raters < 2 or len(kept) < 2:
        return {"kappa": None, "reason": "needs at least 2 items each judged by at least 2 raters", **out}
    if kept.shape[1] == 1 or (kept.sum(axis=0) == kept.values.sum()).any():
        return {"kappa": None, "reason": "every vote has the same label, so chance agreement is 1", **out}
    return {"kappa": float(_fleiss_kappa(kept.to_numpy(), method="fleiss")), **out}


def bradley_terry(wins: np.ndarray) -> np.ndarray | None:
    """Bradley-Terry (1952) log-strengths theta, P(i beats j) = 1 / (1 + exp(theta_j - theta_i)),
    centred to mean 0. wins[i, j] counts i's wins over j with a tie as half a win for each side (the
    tie-splitting used by arena-style rankings; the Davidson tie model would add a tie parameter but
    gives the same order). Fitted with choix.ilsr_pairwise_dense (iterative Luce spectral ranking,
    Maystre & Grossglauser 2015), whose fixed point is the ML estimate. Returns None when the ML
    estimate does not exist (a system that never wins or never loses against the rest)."""
    try:
        theta = choix.ilsr_pairwise_dense(np.asarray(wins, float))
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return None
    if not np.all(np.isfinite(theta)):
        return None
    return theta - theta.mean()


def bradley_terry_bootstrap(cell_wins: np.ndarray, n_boot: int, seed: int, confidence: float = 0.95) -> dict:
    """Pigeonhole-bootstrap percentile intervals of the BT log-strengths. cell_wins has shape
    (raters, sets, K, K). Replicates where the ML estimate does not exist are dropped and counted."""
    w_r, w_s = pigeonhole_weights(*cell_wins.shape[:2], n_boot, seed)
    thetas = [bradley_terry(m) for m in np.einsum("br,rskl,bs->bkl", w_r, cell_wins, w_s)]
    kept = np.array([t for t in thetas if t is not None])
    alpha = 1 - confidence
    if len(kept) == 0:
        return {"ci": None, "n_boot": n_boot, "replicates_dropped": n_boot}
    lo, hi = np.quantile(kept, [alpha / 2, 1 - alpha / 2], axis=0)
    return {"ci": np.stack([lo, hi], axis=1).tolist(), "n_boot": n_boot, "replicates_dropped": n_boot - len(kept)}
