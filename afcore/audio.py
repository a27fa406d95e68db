"""Audio encoders: 16 kHz mono waveform (B, N) -> per-frame features (B, T, cond_dim) at 25 fps.

Two encoders share one interface, `forward(wave, num_frames)`; `build_audio_encoder(cfg)` picks one by
`cfg.audio_encoder`. Both fit the waveform to exactly 640*T samples first: shorter is replicate-padded at the
end (the official behaviour), longer is cut.

- `MelAudioEncoder` ("mel", the embedded default): log-mel from torch.stft framed causally, so frame t sees
  only samples < 640*(t+1), then a small causal conv net. It streams: `init_stream` / `encode_chunk` give the
  same features as one whole-clip pass, because `forward` *is* one chunk through the same code.
- `Wav2Vec2AudioEncoder` ("wav2vec2", the paper's path): a frozen transformers Wav2Vec2Model read from a local
  folder (never downloaded), run the way the official code runs it, then the trained `audio_projection`
  Linear(layers*hidden -> cond_dim) -> LayerNorm -> SiLU. Whole-clip and bidirectional, so it does not stream.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from afcore.config import ModelConfig

WAV2VEC2_HINT = ("download facebook/wav2vec2-base-960h (config.json plus model.safetensors or pytorch_model.bin) "
                 "on a machine with internet, copy that folder to this machine, and set "
                 "ModelConfig.wav2vec2_dir to its path (or use audio_encoder='mel', which needs no weights)")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


# ------------------------------------------------------------------------------------------- shared input handling
def check_wave(wave: torch.Tensor, allow_empty: bool = False) -> torch.Tensor:
    """Validate a batch of mono float waveforms (B, N) at 16 kHz; return it unchanged."""
    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"waveform must be a torch.Tensor (B, N), got {type(wave).__name__}")
    if wave.dim() != 2:
        hint = ("it looks multi-channel: mix down to mono first, e.g. wave.mean(dim=1)" if wave.dim() == 3
                else "add a batch axis with wave[None]" if wave.dim() == 1 else "pass (batch, samples)")
        raise ValueError(f"waveform must be mono with shape (B, N), got shape {tuple(wave.shape)}; {hint}")
    if not wave.is_floating_point():
        raise TypeError(f"waveform must be float in [-1, 1], got {wave.dtype}; "
                        "convert int16 PCM with wave.float() / 32768")
    if wave.shape[1] == 0 and not allow_empty:
        raise ValueError("waveform is empty (0 samples)")
    if not torch.isfinite(wave).all():
        bad = (~torch.isfinite(wave)).nonzero()[0].tolist()
        raise ValueError(f"waveform contains NaN or Inf (first at batch {bad[0]}, sample {bad[1]}); "
                         "clean or re-decode the audio before encoding")
    return wave


def fit_to_frames(wave: torch.Tensor, num_frames: int, samples_per_frame: int) -> torch.Tensor:
    """(B, N) -> (B, num_frames*samples_per_frame): replicate the last sample to pad, cut what is too long."""
    target = num_frames * samples_per_frame
    if wave.shape[1] < target:
        wave = torch.cat([wave, wave[:, -1:].expand(-1, target - wave.shape[1])], dim=1)
    return wave[:, :target]


def resolve_num_frames(wave: torch.Tensor, num_frames: int | None, samples_per_frame: int) -> int:
    """num_frames if given, else the official T for one stream: ceil(samples * fps / sample_rate)."""
    T = math.ceil(wave.shape[1] / samples_per_frame) if num_frames is None else int(num_frames)
    if T < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return T


# ------------------------------------------------------------------------------------------- (a) mel, streaming
def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None):
    """HTK-scale triangular filters, (n_freqs, n_mels), unnormalised (the torchaudio MelSpectrogram default)."""
    hz_to_mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)
    f_max = sample_rate / 2 if f_max is None else f_max
    bin_hz = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    edges_mel = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    edges_hz = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)  # (n_mels + 2,)
    width = edges_hz.diff()  # (n_mels + 1,)
    offset = edges_hz[None, :] - bin_hz[:, None]  # (n_freqs, n_mels + 2)
    rising = -offset[:, :-2] / width[:-1]
    falling = offset[:, 2:] / width[1:]
    return torch.minimum(rising, falling).clamp(min=0).float()


class CausalConvBlock(nn.Module):
    """x + Conv1d(SiLU(LN(x))) over time, padded on the left only so frame t never sees t+1."""

    def __init__(self, width: int, kernel: int, dilation: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel, dilation=dilation)
        self.history = (kernel - 1) * dilation  # past conv inputs a new frame needs

    def forward(self, x, past):  # x (B, T, W), past (B, history, W) -> (B, T, W), new past
        h = torch.cat([past, F.silu(self.norm(x))], dim=1)  # (B, history + T, W)
        y = self.conv(h.transpose(1, 2)).transpose(1, 2)  # (B, T, W)
        return x + y, h[:, h.shape[1] - self.history:]


class MelAudioEncoder(nn.Module):
    """Causal log-mel + causal conv encoder; one 640-sample video frame = 4 stacked 10 ms mel frames."""

    streaming = True

    def __init__(self, cfg: ModelConfig, n_fft: int = 400, hop: int = 160, kernel: int = 3,
                 dilations: tuple[int, ...] = (1, 2, 4), log_eps: float = 1e-6):
        super().__init__()
        self.samples_per_frame = cfg.samples_per_frame
        if self.samples_per_frame % hop:
            raise ValueError(f"samples per frame ({self.samples_per_frame}) must be a multiple of the mel hop ({hop})")
        self.n_fft, self.hop, self.log_eps = n_fft, hop, log_eps
        self.mels_per_frame = self.samples_per_frame // hop
        # Each STFT window ends on a hop boundary: window j covers samples [hop*(j+1) - n_fft, hop*(j+1)), so the
        # last of a video frame's 4 windows ends exactly at 640*(t+1). The n_fft - hop samples before the clip are 0.
        self.context = n_fft - hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel_fb", mel_filterbank(n_fft // 2 + 1, cfg.n_mels, cfg.sample_rate), persistent=False)
        self.inp = nn.Linear(self.mels_per_frame * cfg.n_mels, cfg.audio_hidden)
        self.blocks = nn.ModuleList(CausalConvBlock(cfg.audio_hidden, kernel, d) for d in dilations)
        self.out = nn.Sequential(nn.Linear(cfg.audio_hidden, cfg.cond_dim), nn.LayerNorm(cfg.cond_dim), nn.SiLU())
        self.cond_dim, self.hidden = cfg.cond_dim, cfg.audio_hidden

    def log_mel(self, wave):  # (B, context + 640*T) -> (B, 4*T, n_mels)
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
        power = spec.real.square() + spec.imag.square()  # (B, n_freqs, 4*T)
        mel = torch.einsum("bfs,fm->bsm", power, self.mel_fb)
        return torch.log(mel + self.log_eps)  # eps: silence gives log(eps), never -inf

    def init_stream(self, batch_size: int = 1) -> dict:
        p = self.inp.weight
        return {"samples": p.new_zeros(batch_size, self.context),  # un-encoded tail, incl. STFT left context
                "conv": [p.new_zeros(batch_size, b.history, self.hidden) for b in self.blocks]}

    def encode_chunk(self, wave_chunk: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Append samples (B, n) of any length; return features of every newly completed frame (B, t_new, D)."""
        check_wave(wave_chunk, allow_empty=True)
        if wave_chunk.shape[0] != state["samples"].shape[0]:
            raise ValueError(f"chunk batch {wave_chunk.shape[0]} != stream batch {state['samples'].shape[0]}; "
                             "start the stream with init_stream(batch_size=...) matching the chunks")
        buf = torch.cat([state["samples"], wave_chunk.to(state["samples"])], dim=1)
        t_new = (buf.shape[1] - self.context) // self.samples_per_frame
        used = t_new * self.samples_per_frame
        if t_new == 0:
            return buf.new_zeros(buf.shape[0], 0, self.cond_dim), {"samples": buf, "conv": state["conv"]}
        B = buf.shape[0]
        x = self.log_mel(buf[:, : self.context + used]).reshape(B, t_new, -1)  # (B, t_new, 4*n_mels)
        x = self.inp(x)  # (B, t_new, hidden)
        conv_state = []
        for block, past in zip(self.blocks, state["conv"]):
            x, past = block(x, past)
            conv_state.append(past)
        return self.out(x), {"samples": buf[:, used:], "conv": conv_state}

    def forward(self, wave: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:  # (B, N) -> (B, T, D)
        wave = check_wave(wave)
        T = resolve_num_frames(wave, num_frames, self.samples_per_frame)
        feats, _ = self.encode_chunk(fit_to_frames(wave, T, self.samples_per_frame), self.init_stream(wave.shape[0]))
        return feats


# ------------------------------------------------------------------------------------------- (b) wav2vec2, official
def make_audio_projection(in_features: int, cond_dim: int) -> nn.Sequential:
    """The official `audio_projection`: Linear -> LayerNorm(eps 1e-5) -> SiLU; indices 0/1 match its keys."""
    return nn.Sequential(nn.Linear(in_features, cond_dim), nn.LayerNorm(cond_dim, eps=1e-5), nn.SiLU())


def load_audio_projection(projection: nn.Sequential, source) -> nn.Sequential:
    """Copy official projection weights into `projection`.

    `source` is a state dict or a .pth/.pt/.safetensors path (e.g. the official flow_transformer.pth). Keys may
    carry the AvatarForcing-level prefix `audio_encoder.` or not; unrelated keys are ignored.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"audio projection checkpoint not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            source = load_file(path)
        else:
            source = torch.load(path, map_location="cpu", weights_only=True)
    found = {}
    for key in ("0.weight", "0.bias", "1.weight", "1.bias"):
        for prefix in ("audio_encoder.audio_projection.", "audio_projection."):
            if prefix + key in source:
                found[key] = source[prefix + key]
                break
        else:
            raise KeyError(f"no audio projection weight '{key}' in the checkpoint; expected keys "
                           f"'audio_encoder.audio_projection.{key}' (official) or 'audio_projection.{key}'")
    own = projection.state_dict()
    for key, value in found.items():
        if value.shape != own[key].shape:
            raise ValueError(f"audio_projection.{key} has shape {tuple(value.shape)} in the checkpoint but "
                             f"{tuple(own[key].shape)} here; the Linear input must be wav2vec2 layers*hidden "
                             "(12*768 = 9216 for wav2vec2-base) and the output cond_dim")
    projection.load_state_dict(found)
    return projection


def load_wav2vec2(folder: str | os.PathLike | None):
    """A frozen transformers Wav2Vec2Model from a local HF folder (config.json + weights). Never downloads."""
    if folder is None:
        raise FileNotFoundError(f"audio_encoder='wav2vec2' but ModelConfig.wav2vec2_dir is not set: {WAV2VEC2_HINT}")
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"wav2vec2 folder {folder} does not exist: {WAV2VEC2_HINT}")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"wav2vec2 folder {folder} has no config.json: {WAV2VEC2_HINT}")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(f"wav2vec2 folder {folder} has no weights (looked for {', '.join(WEIGHT_FILES)}): "
                                f"{WAV2VEC2_HINT}")
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config.from_pretrained(folder, local_files_only=True)
    if config.model_type != "wav2vec2":
        raise ValueError(f"{folder}/config.json is a {config.model_type!r} model, expected 'wav2vec2': {WAV2VEC2_HINT}")
    if config.do_stable_layer_norm:
        raise ValueError(f"{folder} holds a stable-layer-norm wav2vec2 (the large/lv60 layout); this encoder runs "
                         "the wav2vec2-base layout the official code uses")
    # Hub folders store the positional-conv weight norm as weight_g/weight_v; transformers 5.x renames them to
    # parametrizations.weight.original0/1 on load, so either form works here.
    model, info = Wav2Vec2Model.from_pretrained(folder, config=config, local_files_only=True, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if k != "masked_spec_embed"]  # only used for SpecAugment in training
    if missing or info["mismatched_keys"]:
        raise ValueError(f"wav2vec2 weights in {folder} do not fit its config.json: missing {sorted(missing)[:5]}, "
                         f"mismatched {sorted(info['mismatched_keys'])[:5]}; {WAV2VEC2_HINT}")
    return model.eval().requires_grad_(False)


def zero_mean_unit_var(wave: torch.Tensor) -> torch.Tensor:
    """Per-clip normalisation of Wav2Vec2FeatureExtractor (do_normalize=True), applied over the whole clip."""
    mean = wave.mean(dim=1, keepdim=True)
    var = wave.var(dim=1, keepdim=True, unbiased=False)
    return (wave - mean) / torch.sqrt(var + 1e-7)


class Wav2Vec2AudioEncoder(nn.Module):
    """The official audio path: frozen wav2vec2 (all layers stacked) + trained Linear-LayerNorm-SiLU."""

    streaming = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.samples_per_frame = cfg.samples_per_frame
        self.wav2vec2 = load_wav2vec2(cfg.wav2vec2_dir)
        c = self.wav2vec2.config
        self.audio_projection = make_audio_projection(c.num_hidden_layers * c.hidden_size, cfg.cond_dim)
        self.cond_dim = cfg.cond_dim

    def train(self, mode: bool = True):
        super().train(mode)
        self.wav2vec2.eval()  # frozen: its dropout stays off while the projection trains
        return self

    def forward_with_intermediates(self, wave: torch.Tensor, num_frames: int | None = None,
                                   normalize: bool = True) -> dict:
        """Every stage of the official forward, keyed like the parity fixture; 'output' is (B, T, cond_dim).

        normalize=False starts at the official model's input, a waveform the feature extractor already normalised.
        """
        wave = check_wave(wave).float()
        T = resolve_num_frames(wave, num_frames, self.samples_per_frame)
        # Normalise the real samples that get encoded, then pad: the official preprocessing order.
        wave = wave[:, : T * self.samples_per_frame]
        padded = fit_to_frames(zero_mean_unit_var(wave) if normalize else wave, T, self.samples_per_frame)  # (B, 640T)
        w2v = self.wav2vec2
        with torch.no_grad():  # frozen, and the waveform carries no gradient
            cnn = w2v.feature_extractor(padded)  # (B, C, F), F = 2T - 1 at 50 Hz
            # Resample to video rate BEFORE the feature projection, as the official subclass does.
            interp = F.interpolate(cnn, size=T, mode="linear", align_corners=True).transpose(1, 2)  # (B, T, C)
            projected, _ = w2v.feature_projection(interp)  # (B, T, hidden)
            enc = w2v.encoder
            h = enc.dropout(enc.layer_norm(projected + enc.pos_conv_embed(projected)))
            hidden_states = [h]
            for layer in enc.layers:
                h = layer(h)
                h = h[0] if isinstance(h, tuple) else h  # transformers 4.x layers return tuples
                hidden_states.append(h)
        stacked = torch.cat(hidden_states[1:], dim=-1)  # (B, T, layers*hidden), feature = layer*hidden + channel
        out = {"padded_waveform": padded, "cnn_features_50hz": cnn, "interpolated_cnn_features": interp,
               "projected_features": projected, "stacked_hidden": stacked,
               "output": self.audio_projection(stacked)}  # (B, T, cond_dim)
        out.update({f"hidden_states.{i}": hs for i, hs in enumerate(hidden_states)})
        return out

    def forward(self, wave: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:  # (B, N) -> (B, T, D)
        """Raw 16 kHz audio in [-1, 1]; normalised per clip here, like the official Wav2Vec2FeatureExtractor."""
        return self.forward_with_intermediates(wave, num_frames)["output"]


def build_audio_encoder(cfg: ModelConfig) -> nn.Module:
    if cfg.audio_encoder == "mel":
        return MelAudioEncoder(cfg)
    if cfg.audio_encoder == "wav2vec2":
        return Wav2Vec2AudioEncoder(cfg)
    raise ValueError(f"unknown audio_encoder {cfg.audio_encoder!r}; choose 'mel' (embedded, streams) or "
                     "'wav2vec2' (the paper's, needs ModelConfig.wav2vec2_dir)")
