"""eval/metrics.py and eval/react.py: hand-computed small cases and invariants."""
import itertools
import math

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from eval import metrics as M
from eval import react as R


@pytest.fixture(autouse=True)
def one_thread():
    # KMeans on a few hundred frames: OpenMP threads only spin on the shared 2-core box (4 s vs 0.06 s)
    with threadpool_limits(1):
        yield


def col(*v):
    return np.array(v, dtype=float)[:, None]  # a 1-D series as a (T, 1) clip


# ----------------------------------------------------------------------------- rPCC

def test_rpcc_hand_case():
    # user (1,2,3); gt (1,2,3) -> PCC 1; gen (1,3,2): deviations (-1,0,1).(-1,1,0) = 1 over sqrt(2*2) -> 0.5
    assert M.rpcc(col(1, 3, 2), col(1, 2, 3), col(1, 2, 3)) == pytest.approx(0.5, abs=1e-12)
    assert M.rpcc(col(3, 2, 1), col(1, 2, 3), col(1, 2, 3)) == pytest.approx(2.0, abs=1e-12)


def test_rpcc_of_ground_truth_is_zero_and_accepts_torch():
    rng = np.random.default_rng(0)
    user, gt = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    assert M.rpcc(gt, user, gt) == 0.0
    assert M.rpcc(torch.tensor(gt), torch.tensor(user), gt, mode="per_clip") == 0.0


def test_rpcc_pooled_vs_per_clip():
    user = [col(1, 2, 3), col(0, 1, 0)]
    gt = [col(1, 2, 3), col(0, 1, 0)]
    gen = [col(1, 3, 2), col(0, 1, 0)]
    # per clip: |1 - 0.5| and |1 - 1| -> mean 0.25
    assert M.rpcc(gen, user, gt, mode="per_clip") == pytest.approx(0.25)
    # pooled: one PCC over the 6 concatenated values
    u, g = np.array([1, 2, 3, 0, 1, 0.]), np.array([1, 3, 2, 0, 1, 0.])
    assert M.rpcc(gen, user, gt) == pytest.approx(abs(1 - np.corrcoef(g, u)[0, 1]))


def test_rpcc_errors():
    with pytest.raises(ValueError, match="generated is constant"):
        M.rpcc(col(1, 1, 1), col(1, 2, 3), col(1, 2, 3))
    with pytest.raises(ValueError, match="shape"):
        M.rpcc(col(1, 2, 3, 4), col(1, 2, 3), col(1, 2, 3))
    with pytest.raises(ValueError, match="NaN"):
        M.rpcc(col(1, np.nan, 3), col(1, 2, 3), col(1, 2, 3))
    with pytest.raises(ValueError, match="empty list"):
        M.rpcc([], [], [])
    with pytest.raises(ValueError, match="mode"):
        M.rpcc(col(1, 2), col(1, 2), col(1, 2), mode="mean")
    with pytest.raises(ValueError, match=r"\(T, d\)"):
        M.rpcc(np.ones(3), np.ones(3), np.ones(3))


# ----------------------------------------------------------------------------- SID, Var

def _blobs(k, per, rng, spread=0.01):
    centres = np.arange(k)[:, None] * 10.0 * np.ones((1, 3))
    return np.concatenate([c + spread * rng.normal(size=(per, 3)) for c in centres])


def test_sid_equal_separated_clusters_is_log2_k():
    rng = np.random.default_rng(0)
    for k in (2, 5, 9):
        ref, gen = _blobs(k, 20, rng), _blobs(k, 7, rng)
        assert M.sid(gen, ref, k) == pytest.approx(math.log2(k), abs=1e-12)
    assert M.sid(_blobs(1, 30, rng) + 20.0, _blobs(3, 20, rng), 3) == 0.0  # all in one cluster


def test_sid_hand_histogram():
    rng = np.random.default_rng(1)
    ref = _blobs(2, 20, rng)
    gen = np.concatenate([_blobs(1, 3, rng), _blobs(1, 1, rng) + 10.0])  # p = (3/4, 1/4)
    assert M.sid(gen, ref, 2) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_sid_deterministic_for_a_seed():
    rng = np.random.default_rng(2)
    ref, gen = rng.normal(size=(300, 4)), rng.normal(size=(200, 4))  # no clear clusters: the seed matters
    assert M.sid(gen, ref, 6, seed=3) == M.sid(gen, ref, 6, seed=3)
    with pytest.raises(ValueError, match="distinct frames"):
        M.sid(gen, np.zeros((50, 4)), 2)
    with pytest.raises(ValueError, match="features"):
        M.sid(gen[:, :3], ref, 2)


