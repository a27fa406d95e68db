"""SIMULATED votes with known true preferences and a planted side bias, to check that the estimators
recover what was planted. Nothing here is data about real systems.

Generative model, per judgement of pair (A, B) on a criterion by rater r on set s:
  1. with probability `tie_rate` the vote is a tie;
  2. otherwise, with probability b = |2 * left_share - 1| the rater picks the favoured side by
     position alone (the left if left_share > 0.5);
  3. otherwise A wins with probability sigmoid(d), d = theta_A - theta_B + (u_rA - u_rB) + (v_sA - v_sB),
     where theta are Bradley-Terry log-strengths and u ~ N(0, rater_sd^2 / 2), v ~ N(0, set_sd^2 / 2)
     are rater and set effects per system (so rater_sd, set_sd are the SDs of the pair's logit).
Sides follow the same counterbalanced schedule as the rating form (`design.rater_schedule`).

The planted truth is the population expectation given that design: the unbiased preference
q = E[sigmoid(theta_A - theta_B + w)], w ~ N(0, rater_sd^2 + set_sd^2) (Gauss-Hermite quadrature), and
a_share = (1 - t) * ((1 - b) * q + b * f), where f is the fraction of the pair's votes with A on the
favoured side (1/2 when balanced). The side bias dilutes every preference towards 1/2, which is why a
side-biased study under-states real differences even when sides are counterbalanced.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from eval.study.design import COLUMNS, StudyError, make_trials, pair_key, rater_schedule, system_pairs


def expected_preference(delta: float, sd: float, nodes: int = 64) -> float:
    """E[sigmoid(delta + w)] for w ~ N(0, sd^2), by Gauss-Hermite (probabilists') quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    return float((w * expit(delta + sd * x)).sum() / np.sqrt(2 * np.pi))


def simulate_votes(systems, criteria, strengths, n_raters: int = 42, n_sets: int = 12, tie_rate: float = 0.1,
                   left_share: float = 0.5, rater_sd: float = 0.5, set_sd: float = 0.3,
                   seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Votes and the planted truth (layout like `analyze`'s). `strengths` maps system -> log-strength
    for every criterion, or criterion -> {system -> log-strength}."""
    systems, criteria = list(systems), list(criteria)
    if len(systems) < 2 or len(set(systems)) != len(systems):
        raise StudyError(f"simulate needs two or more distinct systems, got {systems}")
    per_criterion = {c: strengths.get(c, strengths) for c in criteria}
    for c, s in per_criterion.items():
        if missing := [name for name in systems if not isinstance(s.get(name), (int, float))]:
            raise StudyError(f"strengths for criterion {c!r} lack a number for {missing}")
    if not (0 <= tie_rate < 1 and 0 < left_share < 1):
        raise StudyError("tie_rate must be in [0, 1) and left_share in (0, 1)")
    rng = np.random.default_rng(seed)
    k = {s: i for i, s in enumerate(systems)}
    u = rng.normal(0, rater_sd / np.sqrt(2), (n_raters, len(systems)))
    v = rng.normal(0, set_sd / np.sqrt(2), (n_sets, len(systems)))
    bias, favoured = abs(2 * left_share - 1), ("left" if left_share >= 0.5 else "right")
    raters = [f"sim{r + 1:03d}" for r in range(n_raters)]
    sets = [f"s{s + 1:02d}" for s in range(n_sets)]
    rows = []
    for r, rater in enumerate(raters):
        for trial in rater_schedule(make_trials(sets, systems), rater, seed):
            a, b = trial["systems"]
            s = sets.index(trial["set_id"])
            for c in criteria:
                d = per_criterion[c][a] - per_criterion[c][b] + u[r, k[a]] - u[r, k[b]] + v[s, k[a]] - v[s, k[b]]
                if rng.random() < tie_rate:
                    choice = "tie"
                elif rng.random() < bias:
                    choice = favoured
                else:
                    winner = a if rng.random() < expit(d) else b
                    choice = "left" if winner == trial["left"] else "right"
                rows.append((rater, trial["set_id"], c, trial["left"], trial["right"], choice))
    votes = pd.DataFrame(rows, columns=list(COLUMNS))
    return votes, planted_truth(votes, systems, criteria, per_criterion, tie_rate, left_share, rater_sd, set_sd)


def planted_truth(votes, systems, criteria, per_criterion, tie_rate, left_share, rater_sd, set_sd) -> dict:
    bias, favour_left = abs(2 * left_share - 1), left_share >= 0.5
    sd = float(np.hypot(rater_sd, set_sd))
    truth = {"criteria": {}, "note": "SIMULATED: population expectations of the generative model"}
    left_prob = []  # expected P(left chosen | decisive) per decisive-eligible vote, for the side bias
    for c in criteria:
        truth["criteria"][c] = {}
        for a, b in system_pairs(systems):
            in_pair = votes["left_system"].isin([a, b]) & votes["right_system"].isin([a, b])
            sub = votes[(votes["criterion"] == c) & in_pair]
            a_left = (sub["left_system"] == a).to_numpy()
            q = expected_preference(per_criterion[c][a] - per_criterion[c][b], sd)
            a_favoured = float(np.mean(a_left if favour_left else ~a_left))
            decisive = (1 - bias) * q + bias * a_favoured
            truth["criteria"][c][pair_key(a, b)] = {
                "unbiased_preference": q, "a_share_decisive": decisive, "a_share": (1 - tie_rate) * decisive,
                "tie_share": tie_rate, "b_share": (1 - tie_rate) * (1 - decisive)}
            left_prob += list(bias * favour_left + (1 - bias) * np.where(a_left, q, 1 - q))
    truth["position_bias"] = {"left_share": float(np.mean(left_prob))}
    truth["parameters"] = {"systems": systems, "strengths": per_criterion, "tie_rate": tie_rate,
                           "left_share": left_share, "rater_sd": rater_sd, "set_sd": set_sd}
    return truth
