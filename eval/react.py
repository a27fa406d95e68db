"""REACT challenge peer metrics (REACT 2023/2024, `reactmultimodalchallenge/baseline_react2023` metric/),
re-implemented from their definitions so that our listener reactions can be scored on the peers' scale.

Shapes follow the challenge: predictions (N, m, T, D) = N speakers x m generated reactions (m = 10 in the
challenge) x T frames (750) x D attributes (25 = 15 AU occurrences, valence + arousal, 8 expression
probabilities). `listener` is the pool of real listener reactions (L, T, D), and `appropriate` an (N, L)
0/1 matrix whose row k marks the reactions appropriate to speaker k (the challenge's neighbour matrix).
The reference quirks are kept on purpose (documented per metric) so the numbers stay comparable.
"""
from __future__ import annotations

import numpy as np

from eval.metrics import to_numpy

# FRDist slice weights: 15 AUs share weight 1 (1/15 each), valence/arousal 1 each, 8 expressions 1 (1/8 each).
REACT_SLICES = ((slice(0, 15), 1 / 15), (slice(15, 17), 1.0), (slice(17, 25), 1 / 8))
MAX_LAG = 49  # FRSyn lags -49..+49 frames: +-2 s at 25 fps, as range(-(2*25-1), 2*25)


def _predictions(x, name="predictions") -> np.ndarray:
    a = to_numpy(x, name)
    if a.ndim != 4 or 0 in a.shape:
        raise ValueError(f"{name} must be (N speakers, m samples, T, D) and non-empty; got shape {a.shape}")
    return a


def _pool_and_neighbours(predictions, listener, appropriate):
    pred = _predictions(predictions)
    pool = to_numpy(listener, "listener")
    if pool.ndim != 3 or pool.shape[1:] != pred.shape[2:]:
        raise ValueError(f"listener must be (L, T, D) = (L, {pred.shape[2]}, {pred.shape[3]}); got {pool.shape}")
    mask = np.asarray(appropriate)
    if mask.shape != (pred.shape[0], pool.shape[0]):
        raise ValueError(f"appropriate must be (N, L) = ({pred.shape[0]}, {pool.shape[0]}); got {mask.shape}")
    mask = mask.astype(bool)
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(f"speakers {empty.tolist()} have no appropriate listener reaction")
    return pred, pool, mask


def ccc(x, y) -> np.ndarray:
    """Concordance correlation per attribute: CCC_d = 2 cov(x_d, y_d) / (var x_d + var y_d + (mu_x,d - mu_y,d)^2)
    with population (ddof = 0) moments, for x, y of shape (T, D); returns (D,).
    Lin (1989); REACT `concordance_correlation_coefficient`. A dimension constant in x or y gets CCC = 0,
    as in the REACT 2023 code, whose corrcoef replaces the undefined correlation by 0 (`nan_to_num`).
    The reference adds 1e-8 to the denominator; we do not (it only matters for near-constant dims)."""
    x, y = to_numpy(x, "x"), to_numpy(y, "y")
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ccc needs two (T, D) arrays of equal shape; got {x.shape} and {y.shape}")
    dx, dy = x - x.mean(0), y - y.mean(0)
    var_x, var_y, cov = (dx ** 2).mean(0), (dy ** 2).mean(0), (dx * dy).mean(0)
    denom = var_x + var_y + (x.mean(0) - y.mean(0)) ** 2
    defined = (var_x > 0) & (var_y > 0)
    return np.where(defined, 2 * cov / np.where(defined, denom, 1.0), 0.0)