def test_variance_hand_case_and_pooling():
    a = np.array([[0., 0.], [2., 4.]])  # per-dim variances 1 and 4 -> 2.5
    assert M.variance(a) == pytest.approx(2.5)
    b = a + 10.0
    assert M.variance([a, b], mode="per_clip") == pytest.approx(2.5)
    # pooled over (0,2,10,12) and (0,4,10,14): variances 26 and 29 -> 27.5
    assert M.variance([a, b]) == pytest.approx(27.5)
    with pytest.raises(ValueError, match="at least 2"):
        M.variance(np.ones((1, 3)))


# ----------------------------------------------------------------------------- Fréchet distances

def _with_moments(mu, cov, n, rng):
    """n frames whose sample mean and (ddof=1) covariance are exactly mu and cov."""
    z = rng.normal(size=(n, len(mu)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # whiten exactly
    return mu + z @ np.linalg.cholesky(cov).T


def test_frechet_self_is_zero():
    x = np.random.default_rng(3).normal(size=(200, 6))
    assert abs(M.frechet_distance(x, x)) < 1e-6
    assert abs(M.frechet_distance_eq17(x, x)) < 1e-6


def test_frechet_matches_closed_form():
    rng = np.random.default_rng(4)
    mu1, mu2 = np.array([0., 1., 2.]), np.array([1., -1., 2.])
    d1, d2 = np.array([1., 4., 9.]), np.array([4., 1., 1.])
    x, y = _with_moments(mu1, np.diag(d1), 500, rng), _with_moments(mu2, np.diag(d2), 400, rng)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)  # 5 + (1 + 1 + 4)
    assert M.frechet_distance(x, y) == pytest.approx(closed, abs=1e-6)
    # equal, non-diagonal covariances: only the mean term is left
    cov = np.array([[2., 0.5, 0.], [0.5, 1., 0.3], [0., 0.3, 1.5]])
    x, y = _with_moments(mu1, cov, 300, rng), _with_moments(mu2, cov, 300, rng)
    assert M.frechet_distance(x, y) == pytest.approx(5.0, abs=1e-6)


def test_eq17_differs_from_standard_in_the_mean_term():
    rng = np.random.default_rng(5)
    cov = np.diag([1., 2.])
    x = _with_moments(np.zeros(2), cov, 300, rng)
    y = _with_moments(np.array([3., 4.]), cov, 300, rng)  # |dmu| = 5
    assert M.frechet_distance(x, y) == pytest.approx(25.0, abs=1e-6)
    assert M.frechet_distance_eq17(x, y) == pytest.approx(5.0, abs=1e-6)


def test_frechet_singular_covariance_is_finite():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(100, 3)), rng.normal(size=(100, 3)) + 1.0
    x[:, 2], y[:, 2] = 0.5, 0.5  # a constant dimension in both: singular covariances
    assert M.frechet_distance(x, y) == pytest.approx(M.frechet_distance(x[:, :2], y[:, :2]), abs=1e-4)


def test_paired_frechet_and_per_clip():
    rng = np.random.default_rng(7)
    gt, partner = rng.normal(size=(2, 80, 3)), rng.normal(size=(2, 80, 2))
    assert abs(M.paired_frechet_distance(gt, gt, partner)) < 1e-6
    gen = gt + np.array([1.0, 0.0, 0.0])  # mean shift of 1 in one avatar dim; partner part unchanged
    assert M.paired_frechet_distance(gen, gt, partner) == pytest.approx(1.0, abs=1e-6)
    assert M.frechet_distance(list(gen), list(gt), mode="per_clip") == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="partner clip lengths"):
        M.paired_frechet_distance(gen, gt, partner[:, :70])


# ----------------------------------------------------------------------------- jitter

def test_jitter_hand_case():
    # x = 0,0,0,1,1,1,... block 3: a_t = 0,1,-1,0 for t = 1..4 ; boundary at 3 touches t = 2, 3
    x = col(0, 0, 0, 1, 1, 1)
    out = M.jitter(x, 3)
    assert out["boundary"] == 1.0 and out["interior"] == 0.0 and out["ratio"] == np.inf
    # linear ramp: no acceleration anywhere -> ratio 1 by convention
    assert M.jitter(col(*range(12)), 4)["ratio"] == 1.0
    y = col(0, 1, 0, 1, 0, 1, 0)  # a_t = -2, 2, -2, 2, -2 everywhere -> ratio 1
    assert M.jitter(y, 3)["ratio"] == pytest.approx(1.0)


