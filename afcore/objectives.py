"""Training objectives: diffusion forcing (paper Eq. 6) and its DPO fine-tuning (Eq. 7, App. C Eq. 11-13)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .dfot import FlowTransformer
from .flow import add_noise, drop_conditions, sample_block_timesteps, velocity_target


@dataclass
class Batch:
    """A training window. motion (B, L, D) target latents of the avatar; three condition streams
    (B, L, C); ref (B, D) the reference motion m_S."""
    motion: torch.Tensor
    avatar_audio: torch.Tensor
    user_audio: torch.Tensor
    user_motion: torch.Tensor
    ref: torch.Tensor


def flow_errors(model: FlowTransformer, x0, cond, ref, t, noise) -> torch.Tensor:
    """Per-frame L1 velocity error (B, L): mean over latent dims of |v_theta(x_t, t, c) - (eps - x0)|."""
    v = model(add_noise(x0, noise, t), t, cond, ref)
    return (v - velocity_target(x0, noise)).abs().mean(-1)


def noise_and_times(model: FlowTransformer, x0, generator=None):
    """Per-block independent times; the INFP* context frames are clean (t = 0) and left out of the loss."""
    cfg = model.cfg
    B, L, _ = x0.shape
    t = sample_block_timesteps(B, L - cfg.context_frames, cfg.block, generator).to(x0.device)
    t = F.pad(t, (cfg.context_frames, 0))
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    return t, noise


def diffusion_forcing_loss(model: FlowTransformer, batch: Batch, generator=None, cond_dropout: float | None = None):
    cfg = model.cfg
    p = cfg.cond_dropout if cond_dropout is None else cond_dropout
    aa, ua, um, ref = drop_conditions(batch.avatar_audio, batch.user_audio, batch.user_motion, batch.ref, p, generator)
    t, noise = noise_and_times(model, batch.motion, generator)
    err = flow_errors(model, batch.motion, model.encode_conditions(aa, ua, um), ref, t, noise)
    return err[:, cfg.context_frames:].mean()


def dpo_loss(model: FlowTransformer, reference: FlowTransformer, batch: Batch, loser_motion: torch.Tensor,
             beta: float, generator=None) -> tuple[torch.Tensor, dict]:
    """Diffusion-forcing DPO (paper App. C). Winner = ground-truth motion (batch.motion), loser = a sample
    made without the user conditions; both share the noise and the per-block times and are scored under
    the FULL condition c. With e = L1 velocity error (mean over frames and dims):
        L = -log sigmoid(-beta [(e_w(theta) - e_w(ref)) - (e_l(theta) - e_l(ref))])
    Returns the loss and, to log, the implicit accuracy, the reward margin and the DPO weight sigmoid(-margin):
    the factor on L_DPO's gradient, 0.5 while the policy equals the reference and -> 0 when beta saturates it."""
    t, noise = noise_and_times(model, batch.motion, generator)
    x = torch.cat([batch.motion, loser_motion])  # (2B, L, D): [winners | losers]
    cond = model.encode_conditions(batch.avatar_audio, batch.user_audio, batch.user_motion).repeat(2, 1, 1)
    ref_m, t2, noise2 = batch.ref.repeat(2, 1), t.repeat(2, 1), noise.repeat(2, 1, 1)
    err = flow_errors(model, x, cond, ref_m, t2, noise2).mean(-1)  # (2B,)
    with torch.no_grad():
        ref_cond = reference.encode_conditions(batch.avatar_audio, batch.user_audio, batch.user_motion).repeat(2, 1, 1)
        err_ref = flow_errors(reference, x, ref_cond, ref_m, t2, noise2).mean(-1)
    e_w, e_l = (err - err_ref).chunk(2)
    margin = -beta * (e_w - e_l)  # implicit reward of the winner over the loser
    loss = -F.logsigmoid(margin).mean()
    return loss, {"dpo_loss": loss.item(), "implicit_acc": (margin > 0).float().mean().item(),
                  "reward_margin": margin.mean().item(), "dpo_weight": torch.sigmoid(-margin).mean().item()}
