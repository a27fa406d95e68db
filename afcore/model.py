"""The trained model of stages 1-2 (audio encoder + DFoT generator), its checkpoint format, and the
waveform-level stream a live system drives. The motion autoencoder (stage 0) is separate and frozen."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from .audio import build_audio_encoder
from .config import ModelConfig
from .dfot import FlowTransformer
from .io import torch_save
from .objectives import Batch
from .session import Session


class AvatarForcing(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.cond_dim != cfg.latent_dim:
            raise ValueError(f"config {cfg.name!r}: user motion latents ({cfg.latent_dim}) feed the condition "
                             f"space ({cfg.cond_dim}); the two must be equal, as in the official model")
        self.cfg = cfg
        self.audio = build_audio_encoder(cfg)  # shared by avatar and user audio
        self.generator = FlowTransformer(cfg)

    def batch(self, motion, avatar_wave, user_wave, user_motion, ref) -> Batch:
        """Waveforms (B, 640 T) at 16 kHz and latents (B, T, D) -> a training Batch of condition streams."""
        T = motion.shape[1]
        return Batch(motion, self.audio(avatar_wave, T), self.audio(user_wave, T), user_motion, ref)


def save_checkpoint(path, model: AvatarForcing, **extra) -> Path:
    """Atomic; carries the config so that `load_checkpoint` needs nothing else."""
    return torch_save({"config": asdict(model.cfg), "model": model.state_dict(), **extra}, path)


def load_checkpoint(path, map_location="cpu") -> tuple[AvatarForcing, dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint here; train one with `afsuite train` or pass the right path")
    state = torch.load(path, map_location=map_location, weights_only=False)
    if "config" not in state or "model" not in state:
        raise ValueError(f"{path}: not an afcore checkpoint (no 'config'/'model'); official weights load with "
                         "afcore.official.load_official_flow_transformer")
    model = AvatarForcing(ModelConfig(**state["config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state


def latent_space_of(checkpoint) -> str:
    """The latent space a generator checkpoint was trained in: an autoencoder digest, "oracle-params-...", or ""."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return str(state.get("latent_space") or state.get("ae_tag") or ("oracle" if state.get("latents") == "oracle" else ""))


class AvatarStream:
    """Live driver: 400 ms of both audio tracks and the user's motion latents in, the avatar's motion out.

    With the embedded mel encoder the audio is encoded incrementally (causal). wav2vec2 does not stream;
    with it each block's audio features come from the audio of that block alone, an approximation that
    the official offline pipeline does not make (it encodes the whole clip at once)."""

    def __init__(self, model: AvatarForcing, ref: torch.Tensor, **session_kw):
        self.model = model
        self.session = Session(model.generator, ref, **session_kw)
        streaming = getattr(model.audio, "streaming", False)
        self._audio_state = [model.audio.init_stream(ref.shape[0]) for _ in range(2)] if streaming else None

    def _encode(self, which: int, wave: torch.Tensor, frames: int) -> torch.Tensor:
        if self._audio_state is None:
            return self.model.audio(wave, frames)
        feats, self._audio_state[which] = self.model.audio.encode_chunk(wave, self._audio_state[which])
        return feats

    @torch.no_grad()
    def step(self, avatar_wave, user_wave, user_motion, noise=None):
        """avatar_wave, user_wave (B, 640 n); user_motion (B, n, D) with n = session.next_block_frames."""
        n = self.session.next_block_frames
        expected = n * self.model.cfg.samples_per_frame
        for name, w in (("avatar audio", avatar_wave), ("user audio", user_wave)):
            if w.shape[-1] != expected:
                raise ValueError(f"{name}: this block needs {expected} samples ({n} frames at 16 kHz), got {w.shape[-1]}")
        return self.session.step(self._encode(0, avatar_wave, n), self._encode(1, user_wave, n), user_motion, noise)
