"""afcore against the test vectors recorded from the official implementation (shared/fixtures/official_parity)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from afcore.config import get_config
from afcore.dfot import FlowTransformer, attention_mask, band_mask, rope_cos_sin, timestep_sinusoid
from afcore.flow import SIGMAS, TIMESTEPS, denoising_steps, sigma_of
from afcore.official import load_official_flow_transformer
from afcore.session import Session, _cfg_branches, generate

from conftest import FIXTURES, needs_fixtures

pytestmark = needs_fixtures

ATOL = 1e-4  # the fixture README's recommended tolerance for forward, sampler and caches


@pytest.fixture(scope="module")
def official_tiny():
    model = FlowTransformer(get_config("official-tiny")).eval()
    return load_official_flow_transformer(model, FIXTURES / "tiny_flow_transformer.safetensors")


@pytest.fixture(scope="module")
def sample_fx():
    return load_file(FIXTURES / "tiny_sample.safetensors")


def test_paper_parameter_count_matches_census():
    census = json.loads((FIXTURES / "census_paper.json").read_text())["flow_transformer"]
    with torch.device("meta"):
        model = FlowTransformer(get_config("paper"))
    assert sum(p.numel() for p in model.parameters()) == census["num_parameters"] == 148_764_160
    assert len(list(model.parameters())) == census["num_parameter_tensors"]
    blocks = sum(p.numel() for p in model.blocks[0].parameters())
    assert blocks == census["breakdown"]["blocks.0"]


def test_forward_cases_and_intermediates(official_tiny):
    fx = load_file(FIXTURES / "tiny_forward.safetensors")
    m = official_tiny
    for case in range(3):
        i = {k.split(".in.")[1]: v for k, v in fx.items() if k.startswith(f"case{case}.in.")}
        with torch.no_grad():
            cond = m.encode_conditions(i["wa"], i["wa_user"], i["motion_user"])
            v = m(i["x"], i["t"], cond, i["wr"])
        torch.testing.assert_close(v, fx[f"case{case}.out.v"], atol=ATOL, rtol=0)
    i = {k.split(".in.")[1]: v for k, v in fx.items() if k.startswith("case0.in.")}
    outs = []
    hooks = [b.register_forward_hook(lambda mod, a, out: outs.append(out[0])) for b in m.blocks]
    with torch.no_grad():
        temb = m.time_embed(i["t"])
        cond = m.encode_conditions(i["wa"], i["wa_user"], i["motion_user"])
        m(i["x"], i["t"], cond, i["wr"])
    for h in hooks:
        h.remove()
    inter = lambda name: fx[f"case0.intermediate.{name}"]  # noqa: E731
    torch.testing.assert_close(temb, inter("t_embed"), atol=ATOL, rtol=0)
    torch.testing.assert_close(m.shared_adaln(torch.nn.functional.silu(temb)), inter("adaLN"), atol=ATOL, rtol=0)
    torch.testing.assert_close(m.final_adaln(torch.nn.functional.silu(temb)), inter("final_adaLN"), atol=ATOL, rtol=0)
    torch.testing.assert_close(cond, inter("cond.c"), atol=ATOL, rtol=0)
    enc = m.cond_encoder
    torch.testing.assert_close(enc.motion_mlp(i["motion_user"]), inter("cond.motion_embedded"), atol=ATOL, rtol=0)
    torch.testing.assert_close(outs[0], inter("block0_out"), atol=ATOL, rtol=0)
    torch.testing.assert_close(outs[1], inter("block1_out"), atol=ATOL, rtol=0)


@pytest.mark.parametrize("case,blocks", [("T90", 5), ("T83", 5), ("T37", 1)])
def test_streaming_sample_matches_official(official_tiny, sample_fx, case, blocks):
    g = lambda k: sample_fx[f"{case}.{k}"]  # noqa: E731
    out = generate(official_tiny, g("in.r_s"), g("in.avatar_wa"), g("in.user_wa"), g("in.user_motion"),
                   noise=[g(f"noise.{b}") for b in range(blocks)], warmup="window", nfe=10, w_audio=2.0, w_user=1.0)
    assert out.shape == g("out.r_d").shape
    torch.testing.assert_close(out, g("out.r_d"), atol=ATOL, rtol=0)


def test_kv_cache_and_steps_match_official_block_by_block(official_tiny, sample_fx):
    g = lambda k: sample_fx[f"T90.{k}"]  # noqa: E731
    m = official_tiny
    s = Session(m, g("in.r_s"), warmup="window", nfe=10, w_audio=2.0, w_user=1.0)
    starts = [0, 50, 60, 70, 80]
    for b, n0 in enumerate(starts):
        n = s.next_block_frames
        streams = [g(f"in.{k}")[:, n0:n0 + n] for k in ("avatar_wa", "user_wa", "user_motion")]
        if b > 0:  # the first denoising step of a steady block, read against the cache of the block before
            window = [g(f"block{b}.cond_window.{k}") for k in ("avatar_wa", "user_wa", "user_motion")]
            c3 = m.encode_conditions(*_cfg_branches(*window))
            torch.testing.assert_close(c3, g(f"block{b}.c_3branch"), atol=ATOL, rtol=0)
            pos = torch.arange(int(g(f"block{b}.start_pos")), n0 + n)
            with torch.no_grad():
                v3 = m(g(f"block{b}.step0.x_in").repeat(3, 1, 1), g(f"block{b}.step0.t_cur").repeat(3, 1), c3,
                       g("in.r_s").repeat(3, 1), pos, s.past)
            torch.testing.assert_close(v3, g(f"block{b}.step0.v_3branch"), atol=ATOL, rtol=0)
        s.step(*streams, noise=g(f"noise.{b}"))
        for layer, kv in enumerate(s.past.layers):
            for name in ("self_k", "self_v", "cross_k", "cross_v"):
                torch.testing.assert_close(getattr(kv, name), g(f"block{b}.cache_after.layer{layer}.{name}"),
                                           atol=ATOL, rtol=0, msg=f"block {b} layer {layer} {name}")


def test_schedule_masks_rope_and_timestep_embedding():
    fx = load_file(FIXTURES / "schedule_and_masks.safetensors")
    torch.testing.assert_close(SIGMAS, fx["scheduler.sigmas"], atol=0, rtol=0)
    torch.testing.assert_close(TIMESTEPS, fx["scheduler.timesteps"], atol=0, rtol=0)
    steps = denoising_steps(10)
    torch.testing.assert_close(steps, fx["sampler.denoising_step_list"], atol=0, rtol=0)
    torch.testing.assert_close(sigma_of(steps), fx["sampler.step_sigma_float64"], atol=1e-12, rtol=0)
    cfg = get_config("official-tiny")
    p50, p12, p14 = torch.arange(50), torch.arange(38, 50), torch.arange(36, 50)
    assert torch.equal(attention_mask(cfg.mask, p50, p50, cfg.block, cfg.lookahead), fx["mask.self_50x50"])
    assert torch.equal(band_mask(p50, p50, cfg.cross_band), fx["mask.cross_50x50"])
    assert torch.equal(attention_mask(cfg.mask, p12, p50, cfg.block, cfg.lookahead), fx["mask.self_streaming_12x50"])
    assert torch.equal(band_mask(p12, p14, cfg.cross_band), fx["mask.cross_streaming_12x14"])
    # The official table is computed in float32, ours in float64 (exact for 10-minute sessions): they part by
    # float32's rounding of the angle, about 6e-8 * position, i.e. < 3e-5 over the official 1024 positions.
    cos, sin = rope_cos_sin(torch.arange(1024), 16)
    torch.testing.assert_close(cos, fx["rope.head_dim16.cos"], atol=3e-5, rtol=0)
    torch.testing.assert_close(sin, fx["rope.head_dim16.sin"], atol=3e-5, rtol=0)
    torch.testing.assert_close(cos[:100], fx["rope.head_dim16.cos"][:100], atol=2e-6, rtol=0)
    torch.testing.assert_close(timestep_sinusoid(fx["timestep_embedding.t"]), fx["timestep_embedding.freq256"],
                               atol=1e-4, rtol=0)


def test_loader_is_strict(official_tiny):
    state = load_file(FIXTURES / "tiny_flow_transformer.safetensors")
    broken = dict(state)
    broken.pop("blocks.1.mlp.fc2.bias")
    with pytest.raises(KeyError, match="not filled"):
        load_official_flow_transformer(FlowTransformer(get_config("official-tiny")), broken)
    broken = dict(state, **{"blocks.0.attn.mystery": torch.zeros(1)})
    with pytest.raises(KeyError, match="no afcore counterpart"):
        load_official_flow_transformer(FlowTransformer(get_config("official-tiny")), broken)
    prefixed = {f"flow_transformer.{k}": v for k, v in state.items()}
    prefixed["flow_transformer.block_bidir_causal_lookahead_mask"] = attention_mask(
        "blockwise", torch.arange(50), torch.arange(50), 10, 2)
    with pytest.raises(ValueError, match="differs from the mask"):
        load_official_flow_transformer(FlowTransformer(get_config("official-tiny")), prefixed)


def test_release_loader_wires_generator_and_audio_projection(tmp_path):
    """A tiny stand-in for the release: one flow_transformer.pth holding the generator and the audio
    projection (official key names), plus a local wav2vec2 folder."""
    from afcore.official import load_official_release
    from test_audio import write_hf_folder

    flow = {f"flow_transformer.{k}": v for k, v in load_file(FIXTURES / "tiny_flow_transformer.safetensors").items()}
    audio = load_file(FIXTURES / "tiny_audio_encoder.safetensors")
    flow.update({f"audio_encoder.{k}": v for k, v in audio.items() if k.startswith("audio_projection.")})
    torch.save(flow, tmp_path / "flow_transformer.pth")
    folder = write_hf_folder(tmp_path / "wav2vec2", "parametrizations")
    cfg = get_config("official-tiny", audio_encoder="wav2vec2", wav2vec2_dir=str(folder))
    model, autoencoder = load_official_release(tmp_path / "flow_transformer.pth", folder, cfg=cfg)
    assert autoencoder is None
    io = load_file(FIXTURES / "tiny_audio_encoder_io.safetensors")
    with torch.no_grad():
        feats = model.audio.forward_with_intermediates(io["caseA.in.waveform"], int(io["caseA.in.seq_len"]),
                                                       normalize=False)["output"]
    torch.testing.assert_close(feats, io["caseA.output"], atol=ATOL, rtol=0)
    fx = load_file(FIXTURES / "tiny_forward.safetensors")
    i = {k.split(".in.")[1]: v for k, v in fx.items() if k.startswith("case1.in.")}
    with torch.no_grad():
        v = model.generator(i["x"], i["t"], model.generator.encode_conditions(i["wa"], i["wa_user"], i["motion_user"]),
                            i["wr"])
    torch.testing.assert_close(v, fx["case1.out.v"], atol=ATOL, rtol=0)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_official_release(tmp_path / "missing.pth", folder, cfg=cfg)
