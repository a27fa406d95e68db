"""Motion metrics on per-frame parameter sequences (Avatar Forcing [v2] §5.3, App. D.5).

Every function takes one clip as a (T, d) array, a (B, T, d) array or a list of (T, d) clips, as numpy
arrays or torch tensors. Call them separately on expression (d = 50) and pose (d = 6) parameters.

Pooling across clips. The paper does not say how it pools clips. rPCC and SID are taken from DIM [55],
whose reference code concatenates all clips and computes one number ("pooled"); TIMAR computes one number
per clip and averages them, and those numbers are not comparable with DIM's. So "pooled" is the default
everywhere here, and `mode="per_clip"` is offered where the per-clip reading is cheap and meaningful.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from sklearn.cluster import KMeans

MODES = ("pooled", "per_clip")


# -----------------------------------------------------------------------------
# input checking shared by eval/metrics.py and eval/react.py

def to_numpy(x, name: str) -> np.ndarray:
    """float64 copy of a numpy array / torch tensor / nested list; NaN or inf is an error."""
    if hasattr(x, "detach"):  # torch tensor: no torch import needed here
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.size and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def as_clips(x, name: str) -> list[np.ndarray]:
    """A clip (T, d), a batch (B, T, d) or a list of (T, d) clips -> list of float64 (T, d) arrays."""
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise ValueError(f"{name} is an empty list of clips")
        clips = [to_numpy(c, f"{name}[{i}]") for i, c in enumerate(x)]
    else:
        a = to_numpy(x, name)
        if a.ndim == 3:
            clips = list(a)
        elif a.ndim == 2:
            clips = [a]
        else:
            raise ValueError(f"{name} must be (T, d), (B, T, d) or a list of (T, d); got shape {a.shape}")
    for i, c in enumerate(clips):
        if c.ndim != 2:
            raise ValueError(f"{name}[{i}] must be (T, d); got shape {c.shape} (reshape a 1-D series to (T, 1))")
        if c.shape[0] == 0 or c.shape[1] == 0:
            raise ValueError(f"{name}[{i}] is empty: shape {c.shape}")
        if c.shape[1] != clips[0].shape[1]:
            raise ValueError(f"{name}[{i}] has {c.shape[1]} features, {name}[0] has {clips[0].shape[1]}")
    if not clips:
        raise ValueError(f"{name} holds no clips")
    return clips


def _paired_clips(**named) -> list[list[np.ndarray]]:
    """as_clips on each argument, then check they hold the same number of clips with equal shapes."""
    names = list(named)
    sets = [as_clips(v, k) for k, v in named.items()]
    for name, clips in zip(names[1:], sets[1:]):
        if len(clips) != len(sets[0]):
            raise ValueError(f"{name} has {len(clips)} clips, {names[0]} has {len(sets[0])}")
        for i, (a, b) in enumerate(zip(sets[0], clips)):
            if a.shape != b.shape:
                raise ValueError(f"clip {i}: {name} has shape {b.shape}, {names[0]} has {a.shape} "
                                 "(lengths and feature sizes must match frame for frame)")
    return sets


def _check_mode(mode: str):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")


# -----------------------------------------------------------------------------
# reactiveness: rPCC

def pearson(a: np.ndarray, b: np.ndarray, names=("a", "b")) -> float:
    """PCC(a|b) = sum (a_i - a_bar)(b_i - b_bar) / sqrt(sum (a_i - a_bar)^2 sum (b_i - b_bar)^2)
    over the flattened arrays ([v2] Eq. 16). Zero variance makes it undefined: a ValueError, not NaN."""
    a, b = np.ravel(a), np.ravel(b)
    da, db = a - a.mean(), b - b.mean()
    for d, n in zip((da, db), names):
        if not np.any(d):
            raise ValueError(f"PCC undefined: {n} is constant (zero variance)")
    return float(np.dot(da, db) / np.sqrt(np.dot(da, da) * np.dot(db, db)))


def rpcc(generated, user, ground_truth, *, mode: str = "pooled") -> float:
    """Residual PCC: rPCC = |PCC(y | x) - PCC(y_hat | x)|  (lower is better).

    x = user (the partner), y = ground-truth avatar, y_hat = generated avatar, all (T, d) per clip.
    Source: [v2] §5.3 / App. D.5 and Eq. 16, after DIM [55] (`abs(PCC(gt, partner) - PCC(pred, partner))`,
    Pearson over the *flattened* (T, d) sequences, so one coefficient mixes all feature dimensions).

    mode="pooled" (default): concatenate all clips, then one PCC per pair, as DIM's code does. It is the
      default because the paper cites DIM for rPCC and Table 4 inherits DIM's numbers, and because short or
      still clips make per-clip PCCs noisy or undefined.
    mode="per_clip": |PCC(y|x) - PCC(y_hat|x)| per clip, then the mean over clips (TIMAR's reading).
    A constant sequence (zero variance) raises ValueError naming it; mismatched shapes raise ValueError.
    """
    _check_mode(mode)
    gen, usr, gt = _paired_clips(generated=generated, user=user, ground_truth=ground_truth)

    def one(g, u, y, where=""):
        return abs(pearson(y, u, (f"ground_truth{where}", f"user{where}"))
                   - pearson(g, u, (f"generated{where}", f"user{where}")))

    if mode == "pooled":
        return one(*(np.concatenate([c.ravel() for c in clips]) for clips in (gen, usr, gt)))
    return float(np.mean([one(g, u, y, f"[{i}]") for i, (g, u, y) in enumerate(zip(gen, usr, gt))]))


# -----------------------------------------------------------------------------
# motion richness: SID and Var

def sid(generated, reference, k: int, *, seed: int = 0, n_init: int = 10) -> float:
    """Shannon index for diversity, in bits: SID = -sum_c p_c log2 p_c  (higher is better).

    K-means with k clusters is fit on the reference (ground-truth) frames; each generated frame is assigned
    to its nearest centre and p_c is the share of generated frames in cluster c. Source: [v2] App. D.5
    (after L2L [40]); paper K = 15 for expression, K = 9 for pose. The peers' code (DIM, TIMAR) fits on GT
    frames with `random_state=0, n_init='auto'` and uses bits. Both sides are pooled over all clips (DIM).

    Choices: bits, so the maximum is log2(k). The peers compute -sum p log2(p + 1e-6); we drop the 1e-6
    and use the exact entropy (0 log 0 = 0). The difference is below k * 1.5e-6 bits, invisible at the
    paper's three decimals. n_init=10 restarts (the peers' 'auto' means 1 for k-means++) make the
    clustering less seed-dependent; with a fixed seed the result is deterministic.
    Caveat: several paper values exceed log2(K) (Table 1 GT 3.972 > log2 15 = 3.907; Table 4 INFP*
    SID-Pose 3.20 > log2 9 = 3.17), so the paper cannot have used K = 15/9 in bits everywhere
    (DIM's ViCo numbers use k = 40 / 20). Compare SID only at equal k.
    """
    ref = np.concatenate(as_clips(reference, "reference"))
    gen = np.concatenate(as_clips(generated, "generated"))
    if ref.shape[1] != gen.shape[1]:
        raise ValueError(f"generated has {gen.shape[1]} features, reference has {ref.shape[1]}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}")
    n_distinct = len(np.unique(ref, axis=0))
    if n_distinct < k:
        raise ValueError(f"reference has {n_distinct} distinct frames, fewer than k = {k} clusters")
    kmeans = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(ref)
    p = np.bincount(kmeans.predict(gen), minlength=k) / len(gen)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def variance(x, *, mode: str = "pooled") -> float:
    """Var = mean_d Var_t(x[:, d]): temporal variance (ddof = 0) averaged over feature dims (higher is
    better per the paper, though GT is the natural target). Source: [v2] App. D.5; TIMAR's
    `mean(np.var(X, axis=0))`. (DIM's `np.var` of the flattened array also counts the spread of the
    per-dimension means, a different number.)

    mode="pooled" (default): concatenate all clips along time, then one variance, so between-clip
      differences count as motion too (consistent with rPCC and SID pooling).
    mode="per_clip": variance within each clip, then the mean over clips (pure within-clip motion).
    """
    _check_mode(mode)
    clips = as_clips(x, "x")
    if mode == "pooled":
        frames = np.concatenate(clips)
        if len(frames) < 2:
            raise ValueError("variance needs at least 2 frames")
        return float(frames.var(axis=0).mean())
    if any(len(c) < 2 for c in clips):
        raise ValueError("variance(mode='per_clip') needs at least 2 frames per clip")
    return float(np.mean([c.var(axis=0).mean() for c in clips]))


# -----------------------------------------------------------------------------
# Fréchet distances between Gaussian fits of frame sets

def _gaussian_fit(frames: np.ndarray, name: str):
    if len(frames) < 2:
        raise ValueError(f"{name}: a Gaussian fit needs at least 2 frames; got {len(frames)}")
    return frames.mean(axis=0), np.atleast_2d(np.cov(frames, rowvar=False))


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """tr((sigma1 sigma2)^{1/2}) with pytorch-fid's safeguards: if sqrtm is not finite (singular
    product), retry on (sigma1 + eps I)(sigma2 + eps I); a complex result must be real up to 1e-3."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular covariances are expected here
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(sigma1)) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has a large imaginary component: {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    return float(np.trace(covmean))


def _frechet_terms(x, y, mode: str):
    """Yield (|mu_x - mu_y|_2, tr(S_x + S_y - 2 (S_x S_y)^{1/2})) per pooled set or per clip pair."""
    _check_mode(mode)
    if mode == "pooled":
        pairs = [(np.concatenate(as_clips(x, "x")), np.concatenate(as_clips(y, "y")))]
        if pairs[0][0].shape[1] != pairs[0][1].shape[1]:
            raise ValueError(f"x has {pairs[0][0].shape[1]} features, y has {pairs[0][1].shape[1]}")
    else:
        pairs = list(zip(*_paired_clips(x=x, y=y)))
    for i, (a, b) in enumerate(pairs):
        (mu1, s1), (mu2, s2) = _gaussian_fit(a, f"x[{i}]"), _gaussian_fit(b, f"y[{i}]")
        yield float(np.linalg.norm(mu1 - mu2)), float(np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product(s1, s2))


def frechet_distance(x, y, *, mode: str = "pooled") -> float:
    """Standard Fréchet distance between Gaussian fits N(mu_x, S_x), N(mu_y, S_y) of two frame sets:
    FD = ||mu_x - mu_y||_2^2 + tr(S_x + S_y - 2 (S_x S_y)^{1/2})  (lower is better).
    Source: the FID formula (pytorch-fid); DIM / L2L compute it on 3DMM coefficients. S is the unbiased
    (ddof = 1) covariance, as np.cov. mode="pooled" (default) fits one Gaussian to all frames;
    mode="per_clip" fits per clip pair and averages, as DIM does (the protocol behind [v2] Table 4's
    inherited numbers; a per-clip covariance needs many more frames than dims to be meaningful)."""
    return float(np.mean([dmu ** 2 + tr for dmu, tr in _frechet_terms(x, y, mode)]))


def frechet_distance_eq17(x, y, *, mode: str = "pooled") -> float:
    """The paper's Eq. 17 exactly as printed: FD17 = ||mu_x - mu_y||_2 + tr(S_x + S_y - 2 (S_x S_y)^{1/2}).

    It differs from `frechet_distance` only in the mean term: the Euclidean norm of the mean difference,
    NOT its square. The two agree when ||mu_x - mu_y|| is 0 or 1; FD17 is larger for a mean gap below 1
    and smaller above 1 (gap 3: 3 vs 9). We read |.| of a vector as the L2 norm (an L1 reading would be
    sum_d |mu_x,d - mu_y,d|). Whether the printed form is a typo is unknown; Table 4's baseline numbers
    come from DIM, whose code uses the squared form, so use `frechet_distance` to compare with them.
    """
    return float(np.mean([dmu + tr for dmu, tr in _frechet_terms(x, y, mode)]))


def paired_frechet_distance(generated, ground_truth, partner, *, mode: str = "pooled") -> float:
    """P-FD = FD([partner, generated], [partner, ground_truth]), each frame concatenated with the
    partner's (user's) frame along the feature axis (DIM / L2L), so it scores the joint distribution of
    avatar and partner motion, not the avatar's alone (lower is better)."""
    gen, gt = _paired_clips(generated=generated, ground_truth=ground_truth)
    usr = as_clips(partner, "partner")  # same frames, but its own feature size
    if len(usr) != len(gen) or any(len(u) != len(g) for u, g in zip(usr, gen)):
        raise ValueError(f"partner clip lengths {[len(u) for u in usr]} do not match generated {[len(g) for g in gen]}")
    joint_gen = [np.concatenate([u, g], axis=1) for u, g in zip(usr, gen)]
    joint_gt = [np.concatenate([u, y], axis=1) for u, y in zip(usr, gt)]
    return frechet_distance(joint_gen, joint_gt, mode=mode)


# -----------------------------------------------------------------------------
# block-boundary jitter (our own metric)

def jitter(x, block: int, *, first_block: int | None = None) -> dict[str, float]:
    """Acceleration energy at block boundaries vs inside blocks. OUR OWN metric, not the paper's: the
    attention-mask ablation ([v2] App. D.4, Fig. 12) says blockwise-causal jitter is "difficult to capture
    with quantitative metrics" and shows it only in video.

    a_t = x_{t+1} - 2 x_t + x_{t-1} (second difference), e_t = mean_d a_t,d^2 for t = 1 .. T-2.
    Blocks start at frames first_block + n * block (first_block defaults to block; the official rollout
    primes with a 50-frame first block, then 10-frame blocks). e_t is a *boundary* frame if its stencil
    {t-1, t, t+1} spans a block start b, i.e. t in {b-1, b}; every other t is *interior*.
    Returns {"boundary": mean e_t over boundary t, "interior": mean over interior t, "ratio": their
    quotient}, pooled over clips. ratio ~ 1 means no excess at boundaries; ratio = inf if interior = 0 <
    boundary, and 1.0 if both are 0 (no acceleration anywhere, hence no boundary excess).
    """
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive int; got {block!r}")
    first_block = block if first_block is None else first_block
    if not isinstance(first_block, (int, np.integer)) or first_block < 1:
        raise ValueError(f"first_block must be a positive int; got {first_block!r}")
    at_boundary, inside = [], []
    for i, c in enumerate(as_clips(x, "x")):
        if len(c) < 3:
            raise ValueError(f"x[{i}] has {len(c)} frames; jitter needs at least 3")
        energy = ((c[2:] - 2 * c[1:-1] + c[:-2]) ** 2).mean(axis=1)  # energy[j] is centred at t = j + 1
        t = np.arange(1, len(c) - 1)
        starts = np.arange(first_block, len(c), block)
        touches = np.isin(t, starts) | np.isin(t + 1, starts)
        at_boundary.append(energy[touches])
        inside.append(energy[~touches])
    at_boundary, inside = np.concatenate(at_boundary), np.concatenate(inside)
    if at_boundary.size == 0:
        raise ValueError("no block boundary falls inside the clips (clips shorter than first_block + 1?)")
    if inside.size == 0:
        raise ValueError(f"no interior frames: block = {block} is too small to leave frames away from boundaries")
    boundary, interior = float(at_boundary.mean()), float(inside.mean())
    ratio = boundary / interior if interior > 0 else (np.inf if boundary > 0 else 1.0)
    return {"boundary": boundary, "interior": interior, "ratio": float(ratio)}
