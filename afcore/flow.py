"""Flow matching with diffusion forcing: the scheduler side, kept apart from the model (diffusers-style).

Convention (official code): t in [0, 1000], 0 = clean, 1000 = noise; sigma = t / 1000 looked up in a
1000-entry float32 table (shift 1, sigma_min 0); x_t = (1 - sigma) x0 + sigma eps; target v = eps - x0.
The paper writes the same path with t_paper = 1 - sigma (t = 1 clean) and v_paper = x1 - x0 = -v.
"""
from __future__ import annotations

import torch

NUM_TRAIN_TIMESTEPS = 1000
SIGMAS = torch.linspace(1.0, 0.0, NUM_TRAIN_TIMESTEPS)  # float32, as the official table
TIMESTEPS = SIGMAS * NUM_TRAIN_TIMESTEPS


def sigma_of(t: torch.Tensor) -> torch.Tensor:
    """Nearest table entry, resolved in float32 like the official solver (t = 500 -> index 499)."""
    idx = (TIMESTEPS.to(t.device)[None, :] - t.float().reshape(-1, 1)).abs().argmin(dim=1)
    return SIGMAS.double().to(t.device)[idx].reshape(t.shape)


def denoising_steps(nfe: int) -> torch.Tensor:
    """Official list linspace(1000, 0, nfe - 1): nfe - 2 Euler updates, one wasted evaluation at t = 0
    (skipped here) and one clean pass that writes the KV cache: nfe transformer calls per block."""
    if nfe < 3:
        raise ValueError(f"nfe must be >= 3 (got {nfe}): the step list is linspace(1000, 0, nfe - 1)")
    return torch.linspace(float(NUM_TRAIN_TIMESTEPS), 0.0, nfe - 1)


def euler_step(x: torch.Tensor, v: torch.Tensor, t_cur: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """x (B, L, D), v (B, L, D), per-token t (B, L). x + (sigma_next - sigma_cur) v in float64; tokens whose
    current and next t are both 0 (clean context) pass through untouched."""
    d_sigma = (sigma_of(t_next) - sigma_of(t_cur))[..., None]  # (B, L, 1)
    out = (x.double() + d_sigma * v.double()).to(x.dtype)
    frozen = ((t_cur == 0) & (t_next == 0))[..., None]
    return torch.where(frozen, x, out)


def cfg_combine(v_uncond, v_audio, v_user, w_audio: float, w_user: float) -> torch.Tensor:
    """Paper Eq. 14: v = v(0,0) + w_a [v(a,0) - v(0,0)] + w_u [v(0,u) - v(0,0)]."""
    return v_uncond + w_audio * (v_audio - v_uncond) + w_user * (v_user - v_uncond)


# ------------------------------------------------------------------------------------------------
# Training side
# ------------------------------------------------------------------------------------------------


def sample_block_timesteps(batch: int, frames: int, block: int, generator=None) -> torch.Tensor:
    """Diffusion forcing: one independent noise level per block, shared by its frames. (B, L) raw t."""
    n_blocks = -(-frames // block)
    idx = torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch, n_blocks), generator=generator)
    return TIMESTEPS[idx].repeat_interleave(block, dim=1)[:, :frames]  # on the CPU: move with .to()


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    sigma = sigma_of(t).to(x0.dtype)[..., None]
    return (1 - sigma) * x0 + sigma * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def drop_conditions(avatar_audio, user_audio, user_motion, ref, p: float, generator=None):
    """Condition dropout for CFG (10% each, independently per sample): zeros in the condition space.
    Returns new tensors; the official code zeroes the caller's tensors in place."""
    keep = (torch.rand(4, avatar_audio.shape[0], generator=generator) >= p).to(avatar_audio.dtype)
    return (avatar_audio * keep[0, :, None, None], user_audio * keep[1, :, None, None],
            user_motion * keep[2, :, None, None], ref * keep[3, :, None])
