"""Load the official Avatar Forcing FlowTransformer weights (`flow_transformer.pth`) into afcore.

The official loader copies, by silent name intersection, whatever matches. Ours is strict: every official
key is mapped or listed in IGNORED with the reason, every afcore parameter must be filled, and the
official masks stored in the checkpoint are checked against the mask our config builds.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .config import ModelConfig
from .dfot import FlowTransformer, attention_mask, band_mask

# official (module-local) name -> afcore name; applied in order, first match wins.
FLOW_KEY_MAP = [
    (r"x_embedder\.proj\.", "input_proj."),
    (r"t_embedder\.mlp\.0\.", "time_embed.fc1."),
    (r"t_embedder\.mlp\.2\.", "time_embed.fc2."),
    (r"c_embedder\.motion_embedder\.", "cond_encoder.motion_mlp."),
    (r"c_embedder\.dual_modal_attn\.", "cond_encoder.user_attn."),
    (r"c_embedder\.ln1\.", "cond_encoder.user_norm."),
    (r"c_embedder\.user_agent_attn\.", "cond_encoder.avatar_attn."),
    (r"c_embedder\.ln2\.", "cond_encoder.avatar_norm."),
    (r"c_embedder\.to_cond_user\.", "cond_encoder.to_hidden."),
    (r"adaLN_modulation\.1\.", "shared_adaln."),
    (r"blocks\.(\d+)\.attn\.qkv\.", r"blocks.\1.self_attn.qkv."),
    (r"blocks\.(\d+)\.attn\.proj\.", r"blocks.\1.self_attn.out."),
    (r"blocks\.(\d+)\.cross_attn\.proj\.", r"blocks.\1.cross_attn.out."),
    (r"blocks\.(\d+)\.cross_attn\.(q|kv)\.", r"blocks.\1.cross_attn.\2."),
    (r"blocks\.(\d+)\.mlp\.(fc1|fc2)\.", r"blocks.\1.mlp.\2."),
    (r"final_layer\.adaLN_modulation\.1\.", "final_adaln."),
    (r"final_layer\.linear\.", "out_proj."),
]
# Buffers the official module saves; we rebuild them from the config and check they agree.
MASK_BUFFERS = ("block_bidir_causal_lookahead_mask", "alignment_mask")
PREFIX = "flow_transformer."


def map_official_key(key: str) -> str | None:
    for pattern, repl in FLOW_KEY_MAP:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key, count=1)
    return None


def _check_masks(state: dict, cfg: ModelConfig, source: str):
    pos = torch.arange(cfg.window)
    ours = {"block_bidir_causal_lookahead_mask": attention_mask(cfg.mask, pos, pos, cfg.block, cfg.lookahead),
            "alignment_mask": band_mask(pos, pos, cfg.cross_band)}
    for name in MASK_BUFFERS:
        if name in state and not torch.equal(state[name].bool(), ours[name]):
            raise ValueError(f"{source}: the checkpoint's {name} differs from the mask of config {cfg.name!r} "
                             f"(mask={cfg.mask!r}, lookahead={cfg.lookahead}, band={cfg.cross_band}); "
                             "load it into a config whose mask matches the one it was trained with")


def convert_official_state(state: dict, cfg: ModelConfig, source: str = "checkpoint") -> dict:
    """Official FlowTransformer state dict (with or without the `flow_transformer.` prefix; other
    prefixes such as `audio_encoder.` are skipped) -> afcore FlowTransformer state dict."""
    local = {}
    for key, value in state.items():
        if key.startswith(PREFIX):
            local[key[len(PREFIX):]] = value
        elif "." in key and key.split(".", 1)[0] in ("audio_encoder", "motion_autoencoder", "wav2vec2"):
            continue  # other modules of the same file: loaded by their own loaders
        else:
            local[key] = value
    _check_masks(local, cfg, source)
    converted, unknown = {}, []
    for key, value in local.items():
        if key in MASK_BUFFERS:
            continue
        new = map_official_key(key)
        if new is None:
            unknown.append(key)
        else:
            converted[new] = value
    if unknown:
        raise KeyError(f"{source}: {len(unknown)} official keys have no afcore counterpart: {unknown[:8]}")
    return converted


def load_official_flow_transformer(model: FlowTransformer, state_or_path, strict: bool = True) -> FlowTransformer:
    source = str(state_or_path) if isinstance(state_or_path, (str, Path)) else "state dict"
    state = read_state(state_or_path) if isinstance(state_or_path, (str, Path)) else state_or_path
    converted = convert_official_state(state, model.cfg, source)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if strict and (missing or unexpected):
        raise KeyError(f"{source}: afcore parameters not filled: {missing[:8]}; keys afcore does not have: "
                       f"{unexpected[:8]} (is the config right? compare `afsuite info` with the checkpoint)")
    return model


def read_state(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint. Put the official flow_transformer.pth there "
                                "(see the official repo's download_weights.sh) or pass the right path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_official_release(flow_transformer_path, wav2vec2_dir, motion_autoencoder_path=None, cfg: ModelConfig | None = None):
    """The released model in afcore: `flow_transformer.pth` (generator + audio projection), the wav2vec2-base
    folder, and optionally `motion_autoencoder.pth`. Returns (AvatarForcing, MotionAutoencoder | None)."""
    from .audio import load_audio_projection
    from .config import get_config
    from .model import AvatarForcing
    from .motion_ae import MotionAutoencoder, load_official_motion_ae

    cfg = cfg or get_config("paper", audio_encoder="wav2vec2", wav2vec2_dir=str(wav2vec2_dir))
    model = AvatarForcing(cfg)
    state = read_state(flow_transformer_path)
    load_official_flow_transformer(model.generator, state)
    load_audio_projection(model.audio.audio_projection, state)
    autoencoder = None
    if motion_autoencoder_path is not None:
        autoencoder = MotionAutoencoder(cfg)
        load_official_motion_ae(autoencoder, read_state(motion_autoencoder_path))
        autoencoder.eval()
    return model.eval(), autoencoder
