"""The INFP*-style bidirectional windowed generator, sampled offline (the talking-only baseline streams
through the ordinary Session: it is a causal model whose conditioner reads avatar audio only).

INFP* must buffer a whole 75-frame window (3 s) before it can generate it: its algorithmic latency is the
window, against one 10-frame block for Avatar Forcing.
"""
from __future__ import annotations

import torch

from .dfot import FlowTransformer
from .flow import cfg_combine, denoising_steps, euler_step
from .session import _cfg_branches, _pad_to


@torch.no_grad()
def generate_windowed(model: FlowTransformer, ref, avatar_audio, user_audio, user_motion, *, nfe: int | None = None,
                      w_audio: float | None = None, w_user: float | None = None, generator=None, noise=None):
    """Whole clips (B, T, C) -> (B, T, D). Window w of `cfg.window` frames is denoised jointly with
    bidirectional attention after the last `cfg.context_frames` generated frames as clean context."""
    cfg = model.cfg
    nfe, w_audio = nfe or cfg.nfe, cfg.w_audio if w_audio is None else w_audio
    w_user = cfg.w_user if w_user is None else w_user
    B, T, _ = avatar_audio.shape
    ref3, out, start, i = ref.repeat(3, 1), [], 0, 0
    steps = denoising_steps(nfe)
    while start < T:
        ctx = min(cfg.context_frames, start)
        streams = [_pad_to(s[:, start - ctx:], ctx + cfg.window) for s in (avatar_audio, user_audio, user_motion)]
        fresh = noise[i] if noise is not None else torch.randn(B, cfg.window, cfg.latent_dim, generator=generator,
                                                               device=ref.device)
        x = torch.cat([torch.cat(out, 1)[:, start - ctx:start], fresh], 1) if ctx else fresh
        cond3 = model.encode_conditions(*_cfg_branches(*streams))
        L = x.shape[1]
        for t_cur, t_next in zip(steps[:-1], steps[1:]):
            t_tok, t_nxt = (torch.full((B, L), float(t), device=x.device) for t in (t_cur, t_next))
            t_tok[:, :ctx], t_nxt[:, :ctx] = 0, 0
            v3 = model(x.repeat(3, 1, 1), t_tok.repeat(3, 1), cond3, ref3)
            x = euler_step(x, cfg_combine(*v3.chunk(3), w_audio, w_user), t_tok, t_nxt)
        out.append(x[:, ctx:])
        start, i = start + cfg.window, i + 1
    return torch.cat(out, 1)[:, :T]
