"""The training experiments of notebooks 03 and 04: which model each ablation trains, how it is trained on
the corpus, and how it generates the held-out clips that eval.scoring then scores.

Every variant is the tiny (or paper) config with one change, trained by afcore.train.stage1 on
afcore.data.CorpusWindows:
- `no_user_motion` (paper Table 5 "w/o m_u"): the user's motion latents are zeros in training and sampling,
  so the model never sees them (user audio and avatar audio still reach it);
- masks (App. D.4, Fig. 12): framewise causal, blockwise causal, blockwise causal look-ahead (the default
  `lookahead` mask is the official token-level look-ahead);
- block sizes 5 / 25 frames with the 50-frame window (Table 7);
- `ar_diffusion` (App. D.4, Fig. 11): autoregressive diffusion on clean context, trained on 50-frame windows
  whose first 40 frames are clean context (t = 0, left out of the loss) and whose last block is noisy. This is
  exactly afcore's `context_frames` mechanism (the INFP* clean context), so no objective changes: the train
  config is (window = block, context_frames = 40) and the weights are sampled with the ordinary streaming
  config (the weights do not depend on the window);
- `infp` (INFP*, bidirectional 75-frame windows after 10 clean frames, audio-only guider) and `talking`
  (avatar audio only: the FLOAT-like row of Table 1 and the DPO loser model).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from afcore.baselines import generate_windowed
from afcore.config import ModelConfig, get_config, infp_config, talking_config
from afcore.data import CorpusWindows, latents_path, oracle_latent_corpus  # noqa: F401  (03/04 import it from here)
from afcore.model import AvatarForcing, latent_space_of, load_checkpoint
from afcore.session import generate
from afcore.train import TrainProfile, stage1
from data_prep.corpus import Corpus


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    overrides: dict = field(default_factory=dict)  # ModelConfig fields changed from the base config
    kind: str = "causal"  # causal | infp | talking | ar_diffusion
    user_motion: bool = True  # the user's motion latents reach the model (training and sampling)


VARIANTS = {v.name: v for v in (
    Variant("ours", "Ours (w/ m_u, look-ahead mask, 10-frame blocks)"),
    Variant("no_user_motion", "w/o m_u", user_motion=False),
    Variant("mask_framewise", "framewise causal mask", {"mask": "framewise"}),
    Variant("mask_blockwise", "blockwise causal mask", {"mask": "blockwise"}),
    Variant("mask_block_lookahead", "blockwise causal look-ahead mask", {"mask": "block_lookahead"}),
    Variant("block5", "10 blocks x 5 frames", {"block": 5}),
    Variant("block25", "2 blocks x 25 frames", {"block": 25}),
    Variant("ar_diffusion", "AR diffusion (4 clean context blocks + 1 noisy block)", kind="ar_diffusion"),
    Variant("infp", "INFP* (bidirectional 75-frame windows, audio only)", kind="infp"),
    Variant("talking", "talking-only (avatar audio only)", kind="talking"),
)}


def base_config(name: str = "tiny", overrides: dict | None = None) -> ModelConfig:
    return get_config(name, **(overrides or {}))


def train_config(base: ModelConfig, variant: Variant) -> ModelConfig:
    cfg = replace(base, **variant.overrides)
    if variant.kind == "infp":
        return infp_config(cfg)
    if variant.kind == "talking":
        return talking_config(cfg)
    if variant.kind == "ar_diffusion":  # one noisy block after window - block clean context frames
        return replace(cfg, name=f"{cfg.name}-ardiff", window=cfg.block, context_frames=cfg.window - cfg.block)
    return replace(cfg, name=f"{cfg.name}-{variant.name}") if variant.name != "ours" else cfg


def sample_config(base: ModelConfig, variant: Variant) -> ModelConfig:
    """The config the trained weights stream with (differs from training only for AR diffusion)."""
    cfg = train_config(base, variant)
    if variant.kind == "ar_diffusion":
        cfg = replace(cfg, window=base.window, context_frames=0)
    return cfg


class ZeroUserMotion(Dataset):
    """Training windows with the user's motion latents replaced by zeros (the paper's "w/o m_u")."""

    def __init__(self, windows: Dataset):
        self.windows = windows

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, i):
        item = dict(self.windows[i])
        item["user_motion"] = torch.zeros_like(item["user_motion"])
        return item


def training_windows(corpus_dir, cfg: ModelConfig, variant: Variant, split: str = "train") -> Dataset:
    windows = CorpusWindows(corpus_dir, cfg, split)
    return windows if variant.user_motion else ZeroUserMotion(windows)


def train_variant(name: str, base: ModelConfig, corpus_dir, profile: TrainProfile, out) -> tuple[Path, dict]:
    """Stage 1 of one variant into out/runs/<name>/ (last.pt, log.csv, metrics.json); returns the checkpoint."""
    variant = VARIANTS[name]
    cfg = train_config(base, variant)
    run = Path(out) / "runs" / name
    summary = stage1(cfg, training_windows(corpus_dir, cfg, variant), profile, run)
    return run / "last.pt", summary


def load_variant(checkpoint, name: str) -> AvatarForcing:
    """A trained variant, rebuilt with its sampling config (AR diffusion streams like the causal model)."""
    model, _ = load_checkpoint(checkpoint)
    variant = VARIANTS[name]
    if variant.kind == "ar_diffusion":
        cfg = replace(model.cfg, window=model.cfg.window + model.cfg.context_frames, context_frames=0)
        streaming = AvatarForcing(cfg)
        streaming.load_state_dict(model.state_dict())
        model = streaming.eval()
    return model


# ------------------------------------------------------------------------------------------------ held-out clips
def held_out_clips(corpus_dir, split: str = "test", *, whole_conversations: bool = False, max_frames: int = 0,
                   max_clips: int = 0) -> list[dict]:
    """Every clip (or whole conversation) of `split` with each person as the avatar and the other as the user:
    avatar_wave / user_wave (640 T,) float32, user_motion / avatar_latents (T, D), ref (D,) = the avatar's
    latent at the first frame (the reference image's motion), avatar_params / user_params (T, 10) truth."""
    corpus = Corpus(corpus_dir)
    rows = corpus.manifest[corpus.manifest.split == split]
    if rows.empty:
        raise ValueError(f"{corpus_dir}: no clips in split {split!r}")
    if whole_conversations:
        conv = corpus.conversations.set_index("conversation_id")
        rows = rows.drop_duplicates(["conversation_id", "person"]).assign(
            start_frame=0, n_frames=lambda d: [int(conv.loc[c, "n_frames"]) for c in d.conversation_id],
            clip_id=lambda d: d.conversation_id)
    if max_clips and len(rows) > max_clips:  # spread over conversations and persons, not the first few
        rows = rows.iloc[np.unique(np.linspace(0, len(rows) - 1, max_clips).round().astype(int))]
    clips = []
    for r in rows.itertuples():
        a, n = int(r.start_frame), int(r.n_frames)
        n = min(n, max_frames) if max_frames else n
        avatar, user = corpus.stream(r.conversation_id, r.person), corpus.stream(r.conversation_id, r.partner)
        lat = {p: np.load(latents_path(corpus_dir, r.conversation_id, p), mmap_mode="r") for p in (r.person, r.partner)}
        def wave(stream, a=a, n=n):
            return np.asarray(stream["audio"][a * 640:(a + n) * 640], np.float32) / 32768.0  # int16 on disk
        clips.append({"clip_id": r.clip_id, "conversation_id": r.conversation_id, "person": r.person, "identity": r.identity,
                      "partner": r.partner, "start_frame": a, "frames": n,
                      "avatar_wave": wave(avatar), "user_wave": wave(user),
                      "avatar_latents": np.array(lat[r.person][a:a + n]), "user_motion": np.array(lat[r.partner][a:a + n]),
                      "ref": np.array(lat[r.person][a]),
                      "avatar_params": np.array(avatar["params"][a:a + n]), "user_params": np.array(user["params"][a:a + n])})
    return clips


@torch.no_grad()
def generate_clips(model: AvatarForcing, clips: list[dict], *, kind: str = "causal", user_motion: bool = True,
                   nfe: int | None = None, seed: int = 0, batch: int = 8, progress: bool = True) -> list[np.ndarray]:
    """Generated motion latents (T, D) per clip. Clips of equal length are batched; the noise comes from one
    generator seeded by `seed`, so models of the same block layout see the same noise. Causal models stream
    with the official 50-frame first window; INFP* samples its bidirectional windows."""
    order = sorted(range(len(clips)), key=lambda i: clips[i]["frames"])
    groups = [[i for i in order if clips[i]["frames"] == n] for n in sorted({c["frames"] for c in clips})]
    groups = [g[j:j + batch] for g in groups for j in range(0, len(g), batch)]
    out: list = [None] * len(clips)
    g = torch.Generator().manual_seed(seed)
    for group in tqdm(groups, desc=f"generate {model.cfg.name}", disable=not progress):
        T = clips[group[0]]["frames"]
        def stack(key, group=group):
            return torch.from_numpy(np.stack([clips[i][key] for i in group]))
        avatar, user = model.audio(stack("avatar_wave"), T), model.audio(stack("user_wave"), T)
        um = stack("user_motion") if user_motion else torch.zeros(len(group), T, model.cfg.latent_dim)
        if kind == "infp":
            m = generate_windowed(model.generator, stack("ref"), avatar, user, um, nfe=nfe, generator=g)
        else:
            m = generate(model.generator, stack("ref"), avatar, user, um, nfe=nfe, generator=g, warmup="window")
        for i, motion in zip(group, m):
            out[i] = motion.numpy()
    return out


# ------------------------------------------------------------------------------------------------ videos
@torch.no_grad()
def decode_motion(ae, ref_frame: np.ndarray, motion: np.ndarray, batch: int = 64) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of motion latents (T, D): frame t = Dec(z_S + m_t, feats_S), with z_S and
    feats_S the identity latent and feature maps of the avatar's reference frame (paper Alg. 1 line 10)."""
    from afcore.data import frames_to_images, images_to_frames

    z_s, feats = ae.encode_identity(frames_to_images(ref_frame[None]))
    m = torch.as_tensor(np.asarray(motion), dtype=torch.float32)
    out = []
    for i in range(0, len(m), batch):
        n = len(m[i:i + batch])
        out.append(images_to_frames(ae.decode(z_s + m[i:i + batch], [f.expand(n, -1, -1, -1) for f in feats])))
    return np.concatenate(out)


def side_by_side(videos: list[np.ndarray], scale: int = 2) -> np.ndarray:
    """Concatenate equal-length (T, H, W, 3) videos left to right, upscaled `scale`x (nearest)."""
    T = min(len(v) for v in videos)
    row = np.concatenate([v[:T] for v in videos], axis=2)
    return row.repeat(scale, axis=1).repeat(scale, axis=2)


# ------------------------------------------------------------------------------------------------ stage 0 figures
def _tile(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """rows of (N, H, W, 3) uint8 -> one (R (H + pad), N (W + pad), 3) image with white gutters."""
    R, (N, H, W, _) = len(rows), rows[0].shape
    img = np.full((R * (H + pad), N * (W + pad), 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for n, tile in enumerate(row):
            img[r * (H + pad):r * (H + pad) + H, n * (W + pad):n * (W + pad) + W] = tile
    return img


def frame_strip(videos: list[np.ndarray], labels: list[str], every: int = 12, fps: int = 25):
    """A figure to check videos by eye without playing them: one row per (T, H, W, 3) video, a frame every
    `every` frames, rows labelled, columns marked with their time."""
    import matplotlib.pyplot as plt

    T = min(len(v) for v in videos)
    strip = _tile([np.asarray(v[:T:every]) for v in videos])
    n, (H, W) = len(range(0, T, every)), videos[0].shape[1:3]
    fig, ax = plt.subplots(figsize=(min(2 + n * W / 60, 24), 0.6 + len(videos) * H / 60))
    ax.imshow(strip)
    ax.set_yticks([(r + 0.5) * (H + 2) for r in range(len(videos))], labels)
    ax.set_xticks([(k + 0.5) * (W + 2) for k in range(n)], [f"{k * every / fps:.1f}" for k in range(n)], fontsize=7)
    ax.set_xlabel("time (s)")
    return fig


@torch.no_grad()
def reconstruction_grid(ae, corpus_dir, split: str = "test", n: int = 6, seed: int = 1) -> np.ndarray:
    """Three rows: source frames, driving frames, Dec(z_S + m_D, feats_S) of held-out identities."""
    from afcore.data import FramePairs, images_to_frames

    pairs = FramePairs(corpus_dir, split, pairs_per_clip=n, seed=seed)
    pick = np.linspace(0, len(pairs) - 1, n).astype(int)
    src = torch.stack([pairs[int(i)]["source"] for i in pick])
    drv = torch.stack([pairs[int(i)]["driving"] for i in pick])
    return _tile([images_to_frames(src), images_to_frames(drv), images_to_frames(ae.reconstruct(src, drv))])


@torch.no_grad()
def traversal_grid(ae, frame: np.ndarray, lambda_std: np.ndarray, steps: int = 5, span: float = 2.0) -> np.ndarray:
    """One row per motion direction k: Dec(z + Q (lambda + c sigma_k e_k)) for c in [-span, span], with z, lambda
    the frame's own latent and motion coefficients and sigma_k the spread of lambda_k over the train split."""
    from afcore.data import frames_to_images, images_to_frames

    z, feats = ae.encode_identity(frames_to_images(frame[None]))
    Q, lam = ae.directions(), ae.lambda_head(z)  # (D, K), (1, K)
    coeffs = torch.linspace(-span, span, steps)
    rows = []
    for k in range(Q.shape[1]):
        delta = torch.zeros(steps, Q.shape[1])
        delta[:, k] = coeffs * float(lambda_std[k])
        zk = z + (lam + delta) @ Q.T  # the frame's own reconstruction z + Q lambda, moved along direction k
        rows.append(images_to_frames(ae.decode(zk, [f.expand(steps, -1, -1, -1) for f in feats])))
    return _tile(rows)


@torch.no_grad()
def autoencoder_lpips(ae, corpus_dir, split: str = "test", pairs: int = 64, seed: int = 1) -> dict:
    """LPIPS (AlexNet, real weights) of cross-frame reconstructions of held-out identities, through
    eval.extractors.quality.LPIPSAlex when it is available; otherwise {"lpips": None, "why": ...}."""
    from afcore.data import FramePairs

    try:
        from eval.extractors.quality import LPIPSAlex
        lpips = LPIPSAlex()
    except Exception as err:  # noqa: BLE001 -- optional extractor: say why, never fail the notebook
        return {"lpips": None, "why": f"{type(err).__name__}: {err}"}
    data = FramePairs(corpus_dir, split, pairs_per_clip=max(1, pairs // 4), seed=seed)
    items = [data[i] for i in range(min(pairs, len(data)))]
    src, drv = torch.stack([x["source"] for x in items]), torch.stack([x["driving"] for x in items])
    recon = ae.reconstruct(src, drv).clamp(-1, 1)
    d = lpips((recon + 1) / 2, (drv + 1) / 2)
    return {"lpips": float(np.mean(d)), "pairs": len(d), "extractor": lpips.card}


def latents_corpus_for(checkpoint, corpus_dir) -> tuple[Path, str | None]:
    """The corpus folder whose latents are in the checkpoint's own latent space, and why it cannot be used (or
    None): a model trained on oracle latents (03/04 with latents = "oracle") reads the oracle view; one trained on
    an autoencoder's latents needs the corpus encoded with that same autoencoder."""
    space = latent_space_of(checkpoint)
    if space.startswith("oracle"):
        return oracle_latent_corpus(corpus_dir, load_checkpoint(checkpoint)[0].cfg.latent_dim), None
    meta = Path(corpus_dir) / "latents" / "meta.json"
    have = json.loads(meta.read_text()).get("ae_tag") if meta.exists() else None
    if space and have and space != have:
        return Path(corpus_dir), (f"{checkpoint} was trained on latents of autoencoder {space}, but {meta} holds "
                                  f"autoencoder {have}'s: re-encode with `afsuite data latents`")
    return Path(corpus_dir), None


def render_params(corpus_dir, identity: str, params: np.ndarray) -> np.ndarray:
    """Frames (T, S, S, 3) uint8 of face parameters drawn by the corpus renderer with an identity's look
    (how oracle-latent motion is shown: the autoencoder cannot decode it)."""
    from data_prep.schema import PARAM_COLUMNS, POSE_LIMITS
    from data_prep.synth.identity import Appearance
    from data_prep.synth.render import FaceRenderer

    corpus = Corpus(corpus_dir)
    row = corpus.identities.set_index("identity").loc[identity]
    look = Appearance(**{k[5:]: tuple(int(x) for x in v) if isinstance(v, (list, np.ndarray)) else v
                         for k, v in row.items() if k.startswith("look_")})
    lo = np.array([-POSE_LIMITS.get(c, 1.0) if c in POSE_LIMITS or c.startswith("gaze") else 0.0 for c in PARAM_COLUMNS])
    hi = np.array([POSE_LIMITS.get(c, 1.0) for c in PARAM_COLUMNS])
    return FaceRenderer(look, corpus.meta["size"]).render(np.clip(params, lo, hi).astype(np.float32))


def export_checkpoint(src, dst, latent_corpus) -> Path:
    """Model-only copy of a training checkpoint that records which latent space it was trained in
    (`latent_space` = the ae_tag in the corpus latents' meta.json: an autoencoder digest, or "oracle-params-..."),
    so that a consumer can refuse to decode it with the wrong autoencoder."""
    from afcore.model import save_checkpoint

    model, state = load_checkpoint(src)
    meta = json.loads((Path(latent_corpus) / "latents" / "meta.json").read_text())
    return save_checkpoint(dst, model, latent_space=meta["ae_tag"], stage=state.get("stage"), step=state.get("step"))


def image_path_params(ae, extractor, clips: list[dict], latents: list, corpus_dir) -> list[np.ndarray]:
    """The paper's route to face parameters: decode each clip's motion with the autoencoder (reference = the
    avatar's first frame) and run an image-based face-parameter network (eval.extractors) on the frames."""
    corpus = Corpus(corpus_dir)
    out = []
    for c, m in zip(clips, latents):
        ref = np.asarray(corpus.stream(c["conversation_id"], c["person"])["frames"][c["start_frame"]])
        out.append(extractor(decode_motion(ae, ref, m)))
    return out
