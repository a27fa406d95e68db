"""The streaming Session: KV cache vs recomputation, causality, guidance, and long sessions."""
import os

import pytest
import torch

from afcore.baselines import generate_windowed
from afcore.config import get_config, infp_config
from afcore.dfot import FlowTransformer
from afcore.session import Session, _cfg_branches, generate


def random_model(cfg, seed=0):
    """Untrained but not trivial: the DiT zero-init would make every output 0 and every test pass."""
    torch.manual_seed(seed)
    model = FlowTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def streams(cfg, frames, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, frames, cfg.cond_dim, generator=g) for _ in range(3)]


def small(**kw):
    return get_config("tiny", hidden=64, depth=2, heads=4, latent_dim=16, cond_dim=16, **kw)


@pytest.mark.parametrize("mask", ["lookahead", "block_lookahead", "framewise", "blockwise"])
@pytest.mark.parametrize("warmup", ["block", "window"])
def test_kv_cache_equals_recomputation(mask, warmup):
    """Reading the rolling cache gives what re-running every earlier clean pass gives, past eviction."""
    cfg = small(mask=mask)
    model = random_model(cfg)
    ref = torch.randn(1, cfg.latent_dim)
    frames = cfg.window + 5 * cfg.block  # long enough that the cache rolls over
    inputs = streams(cfg, frames)
    out = {}
    for cache in (True, False):
        out[cache] = generate(model, ref, *inputs, generator=torch.Generator().manual_seed(3), nfe=4,
                              warmup=warmup, cache=cache)
    assert torch.isfinite(out[True]).all()
    torch.testing.assert_close(out[True], out[False], atol=1e-5, rtol=0)


def test_cache_has_fixed_size_and_official_geometry():
    cfg = small()
    session = Session(random_model(cfg), torch.randn(1, cfg.latent_dim), nfe=3, warmup="window")
    inputs = streams(cfg, cfg.window + 3 * cfg.block)
    session.step(*(s[:, :cfg.window] for s in inputs))
    assert session.past.self_pos.tolist() == list(range(10, 48))  # frames 10..47: the last l are re-fed
    assert session.past.cross_pos.tolist() == [46, 47]
    for b in range(3):
        lo = cfg.window + b * cfg.block
        session.step(*(s[:, lo:lo + cfg.block] for s in inputs))
        n = lo + cfg.block
        assert session.past.self_pos.tolist() == list(range(n - 2 - 38, n - 2))
        assert session.past.cross_pos.tolist() == [n - 4, n - 3]
        assert session.past.layers[0].self_k.shape[2] == cfg.cache_len == 38


def _changed_frames(run, cfg, perturb_from):
    """Which output frames change when every input frame from `perturb_from` on is replaced."""
    base = streams(cfg, 120)
    other = [s.clone() for s in base]
    for s in other:
        s[:, perturb_from:] = torch.randn_like(s[:, perturb_from:])
    a, b = run(base), run(other)
    return (a != b).any(-1)[0]  # (T,) bool


@pytest.mark.parametrize("mask", ["lookahead", "block_lookahead", "framewise", "blockwise"])
def test_block_output_depends_on_no_later_input(mask):
    cfg = small(mask=mask)
    model, ref = random_model(cfg), torch.randn(1, small().latent_dim)
    run = lambda s: generate(model, ref, *s, generator=torch.Generator().manual_seed(0), nfe=4)  # noqa: E731
    for block_end in (30, 60, 90):
        changed = _changed_frames(run, cfg, block_end)
        assert not changed[:block_end].any(), f"{mask}: frames before {block_end} changed"
        assert changed[block_end:].any()  # and the perturbation did reach the output


def test_bidirectional_baseline_is_not_causal():
    cfg = infp_config(small())
    model, ref = random_model(cfg), torch.randn(1, cfg.latent_dim)
    run = lambda s: generate_windowed(model, ref, *s, generator=torch.Generator().manual_seed(0), nfe=4)  # noqa: E731
    changed = _changed_frames(run, cfg, 30)
    assert changed[:30].any()  # frames 0..29 share a 75-frame window with the change: they move too
    with pytest.raises(ValueError, match="cannot stream"):
        Session(model, ref)


def test_zero_guidance_is_the_unconditional_branch():
    cfg = small()
    model, ref = random_model(cfg), torch.randn(1, cfg.latent_dim)
    a, b = streams(cfg, 40, seed=1), streams(cfg, 40, seed=2)
    run = lambda s, w: generate(model, ref, *s, generator=torch.Generator().manual_seed(0), nfe=4,  # noqa: E731
                                w_audio=w, w_user=w)
    torch.testing.assert_close(run(a, 0.0), run(b, 0.0), atol=0, rtol=0)
    assert not torch.allclose(run(a, 1.0), run(b, 1.0))