def dtw(x, y, *, return_path: bool = False):
    """Dynamic time warping: DTW(x, y) = sqrt(min_path sum_{(i,j) in path} ||x_i - y_j||^2) over monotone
    paths from (0, 0) to (T_x - 1, T_y - 1) with steps (1,0), (0,1), (1,1): the definition of
    `tslearn.metrics.dtw`, which the REACT code calls. x: (T_x, D), y: (T_y, D).

    One row at a time: D[i,j] = c[i,j] + min(D[i-1,j-1], D[i-1,j], D[i,j-1]). Writing cand_j for the
    first two terms and S_j = sum_{l<=j} c[i,l], the in-row recursion unrolls to
    D[i,j] = S_j + min_{k<=j}(cand_k - S_k), a running minimum, so each row is a few numpy ops.
    With return_path=True also returns the optimal path as a list of (i, j) (diagonal wins ties).
    """
    x, y = to_numpy(x, "x"), to_numpy(y, "y")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"dtw needs non-empty (T_x, D) and (T_y, D) arrays; got {x.shape} and {y.shape}")
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    acc = np.empty_like(cost)
    prev = np.full(len(y) + 1, np.inf)  # previous row, shifted right by one: prev[j] = D[i-1, j-1]
    prev[0] = 0.0  # a virtual D[-1, -1] = 0, so the first cell starts the path
    for i in range(len(x)):
        cand = cost[i] + np.minimum(prev[:-1], prev[1:])
        s = np.cumsum(cost[i])
        acc[i] = s + np.minimum.accumulate(cand - s)
        prev = np.concatenate(([np.inf], acc[i]))
    dist = float(np.sqrt(acc[-1, -1]))
    if not return_path:
        return dist
    i, j, path = len(x) - 1, len(y) - 1, [(len(x) - 1, len(y) - 1)]
    while i or j:
        steps = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        i, j = min((s for s in steps if s[0] >= 0 and s[1] >= 0), key=lambda s: acc[s])
        path.append((i, j))
    return dist, path[::-1]


def frcorr(predictions, listener, appropriate) -> float:
    """FRCorr (appropriateness, higher is better) = sum_i mean_k max_{j appropriate to k} mean_d CCC_d(pred[k,i], listener[j]).

    REACT `metric/FRC.py` (compute_FRC and compute_FRC_mp agree). QUIRK kept: the per-sample maxima are
    SUMMED over the m samples (`max_ccc_sum += max(ccc_list)`), not averaged, so FRCorr scales with m
    (10 in the challenge): divide by m for a per-sample value.
    """
    pred, pool, mask = _pool_and_neighbours(predictions, listener, appropriate)
    per_speaker = [sum(max(ccc(p, pool[j]).mean() for j in np.flatnonzero(mask[k])) for p in pred[k])
                   for k in range(len(pred))]
    return float(np.mean(per_speaker))


def frdist(predictions, listener, appropriate, *, slices=REACT_SLICES) -> float:
    """FRDist (appropriateness, lower is better) = sum_i mean_k min_{j appropriate to k} sum_s w_s DTW(pred[k,i][:, s], listener[j][:, s]).

    REACT `metric/FRD.py`: DTW per attribute slice with weights AU 1/15, VA 1, FE 1/8 (REACT_SLICES).
    QUIRK kept: like FRCorr, the per-sample minima are SUMMED over the m samples (`min_dwt_sum`), then
    averaged over speakers, so FRDist scales with m. (Our anchors note says "mean over all"; the stored
    REACT 2023 code sums, in both its serial and multiprocessing versions.)
    """
    pred, pool, mask = _pool_and_neighbours(predictions, listener, appropriate)

    def distance(a, b):
        return sum(w * dtw(a[:, s], b[:, s]) for s, w in slices)

    per_speaker = [sum(min(distance(p, pool[j]) for j in np.flatnonzero(mask[k])) for p in pred[k])
                   for k in range(len(pred))]
    return float(np.mean(per_speaker))


def frdiv(predictions) -> float:
    """FRDiv = S-MSE (diversity among the m reactions to one speaker, higher is better):
    mean_k sum_{i != j} ||p_ki - p_kj||^2 / (m (m - 1) T D), p_ki flattened over (T, D). REACT `metric/S_MSE.py`.
    Computed as 2 * (unbiased variance across the m samples), averaged over frames and dims: the same
    number, since sum_{i,j} ||p_i - p_j||^2 = 2 m sum_i ||p_i - p_bar||^2."""
    pred = _predictions(predictions)
    if pred.shape[1] < 2:
        raise ValueError("frdiv needs at least 2 samples per speaker")
    return float(2 * pred.var(axis=1, ddof=1).mean())