def test_jitter_larger_with_jumps_at_boundaries():
    t = np.arange(100)
    smooth = np.stack([np.sin(t / 7.0), np.cos(t / 5.0)], 1)
    jumpy = smooth + 0.3 * (t // 10)[:, None]  # a step at every 10-frame boundary
    assert M.jitter(smooth, 10)["ratio"] == pytest.approx(1.0, abs=0.3)
    assert M.jitter(jumpy, 10)["ratio"] > 10 * M.jitter(smooth, 10)["ratio"]
    # the first block can be longer (50-frame priming block): boundaries at 50, 60, ...
    primed = smooth + 0.3 * (np.maximum(t - 40, 0) // 10)[:, None]
    assert M.jitter(primed, 10, first_block=50)["ratio"] > M.jitter(primed, 10)["ratio"]
    with pytest.raises(ValueError, match="interior"):
        M.jitter(smooth, 2)


# ----------------------------------------------------------------------------- REACT: CCC, DTW

def test_ccc_hand_case():
    x, y = col(1, 2, 3), col(2, 3, 4)  # var 2/3 each, cov 2/3, mean gap 1 -> (4/3) / (7/3)
    assert R.ccc(x, y)[0] == pytest.approx(4 / 7)
    assert R.ccc(x, x)[0] == pytest.approx(1.0)
    assert R.ccc(col(1, 1, 1), x)[0] == 0.0  # constant dim -> 0, as REACT's nan_to_num


def test_dtw_hand_path():
    # cost (squared): rows x = 0,1,2 ; cols y = 0,3 -> [[0,9],[1,4],[4,1]]; best path cost 0 + 1 + 1
    dist, path = R.dtw(col(0, 1, 2), col(0, 3), return_path=True)
    assert dist == pytest.approx(math.sqrt(2))
    assert path == [(0, 0), (1, 0), (2, 1)]
    assert R.dtw(col(0, 1, 2), col(0, 1, 2)) == 0.0
    assert R.dtw(col(1, 2, 3), col(1, 2, 2, 3)) == 0.0  # a repeated frame costs nothing


def _brute_force_dtw(x, y):
    """min over all monotone paths, enumerated by their step sequences."""
    best = math.inf
    n, m = len(x), len(y)
    for steps in itertools.product([(1, 0), (0, 1), (1, 1)], repeat=n + m - 2):
        i = j = 0
        total = np.sum((x[0] - y[0]) ** 2)
        for di, dj in steps:
            i, j = i + di, j + dj
            if i >= n or j >= m:
                break
            total += np.sum((x[i] - y[j]) ** 2)
            if (i, j) == (n - 1, m - 1):
                best = min(best, total)
                break
    return math.sqrt(best)


def test_dtw_matches_brute_force():
    rng = np.random.default_rng(8)
    for n, m in [(3, 4), (4, 4), (5, 3)]:
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2))
        assert R.dtw(x, y) == pytest.approx(_brute_force_dtw(x, y), abs=1e-12)
        assert R.dtw(x, y) == pytest.approx(R.dtw(y, x), abs=1e-12)


# ----------------------------------------------------------------------------- REACT metrics

def test_frcorr_hand_case_and_sum_over_samples():
    listener = np.stack([col(1, 2, 3), col(2, 3, 4), col(3, 2, 1)])  # (L=3, T=3, D=1)
    pred = col(1, 2, 3)[None, None]  # one speaker, one sample, equal to listener 0
    appropriate = np.array([[0, 1, 1]])  # listener 0 is NOT appropriate: best is listener 1 with 4/7
    assert R.frcorr(pred, listener, appropriate) == pytest.approx(4 / 7)
    # the reference sums the per-sample maxima: 3 identical samples give 3x
    pred3 = np.repeat(pred, 3, axis=1)
    assert R.frcorr(pred3, listener, appropriate) == pytest.approx(3 * 4 / 7)
    # mean over speakers: speaker 2 has listener 0 appropriate (CCC 1) -> (4/7 + 1) / 2
    two = np.concatenate([pred, pred])
    assert R.frcorr(two, listener, np.array([[0, 1, 1], [1, 0, 0]])) == pytest.approx((4 / 7 + 1) / 2)
    with pytest.raises(ValueError, match="no appropriate"):
        R.frcorr(pred, listener, np.array([[0, 0, 0]]))