def test_talking_only_model_ignores_the_user():
    from afcore.config import talking_config
    cfg = talking_config(small())
    model, ref = random_model(cfg), torch.randn(1, cfg.latent_dim)
    aa, ua, um = streams(cfg, 40)
    run = lambda u, m: generate(model, ref, aa, u, m, generator=torch.Generator().manual_seed(0), nfe=4)  # noqa: E731
    torch.testing.assert_close(run(ua, um), run(torch.randn_like(ua), torch.randn_like(um)), atol=0, rtol=0)


def test_session_rejects_bad_blocks():
    cfg = small()
    session = Session(random_model(cfg), torch.randn(1, cfg.latent_dim))
    aa, ua, um = streams(cfg, cfg.block)
    with pytest.raises(ValueError, match="user_audio: expected shape"):
        session.step(aa, ua[:, :5], um)
    with pytest.raises(ValueError, match="NaN"):
        session.step(aa, ua, um * float("nan"))


def _rss_mb():
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_ten_minute_session_runs_in_constant_memory():
    """1,500 blocks (15,000 frames): positions never run out and nothing grows with the session."""
    cfg = small()
    session = Session(random_model(cfg), torch.randn(1, cfg.latent_dim), nfe=3)
    inputs = streams(cfg, cfg.block)
    blocks = 10 * 60 * cfg.fps // cfg.block
    rss = []
    for i in range(blocks):
        out = session.step(*inputs)
        if i in (100, blocks - 1):
            rss.append(_rss_mb())
    assert session.frames_done == 15_000 and torch.isfinite(out).all()
    assert session.past.self_pos[-1].item() == 15_000 - 1 - cfg.offset
    assert all(kv.self_k.shape[2] == cfg.cache_len and kv.cross_k.shape[2] == cfg.cross_band
               for kv in session.past.layers)
    assert rss[1] - rss[0] < 20, f"resident memory grew by {rss[1] - rss[0]:.1f} MB over the session"


def test_relative_positions_only():
    """RoPE + masks on absolute positions: shifting a window by 15,000 frames leaves the output as it was."""
    cfg = small()
    model = random_model(cfg)
    x, cond = torch.randn(1, 50, cfg.latent_dim), torch.randn(1, 50, cfg.hidden)
    t, ref, pos = torch.full((1, 50), 400.0), torch.randn(1, cfg.latent_dim), torch.arange(50)
    with torch.no_grad():
        near, far = model(x, t, cond, ref, pos), model(x, t, cond, ref, pos + 15_000)
    torch.testing.assert_close(near, far, atol=1e-4, rtol=0)


def test_cond_past_session_encodes_with_the_history_training_sees(monkeypatch):
    """A cond_past model's streaming condition tokens equal the whole-stream encoding wherever the band's future
    frames have arrived; without the kept history they would not. The no-cache path gives the same output."""
    cfg = small(cond_band=2, cond_past=6)
    model, ref = random_model(cfg), torch.randn(1, cfg.latent_dim)
    inputs = streams(cfg, 60)
    recomputed = generate(model, ref, *inputs, generator=torch.Generator().manual_seed(0), nfe=3, cache=False)
    seen = []  # (first frame position, tokens) of every window the session encodes
    encode = Session._encode

    def spy(self, s, frames):
        out = encode(self, s, frames)
        seen.append((self.frames_done - (frames - self.next_block_frames), out))
        return out

    monkeypatch.setattr(Session, "_encode", spy)
    cached = generate(model, ref, *inputs, generator=torch.Generator().manual_seed(0), nfe=3, cache=True)
    torch.testing.assert_close(cached, recomputed, atol=1e-5, rtol=0)
    whole = model.encode_conditions(*_cfg_branches(*inputs))  # (3, 60, H)
    assert len(seen) == 6
    for first, tokens in seen:
        ready = tokens.shape[1] - 2 * cfg.cond_band  # frames whose band's future is inside the window
        torch.testing.assert_close(tokens[:, :ready], whole[:, first:first + ready], atol=1e-5, rtol=0)
    # the control: encoding a later window without its history differs
    alone = model.encode_conditions(*_cfg_branches(*(x[:, 20:32] for x in inputs)))[:, :8]
    assert (alone - whole[:, 20:28]).abs().max().item() > 1e-3
