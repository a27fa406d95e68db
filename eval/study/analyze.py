"""`analyze(votes)`: every criterion x system pair, Bradley-Terry, agreement and side bias as one dict.

Layout of the result (also the layout of `afsuite study analyze --json`):
    criteria -> <criterion> -> <A>__vs__<B> -> n, a_share, tie_share, b_share, a_share_wilson_ci, ...
    bradley_terry -> <criterion> (only with more than two systems)
    fleiss_kappa -> <criterion>
    position_bias -> left_share, p, ... , per_criterion -> <criterion>
A is the system listed first in `systems` (default: alphabetical).
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from eval.study.design import CRITERIA, StudyError, pair_key, system_pairs
from eval.study.stats import (
    bradley_terry,
    bradley_terry_bootstrap,
    cell_sums,
    cluster_bootstrap_ci,
    fleiss_kappa,
    proportion_ci,
    sign_test_p,
)

BT_MAX_BOOT = 500  # each BT replicate is a fit (~1 ms); more adds run time, not accuracy worth having
DEFINITIONS = {
    "a_share": "A wins / all votes of the pair, ties included (so a_share + tie_share + b_share = 1)",
    "a_share_decisive": "A wins / (A wins + B wins), ties excluded",
    "sign_test_p": "two-sided exact binomial (sign) test on the non-tie votes, H0: P(A wins | not a tie) = 0.5",
    "a_share_wilson_ci": "Wilson score interval of a_share over all n votes (treats votes as independent)",
    "a_share_clopper_pearson_ci": "Clopper-Pearson exact interval of a_share (treats votes as independent)",
    "a_share_cluster_bootstrap_ci": "percentile interval of a_share under the pigeonhole bootstrap that "
                                    "resamples raters and sets (Owen 2007); use this one when votes of one "
                                    "rater or one set are correlated",
    "position_bias": "left_share = left-side wins / non-tie votes over all criteria and pairs; p is a two-sided "
                     "exact binomial test against 0.5 that treats votes as independent (criteria judged on the same "
                     "trial are not), so read it with left_share_cluster_bootstrap_ci",
    "bradley_terry": "log-strengths, mean 0, ties as half a win each; P(i beats j) = 1/(1+exp(theta_j-theta_i))",
    "fleiss_kappa": "agreement on the outcome A / tie / B per (set, pair) item across raters",
}


def prepare(votes: pd.DataFrame, systems=None, criteria=None):
    """Resolve the system and criterion order and label each vote with its pair (A, B) and outcome.
    Defaults never depend on the row order: systems alphabetical, criteria in the paper's order and
    then alphabetical."""
    seen_systems = sorted(set(votes["left_system"]) | set(votes["right_system"]))
    systems = list(systems or seen_systems)
    if unknown := sorted(set(seen_systems) - set(systems)):
        raise StudyError(f"the votes mention systems {unknown} that are not in systems={systems}; "
                         "list every system or leave systems empty to take them from the votes")
    seen_criteria = set(votes["criterion"])
    default = [c for c in CRITERIA if c in seen_criteria] + sorted(seen_criteria - set(CRITERIA))
    criteria = [c for c in (criteria or default) if c in seen_criteria]
    rank = {s: i for i, s in enumerate(systems)}
    df = votes[votes["criterion"].isin(criteria)].copy()
    a_left = df["left_system"].map(rank) < df["right_system"].map(rank)
    df["a"] = df["left_system"].where(a_left, df["right_system"])
    df["b"] = df["right_system"].where(a_left, df["left_system"])
    df["a_left"] = a_left
    a_won = (df["choice"] == "left") & a_left | (df["choice"] == "right") & ~a_left
    df["outcome"] = np.where(df["choice"] == "tie", "tie", np.where(a_won, "A", "B"))
    return df, systems, criteria


def _seed(seed: int, *names) -> int:
    """A per-statistic seed, so a result does not depend on which other criteria are analysed."""
    return seed * 1_000_003 + zlib.crc32("|".join(names).encode())


def pair_summary(sub: pd.DataFrame, n_boot: int, seed: int, confidence: float) -> dict:
    n = len(sub)
    a, tie, b = (int((sub["outcome"] == o).sum()) for o in ("A", "tie", "B"))
    is_a, decisive = (sub["outcome"] == "A").to_numpy(), (sub["outcome"] != "tie").to_numpy()
    raters, sets = sub["rater_id"].to_numpy(), sub["set_id"].to_numpy()
    boot = {"n_boot": n_boot, "seed": seed, "confidence": confidence}
    return {
        "n": n, "a_wins": a, "ties": tie, "b_wins": b,
        "a_share": a / n, "tie_share": tie / n, "b_share": b / n,
        "a_share_wilson_ci": proportion_ci(a, n, confidence, "wilson"),
        "a_share_clopper_pearson_ci": proportion_ci(a, n, confidence, "exact"),
        "a_share_cluster_bootstrap_ci": cluster_bootstrap_ci(is_a, np.ones(n), raters, sets, **boot),
        "n_decisive": a + b,
        "a_share_decisive": a / (a + b) if a + b else None,
        "a_share_decisive_wilson_ci": proportion_ci(a, a + b, confidence, "wilson"),
        "a_share_decisive_cluster_bootstrap_ci": cluster_bootstrap_ci(is_a, decisive, raters, sets, **boot),
        "sign_test_p": sign_test_p(a, b),
        "n_raters": int(sub["rater_id"].nunique()), "n_sets": int(sub["set_id"].nunique()),
        "a_left_fraction": float(sub["a_left"].mean()),
    }


def bt_summary(sub: pd.DataFrame, systems: list[str], n_boot: int, seed: int, confidence: float) -> dict:
    """Bradley-Terry log-strengths with pigeonhole-bootstrap intervals, for one criterion."""
    index = {s: i for i, s in enumerate(systems)}
    k = len(systems)
    credit = np.zeros((len(sub), k, k))  # per vote: the winner's row gets 1, or each side 1/2 on a tie
    rows = np.arange(len(sub))
    ai, bi = sub["a"].map(index).to_numpy(), sub["b"].map(index).to_numpy()
    outcome = sub["outcome"].to_numpy()
    credit[rows, ai, bi] = np.select([outcome == "A", outcome == "tie"], [1.0, 0.5], 0.0)
    credit[rows, bi, ai] = np.select([outcome == "B", outcome == "tie"], [1.0, 0.5], 0.0)
    theta = bradley_terry(credit.sum(axis=0))
    if theta is None:
        return {"strengths": None, "reason": "the ML estimate does not exist: a system never wins or never loses, "
                                             "or some systems are never compared with the rest"}
    boot = bradley_terry_bootstrap(cell_sums(credit, sub["rater_id"].to_numpy(), sub["set_id"].to_numpy()),
                                   min(n_boot, BT_MAX_BOOT), seed, confidence)
    return {"systems": systems, "strengths": dict(zip(systems, theta.tolist())),
            "strengths_cluster_bootstrap_ci": dict(zip(systems, boot["ci"])) if boot["ci"] else None,
            "ranking": [systems[i] for i in np.argsort(-theta)],
            "n_boot": boot["n_boot"], "replicates_dropped": boot["replicates_dropped"]}


def position_summary(df: pd.DataFrame, n_boot: int, seed: int, confidence: float) -> dict:
    decisive = df[df["choice"] != "tie"]
    left = int((decisive["choice"] == "left").sum())
    n = len(decisive)
    return {
        "left_share": left / n if n else None, "p": sign_test_p(left, n - left),
        "n_decisive": n, "left_wins": left, "right_wins": n - left,
        "left_share_wilson_ci": proportion_ci(left, n, confidence, "wilson"),
        "left_share_cluster_bootstrap_ci": cluster_bootstrap_ci(
            (decisive["choice"] == "left").to_numpy(), np.ones(n), decisive["rater_id"].to_numpy(),
            decisive["set_id"].to_numpy(), n_boot, seed, confidence),
    }


def analyze(votes: pd.DataFrame, systems=None, criteria=None, n_boot: int = 2000, seed: int = 0,
            confidence: float = 0.95) -> dict:
    """All statistics of a votes table (see the module docstring for the layout)."""
    if votes.empty:
        raise StudyError("there are no votes to analyse")
    without_votes = [c for c in (criteria or []) if c not in set(votes["criterion"])]
    df, systems, criteria = prepare(votes, systems, criteria)
    result = {
        "n_votes": len(df), "n_raters": int(df["rater_id"].nunique()), "n_sets": int(df["set_id"].nunique()),
        "systems": systems, "criteria_order": criteria, "criteria_without_votes": without_votes,
        "confidence": confidence,
        "bootstrap": {"n_boot": n_boot, "seed": seed, "method": "pigeonhole (raters x sets), percentile"},
        "definitions": DEFINITIONS, "criteria": {}, "fleiss_kappa": {}, "bradley_terry": {},
    }
    for criterion in criteria:
        crit = df[df["criterion"] == criterion]
        pairs = {}
        for a, b in system_pairs(systems):
            sub = crit[(crit["a"] == a) & (crit["b"] == b)]
            if len(sub):
                pairs[pair_key(a, b)] = pair_summary(sub, n_boot, _seed(seed, criterion, a, b), confidence)
        result["criteria"][criterion] = pairs
        items = crit["set_id"] + "|" + crit["a"] + "|" + crit["b"]
        result["fleiss_kappa"][criterion] = fleiss_kappa(items, crit["outcome"])
        if len(systems) > 2:
            result["bradley_terry"][criterion] = bt_summary(crit, systems, n_boot, _seed(seed, "bt", criterion),
                                                            confidence)
    result["position_bias"] = position_summary(df, n_boot, _seed(seed, "position"), confidence)
    result["position_bias"]["per_criterion"] = {
        c: position_summary(df[df["criterion"] == c], n_boot, _seed(seed, "position", c), confidence)
        for c in criteria}
    result["position_bias"]["a_left_fraction"] = float(df["a_left"].mean())
    return result


def summary_table(result: dict) -> pd.DataFrame:
    """One row per criterion and pair, in percent, for printing."""
    rows = []
    for criterion, pairs in result["criteria"].items():
        for key, s in pairs.items():
            pct = lambda ci: f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "-"
            rows.append({"criterion": criterion, "pair": key, "n": s["n"], "A %": round(100 * s["a_share"], 1),
                         "tie %": round(100 * s["tie_share"], 1), "B %": round(100 * s["b_share"], 1),
                         "A Wilson CI": pct(s["a_share_wilson_ci"]),
                         "A cluster CI": pct(s["a_share_cluster_bootstrap_ci"]),
                         "sign test p": s["sign_test_p"]})
    return pd.DataFrame(rows)


STUDY_CLAIM = "Raters prefer Avatar Forcing over INFP* on all five criteria, 80.3 % overall (Table 2)"


def study_claim(collected: dict | None, ours: str = "Ours", baseline: str = "INFP*") -> dict:
    """The paper's preference claim with a verdict from votes collected here: reproduced in direction when, on
    every criterion, the rater x set bootstrap interval of our share of the decisive votes lies above 50 %."""
    row = {"claim": STUDY_CLAIM, "paper": "80.3 % overall; all five criteria favour Ours (no statistics printed)"}
    if not collected:
        return {**row, "ours": "", "verdict": "not measurable here",
                "why": "no votes were collected (votes_files is empty); the reconstruction of the paper's shares and "
                       "the simulated study only check the analysis"}
    shares = {}
    for criterion in collected["criteria_order"]:
        pairs = collected["criteria"][criterion]
        flip = pair_key(ours, baseline) not in pairs  # stored the other way round: our share is 1 - theirs
        key = pair_key(baseline, ours) if flip else pair_key(ours, baseline)
        if key not in pairs:
            return {**row, "ours": "", "verdict": "not measurable here",
                    "why": f"the collected votes hold no {ours} vs {baseline} comparison for {criterion}"}
        s = pairs[key]
        lo, hi = s["a_share_decisive_cluster_bootstrap_ci"]
        shares[criterion] = (1 - s["a_share_decisive"], 1 - hi, 1 - lo) if flip else (s["a_share_decisive"], lo, hi)
    above = all(lo > 0.5 for _, lo, _ in shares.values())
    overall = shares.get("Overall", next(iter(shares.values())))
    return {**row, "ours": f"{100 * overall[0]:.1f} % overall (decisive votes, CI {100 * overall[1]:.1f}-"
                           f"{100 * overall[2]:.1f} %), {collected['n_raters']} raters",
            "verdict": "reproduced in direction" if above else "not reproduced",
            "why": "every criterion's interval is above 50 %" if above else
                   "not every criterion's interval is above 50 %: " + ", ".join(
                       f"{c} {100 * v[0]:.0f} %" for c, v in shares.items() if v[1] <= 0.5)}
