"""Named model configurations: one dataclass, one registry (DiT/nanoGPT style).

Time base everywhere in the suite: 25 fps video, 16 kHz audio, 640 samples per frame, a block is 10
frames (400 ms), the training window is 50 frames. Flow time follows the official code at the model's
edge: t in [0, num_train_timesteps], 0 = clean, 1000 = pure noise (the paper writes t = 1 for clean;
convert only when printing the paper's notation).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

# The official LIA channel table (encoder and decoder), keyed by resolution in pixels.
OFFICIAL_AE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32}

MASK_KINDS = ("framewise", "blockwise", "lookahead", "block_lookahead", "bidirectional")
CONDITIONERS = ("dual", "guider", "avatar_only")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "paper"
    # --- time base (paper 5.2)
    fps: int = 25
    sample_rate: int = 16000
    # --- motion latent space (LIA-style autoencoder, paper 2.1)
    latent_dim: int = 512  # d: identity latent z_S and motion m = Q.lambda share this space
    motion_dirs: int = 20  # columns of the orthonormal basis Q
    image_size: int = 512
    ae_width: float = 1.0  # multiplier on OFFICIAL_AE_CHANNELS; 1.0 loads official checkpoints
    # --- conditions (dual motion encoder, paper 2.3)
    cond_dim: int = 512  # width of audio features, user motion and the dual encoder
    cond_heads: int = 4  # hard-coded to 4 in the official code
    conditioner: str = "dual"  # dual motion encoder; "guider": INFP*-style audio-only memory banks; "avatar_only"
    guider_bank: int = 64  # INFP* motion-guider memory entries per bank (paper App. D.3)
    # None = official: the dual encoder's attention has no mask and no positions, so inside a window it
    # cannot tell when the user moved (with silent avatar audio every query is the same: a window average).
    # k: frame i of the dual encoder reads user frames i-k .. i+k only (see afcore/README.md).
    cond_band: int | None = None
    # p (needs cond_band): frame i reads i-p .. i+cond_band instead, so a reaction 0.3-0.8 s after the user's
    # cue can be read off the condition itself; a streaming Session keeps the 2p frames of history it needs.
    cond_past: int | None = None
    audio_encoder: str = "mel"  # "mel": embedded, streams; "wav2vec2": transformers model from a local folder
    wav2vec2_dir: str | None = None
    n_mels: int = 80
    audio_hidden: int = 256  # width inside the embedded mel encoder
    # --- causal DFoT generator (paper 2.4)
    hidden: int = 1024
    depth: int = 8
    heads: int = 8
    mlp_ratio: float = 4.0
    window: int = 50  # training window L, frames
    block: int = 10  # frames per block B
    lookahead: int = 2  # l
    cross_band: int = 2  # cross-attention sees condition frames t-2 .. t+2
    mask: str = "lookahead"  # one of MASK_KINDS; "lookahead" is the official token-level mask
    context_frames: int = 0  # clean frames prepended to a window (INFP*: 10); 0 for the causal model
    # --- flow matching and guidance (paper 2.5-2.7)
    num_train_timesteps: int = 1000
    nfe: int = 10  # transformer evaluations per block, as the official sampler counts them
    cond_dropout: float = 0.1  # per condition: avatar audio, user audio, user motion, reference
    w_audio: float = 2.0  # official a_cfg_scale
    w_user: float = 1.0  # official u_cfg_scale

    def __post_init__(self):
        if self.mask not in MASK_KINDS:
            raise ValueError(f"mask must be one of {MASK_KINDS}, got {self.mask!r}")
        if self.conditioner not in CONDITIONERS:
            raise ValueError(f"conditioner must be one of {CONDITIONERS}, got {self.conditioner!r}")
        if self.window % self.block:
            raise ValueError(f"window ({self.window}) must be a multiple of block ({self.block})")
        if self.cond_past is not None and (self.cond_band is None or self.cond_past < 0):
            raise ValueError(f"cond_past ({self.cond_past}) needs cond_band set and must be >= 0")
        if self.hidden % self.heads or self.cond_dim % self.cond_heads:
            raise ValueError("hidden must divide by heads and cond_dim by cond_heads")

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def offset(self) -> int:
        """Clean frames of the previous block re-fed in front of a new block while streaming.

        They are the frames whose attention reaches into the new block: the last l frames for the
        token-level look-ahead, the whole previous block for the block-level reading, none otherwise.
        """
        return {"lookahead": self.lookahead, "block_lookahead": self.block}.get(self.mask, 0)

    @property
    def cond_history(self) -> int:
        """Frames of condition streams before a streaming window that its dual-encoder output depends on: two
        attention hops (user motion -> user audio, avatar audio -> fused user) of cond_past frames each."""
        return 2 * self.cond_past if self.cond_past else 0

    @property
    def cache_len(self) -> int:
        """Self-attention KV cache length M = L - B - l (38 at paper size)."""
        return self.window - self.block - self.offset

    def to_dict(self) -> dict:
        return asdict(self)


PAPER = ModelConfig()

CONFIGS: dict[str, ModelConfig] = {
    "paper": PAPER,
    # Same code path, small numbers: trains on 2 CPU cores, 64x64 faces.
    "tiny": replace(
        PAPER, name="tiny", latent_dim=64, image_size=64, ae_width=0.0625, cond_dim=64,
        n_mels=40, audio_hidden=64, hidden=128, depth=4, heads=4,
    ),
    # The shapes of the official-parity fixtures (../shared/fixtures/official_parity/tiny_config.json).
    "official-tiny": replace(PAPER, name="official-tiny", latent_dim=32, cond_dim=32, hidden=64, depth=2, heads=4,
                             image_size=64),
}


def infp_config(cfg: ModelConfig) -> ModelConfig:
    """INFP*-style baseline (paper App. D.3): bidirectional windows of 75 frames after 10 clean context
    frames, conditioned on the two audio tracks through the motion guider (no user motion)."""
    return replace(cfg, name=f"{cfg.name}-infp", mask="bidirectional", conditioner="guider", window=75, block=75,
                   context_frames=10)


def talking_config(cfg: ModelConfig) -> ModelConfig:
    """Talking-only model (the FLOAT-like row and the DPO loser generator): avatar audio only, causal."""
    return replace(cfg, name=f"{cfg.name}-talking", conditioner="avatar_only")


# `tiny` whose dual encoder reads the user's last 0.8 s (cond_band, cond_past): the live demo's reactive generator.
# At this budget the official encoder's window average is not learned as a reaction (afcore/README.md).
CONFIGS["tiny-reactive"] = replace(CONFIGS["tiny"], name="tiny-reactive", cond_band=2, cond_past=20)

for _base in ("paper", "tiny"):
    CONFIGS[f"{_base}-infp"] = infp_config(CONFIGS[_base])
    CONFIGS[f"{_base}-talking"] = talking_config(CONFIGS[_base])


def get_config(name: str, **overrides) -> ModelConfig:
    if name not in CONFIGS:
        raise KeyError(f"unknown config {name!r}; choose from {sorted(CONFIGS)}")
    return replace(CONFIGS[name], **overrides)