def test_frdist_weights_and_sum_over_samples():
    T = 4
    listener = np.zeros((2, T, 25))
    listener[1] += 1.0  # listener 1 is offset by 1 in every attribute
    pred = np.zeros((1, 2, T, 25))
    # per slice DTW between constant sequences differing by 1: sqrt(T * width)
    d1 = (1 / 15) * math.sqrt(T * 15) + 1.0 * math.sqrt(T * 2) + (1 / 8) * math.sqrt(T * 8)
    assert R.frdist(pred, listener, np.array([[0, 1]])) == pytest.approx(2 * d1)  # 2 samples summed
    assert R.frdist(pred, listener, np.array([[1, 1]])) == 0.0  # min over neighbours: listener 0 matches


def test_frdiv_frvar_frdvs_hand_cases():
    pred = np.zeros((2, 2, 2, 1))
    pred[0, 1] = 2.0   # speaker 0: samples 0 and 2 everywhere -> sum_{i!=j} = 2 * (2 frames * 4) = 16
    pred[1, :, 1] = 3.0  # speaker 1: both samples (0, 3) in time
    # FRDiv: speaker 0 -> 16 / (2*1*2) = 4; speaker 1 -> 0 ; mean 2
    assert R.frdiv(pred) == pytest.approx(2.0)
    # brute force S-MSE
    flat = pred.reshape(2, 2, -1)
    brute = np.mean([sum(np.sum((p[i] - p[j]) ** 2) for i in range(2) for j in range(2) if i != j) / (2 * 1 * 2)
                     for p in flat])
    assert R.frdiv(pred) == pytest.approx(brute)
    # FRVar (ddof=1 over T=2): speaker 0 vars 0, 0; speaker 1 vars 4.5, 4.5 -> mean 2.25
    assert R.frvar(pred) == pytest.approx(2.25)
    # FRDvs: sample 0: speakers (0,0) vs (0,3) -> 9; sample 1: (2,2) vs (0,3) -> 4 + 1 = 5
    # sum over ordered pairs 2 * (9 + 5) = 28, / (N(N-1) m T D = 2*1*2*2*1 = 8) = 3.5
    assert R.frdvs(pred) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="at least 2 samples"):
        R.frdiv(pred[:, :1])


def test_frsyn_recovers_lag():
    rng = np.random.default_rng(9)
    T, lag = 200, 7
    base = np.convolve(rng.normal(size=T + 50), np.ones(5) / 5, mode="same")
    speaker = np.stack([base[50:], -base[50:]], 1)  # (T, 2)
    follow = np.stack([base[50 - lag:T + 50 - lag], -base[50 - lag:T + 50 - lag]], 1)  # pred[t] = speaker[t - 7]
    pred = np.stack([follow, speaker])[None]  # (1, 2, T, 2): one lagged, one in sync
    assert R.frsyn(pred[:, :1], speaker[None]) == lag
    assert R.frsyn(pred[:, 1:], speaker[None]) == 0
    assert R.frsyn(pred, speaker[None]) == pytest.approx(lag / 2)
    r = R.lagged_pcc(follow, speaker)
    assert np.argmax(r) - R.MAX_LAG == lag and r.shape == (2 * R.MAX_LAG + 1,)


def test_frsyn_signed_peak_and_constant_dims():
    t = np.arange(120.0)
    speaker = np.stack([np.sin(t / 4.0), np.zeros_like(t)], 1)  # second attribute constant: ignored
    anti = -speaker  # perfect anti-correlation at lag 0 does not count as the peak
    lag = R.frsyn(anti[None, None], speaker[None])
    r = R.lagged_pcc(anti, speaker)
    assert r[R.MAX_LAG] == pytest.approx(-1.0)  # lag 0: perfectly anti-correlated, the strongest |r| ...
    assert lag in (13, 38) and r.max() > 0.9  # ... but the peak is a positive one, half a period away (4 pi)
    with pytest.raises(ValueError, match="too short"):
        R.frsyn(np.zeros((1, 1, 40, 2)), np.zeros((1, 40, 2)))
    with pytest.raises(ValueError, match="no lag"):
        R.frsyn(np.zeros((1, 1, 60, 1)), np.zeros((1, 60, 1)))