def frvar(predictions) -> float:
    """FRVar (diversity over time, higher is better) = mean over (N, m, D) of Var_t, with the UNBIASED
    (ddof = 1) variance of `torch.var(preds, dim=2)`, REACT `metric/FRVar.py`. (eval.metrics.variance
    uses ddof = 0, so the two differ by T / (T - 1).)"""
    pred = _predictions(predictions)
    if pred.shape[2] < 2:
        raise ValueError("frvar needs at least 2 frames")
    return float(pred.var(axis=2, ddof=1).mean())


def frdvs(predictions) -> float:
    """FRDvs (diversity across speakers, higher is better) = sum_i sum_{a != b} ||p_ai - p_bi||^2 / (N (N - 1) m T D):
    for each sample index i, squared distances between the N speakers' reactions. REACT `metric/FRDvs.py`.
    Computed as 2 * (unbiased variance across speakers), averaged over samples, frames and dims."""
    pred = _predictions(predictions)
    if pred.shape[0] < 2:
        raise ValueError("frdvs needs at least 2 speakers")
    return float(2 * pred.var(axis=0, ddof=1).mean())


def lagged_pcc(pred, speaker, max_lag: int = MAX_LAG) -> np.ndarray:
    """r[lag] for lag = -max_lag..max_lag: PCC per attribute between pred[t + lag] and speaker[t] over the
    overlap, averaged over attributes (REACT TLCC `shift`/`crosscorr`). Positive lag = pred follows the speaker.
    Attributes constant on the overlap are left out of the average; a lag with none left gets -inf. (The
    reference averages NaNs in, and its argmax then picks the first NaN lag, i.e. offset 49.)"""
    pred, speaker = to_numpy(pred, "pred"), to_numpy(speaker, "speaker")
    if pred.shape != speaker.shape or pred.ndim != 2:
        raise ValueError(f"pred and speaker must be (T, D) of equal shape; got {pred.shape} and {speaker.shape}")
    if len(pred) < max_lag + 2:
        raise ValueError(f"T = {len(pred)} frames is too short for lags up to {max_lag} (need T >= max_lag + 2)")
    r = np.full(2 * max_lag + 1, -np.inf)
    for n, lag in enumerate(range(-max_lag, max_lag + 1)):
        a = pred[lag:] if lag >= 0 else pred[:lag]
        b = speaker[:len(speaker) - lag] if lag >= 0 else speaker[-lag:]
        da, db = a - a.mean(0), b - b.mean(0)
        norm = np.sqrt((da ** 2).sum(0) * (db ** 2).sum(0))
        ok = norm > 0
        if ok.any():
            r[n] = ((da * db).sum(0)[ok] / norm[ok]).mean()
    return r


def frsyn(predictions, speaker, *, max_lag: int = MAX_LAG) -> float:
    """FRSyn (synchrony, lower is better) = mean over (k, i) of |lag*|, lag* = argmax_lag r_ki[lag] from
    `lagged_pcc(pred[k, i], speaker[k])`. REACT `metric/TLCC.py: compute_TLCC` (`offset = center - argmax`).
    Quirks kept: the peak is the largest signed correlation (a strong anti-correlation does not count), and
    ties go to the first lag, i.e. the most negative one. If no lag has a defined correlation, ValueError."""
    pred = _predictions(predictions)
    sp = to_numpy(speaker, "speaker")
    if sp.shape != (pred.shape[0],) + pred.shape[2:]:
        raise ValueError(f"speaker must be (N, T, D) = {(pred.shape[0],) + pred.shape[2:]}; got {sp.shape}")
    offsets = []
    for k in range(len(pred)):
        for i in range(pred.shape[1]):
            r = lagged_pcc(pred[k, i], sp[k], max_lag)
            if np.isneginf(r).all():
                raise ValueError(f"prediction ({k}, {i}): no lag has a defined correlation (constant series)")
            offsets.append(abs(int(np.argmax(r)) - max_lag))
    return float(np.mean(offsets))
