"""Audio encoders: official wav2vec2 parity from a local HF folder, the streaming mel encoder, bad input."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from afcore.audio import (MelAudioEncoder, Wav2Vec2AudioEncoder, build_audio_encoder, load_audio_projection,
                          make_audio_projection, zero_mean_unit_var)
from afcore.config import PAPER, get_config
from conftest import FIXTURES, needs_fixtures

POS_CONV = "wav2vec2.encoder.pos_conv_embed.conv."
STAGES = ("padded_waveform", "cnn_features_50hz", "interpolated_cnn_features", "projected_features",
          "hidden_states.0", "hidden_states.1", "hidden_states.2", "stacked_hidden", "output")


def write_hf_folder(folder: Path, weight_norm_form: str, drop_key: str | None = None) -> Path:
    """Lay out the fixture's tiny wav2vec2 as a user's local HF folder: config.json + model.safetensors.

    Keys keep the `wav2vec2.` prefix, as in a Wav2Vec2ForCTC hub checkpoint such as wav2vec2-base-960h.
    'legacy' stores the positional-conv weight norm as hub files do (weight_g/weight_v); 'parametrizations'
    keeps the fixture's (and transformers 5.x's own) form.
    """
    config = json.loads((FIXTURES / "tiny_config.json").read_text())["audio_encoder"]["wav2vec2_config"]
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    config.update(model_type="wav2vec2", architectures=["Wav2Vec2ForCTC"])
    weights = {k: v for k, v in load_file(FIXTURES / "tiny_audio_encoder.safetensors").items()
               if k.startswith("wav2vec2.")}
    if weight_norm_form == "legacy":
        weights[POS_CONV + "weight_g"] = weights.pop(POS_CONV + "parametrizations.weight.original0")
        weights[POS_CONV + "weight_v"] = weights.pop(POS_CONV + "parametrizations.weight.original1")
    if drop_key:
        weights.pop(drop_key)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file(weights, folder / "model.safetensors")
    return folder


def build_official_tiny(root: Path, weight_norm_form: str) -> Wav2Vec2AudioEncoder:
    """Through the real user path: a local folder named in ModelConfig, then the official projection weights."""
    folder = write_hf_folder(root / "wav2vec2-tiny", weight_norm_form)
    enc = build_audio_encoder(get_config("official-tiny", audio_encoder="wav2vec2", wav2vec2_dir=str(folder)))
    load_audio_projection(enc.audio_projection, FIXTURES / "tiny_audio_encoder.safetensors")
    return enc


@pytest.fixture(scope="module", params=["legacy", "parametrizations"])
def official_tiny_both_forms(request, tmp_path_factory):
    return build_official_tiny(tmp_path_factory.mktemp("w2v"), request.param)


@pytest.fixture(scope="module")
def official_tiny(tmp_path_factory):
    return build_official_tiny(tmp_path_factory.mktemp("w2v"), "legacy")  # the hub's own layout


# ------------------------------------------------------------------------------------------- wav2vec2: parity
@pytest.mark.parametrize("case", ["caseA", "caseB"])
def test_wav2vec2_matches_official_at_every_stage(official_tiny_both_forms, case):
    io = load_file(FIXTURES / "tiny_audio_encoder_io.safetensors")
    wave, T = io[f"{case}.in.waveform"], int(io[f"{case}.in.seq_len"])
    # The fixture's waveform is already normalised by the official feature extractor: start at the model input.
    got = official_tiny_both_forms.forward_with_intermediates(wave, T, normalize=False)
    for stage in STAGES:
        want = io[f"{case}.{stage}"]
        assert got[stage].shape == want.shape, stage
        err = (got[stage] - want).abs().max().item()
        assert err < 1e-4, f"{case} {stage}: max abs error {err:.2e}"
    assert got["output"].shape == (1, T, 32)


def test_wav2vec2_forward_normalises_raw_audio_per_clip(official_tiny):
    io = load_file(FIXTURES / "tiny_audio_encoder_io.safetensors")
    wave = io["caseA.in.waveform"]
    raw = 0.05 * wave + 0.01  # a quiet clip with a DC offset, as it would come from a file
    out = official_tiny(raw, 20)
    want = official_tiny.forward_with_intermediates(zero_mean_unit_var(raw), 20, normalize=False)["output"]
    assert torch.allclose(out, want, atol=1e-6)
    assert (out - io["caseA.output"]).abs().max() < 1e-3  # the gain and offset are normalised away
    assert official_tiny(raw).shape == (1, 20, 32)  # default T = ceil(12677 / 640)


def test_wav2vec2_is_frozen_and_projection_trains(official_tiny):
    enc = official_tiny.train()
    try:
        assert not enc.wav2vec2.training, "frozen wav2vec2 must keep dropout off"
        assert not any(p.requires_grad for p in enc.wav2vec2.parameters())
        assert all(p.requires_grad for p in enc.audio_projection.parameters())
        enc(torch.randn(2, 3000), 5).square().mean().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.audio_projection.parameters())
    finally:
        enc.eval().zero_grad(set_to_none=True)


def test_wav2vec2_silent_clip_is_finite(official_tiny):
    out = official_tiny(torch.zeros(1, 6400), 10)
    assert out.shape == (1, 10, 32) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------- wav2vec2: folder errors
def test_missing_wav2vec2_folder_says_what_to_do(tmp_path):
    where = tmp_path / "nowhere" / "wav2vec2-base-960h"
    with pytest.raises(FileNotFoundError) as e:
        build_audio_encoder(get_config("tiny", audio_encoder="wav2vec2", wav2vec2_dir=str(where)))
    msg = str(e.value)
    assert str(where) in msg and "facebook/wav2vec2-base-960h" in msg and "wav2vec2_dir" in msg
    with pytest.raises(FileNotFoundError, match="wav2vec2_dir is not set"):
        build_audio_encoder(get_config("tiny", audio_encoder="wav2vec2"))


def test_incomplete_wav2vec2_folders_are_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        build_audio_encoder(get_config("tiny", audio_encoder="wav2vec2", wav2vec2_dir=str(tmp_path / "empty")))
    (tmp_path / "config_only").mkdir()
    (tmp_path / "config_only" / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(FileNotFoundError, match="has no weights"):
        build_audio_encoder(get_config("tiny", audio_encoder="wav2vec2", wav2vec2_dir=str(tmp_path / "config_only")))


@needs_fixtures
def test_wav2vec2_weights_that_do_not_fit_are_rejected(tmp_path):
    folder = write_hf_folder(tmp_path / "w2v", "legacy", drop_key="wav2vec2.encoder.layers.1.attention.q_proj.weight")
    with pytest.raises(ValueError, match="layers.1.attention.q_proj.weight"):
        build_audio_encoder(get_config("official-tiny", audio_encoder="wav2vec2", wav2vec2_dir=str(folder)))


# ------------------------------------------------------------------------------------------- projection weights
@needs_fixtures
def test_projection_parameter_count_matches_official_census():
    census = json.loads((FIXTURES / "census_paper.json").read_text())["audio_projection"]
    proj = make_audio_projection(12 * 768, PAPER.cond_dim)  # wav2vec2-base: 12 layers x 768, stacked
    assert sum(p.numel() for p in proj.parameters()) == census["num_parameters"] == 4_720_128
    ours = {"audio_encoder.audio_projection." + k: list(v.shape) for k, v in proj.state_dict().items()}
    assert ours == {e["key"]: e["shape"] for e in census["entries"]}


@needs_fixtures
def test_projection_loads_from_official_checkpoint_keys(tmp_path):
    fixture = load_file(FIXTURES / "tiny_audio_encoder.safetensors")
    official = {"audio_encoder." + k: v for k, v in fixture.items() if k.startswith("audio_projection.")}
    official["flow_transformer.x_embedder.weight"] = torch.zeros(3)  # unrelated keys are ignored
    torch.save(official, tmp_path / "flow_transformer.pth")
    proj = load_audio_projection(make_audio_projection(64, 32), tmp_path / "flow_transformer.pth")
    assert torch.equal(proj[0].weight, fixture["audio_projection.0.weight"])
    assert torch.equal(proj[1].bias, fixture["audio_projection.1.bias"])
    with pytest.raises(ValueError, match=r"shape \(32, 64\) in the checkpoint but \(32, 9216\)"):
        load_audio_projection(make_audio_projection(9216, 32), official)
    with pytest.raises(KeyError, match="audio_encoder.audio_projection.0.weight"):
        load_audio_projection(make_audio_projection(64, 32), {"flow_transformer.x": torch.zeros(1)})


# ------------------------------------------------------------------------------------------- mel encoder
@pytest.fixture(scope="module")
def mel():
    torch.manual_seed(0)
    return MelAudioEncoder(get_config("tiny")).eval()


@pytest.mark.parametrize("n_samples, num_frames", [(640, 1), (640 * 7, 7), (5000, 12), (640 * 30 + 17, 30), (999, None)])
def test_mel_shape_and_frame_rate(mel, n_samples, num_frames):
    out = mel(0.1 * torch.randn(2, n_samples), num_frames)
    T = num_frames or -(-n_samples // 640)
    assert out.shape == (2, T, 64) and torch.isfinite(out).all()


def test_mel_pads_by_replication_and_cuts(mel):
    wave = 0.1 * torch.randn(1, 5000)
    padded = torch.cat([wave, wave[:, -1:].expand(1, 640 * 12 - 5000)], dim=1)
    assert torch.equal(mel(wave, 12), mel(padded, 12))
    assert not torch.equal(mel(wave, 12), mel(torch.cat([wave, torch.zeros(1, 640 * 12 - 5000)], 1), 12))
    long = 0.1 * torch.randn(1, 640 * 20)
    assert torch.equal(mel(long, 9), mel(long[:, : 640 * 9], 9))


def test_mel_is_causal(mel):
    torch.manual_seed(1)
    wave = 0.1 * torch.randn(1, 640 * 12)
    base = mel(wave, 12)
    for t in (0, 3, 7, 10):
        changed = wave.clone()
        changed[:, 640 * (t + 1):] = 0.1 * torch.randn(1, 640 * (11 - t))
        out = mel(changed, 12)
        assert torch.equal(out[:, : t + 1], base[:, : t + 1]), f"frame <= {t} saw samples after 640*(t+1)"
        assert not torch.allclose(out[:, t + 1], base[:, t + 1]), "the next frame must see the change"


@pytest.mark.parametrize("chunk_sizes", [[6400], [1000], [37, 640, 0, 6400, 3001, 1]])
def test_mel_streaming_equals_whole_clip(mel, chunk_sizes):
    torch.manual_seed(2)
    wave = 0.1 * torch.randn(2, 640 * 53)
    whole = mel(wave, 53)
    state, pieces, pos, i = mel.init_stream(batch_size=2), [], 0, 0
    while pos < wave.shape[1]:
        n = chunk_sizes[i % len(chunk_sizes)]
        feats, state = mel.encode_chunk(wave[:, pos: pos + n], state)
        assert feats.shape[1] == (pos + n) // 640 - pos // 640 or pos + n > wave.shape[1]
        pieces.append(feats)
        pos, i = pos + n, i + 1
    streamed = torch.cat(pieces, dim=1)
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max() <= 1e-5


@pytest.mark.parametrize("name, width", [("tiny", 64), ("paper", 512)])
def test_mel_builds_for_named_configs(name, width):
    enc = build_audio_encoder(get_config(name))
    assert isinstance(enc, MelAudioEncoder) and enc.streaming
    assert enc(0.1 * torch.randn(1, 6400), 10).shape == (1, 10, width)


def test_unknown_audio_encoder_name():
    with pytest.raises(ValueError, match="choose 'mel'"):
        build_audio_encoder(get_config("tiny", audio_encoder="hubert"))


# ------------------------------------------------------------------------------------------- bad input (both paths)
@pytest.fixture(params=["mel", "wav2vec2"])
def any_encoder(request):
    return request.getfixturevalue("mel" if request.param == "mel" else "official_tiny")


def test_stereo_and_unbatched_input_is_refused(any_encoder):
    with pytest.raises(ValueError, match=r"mono.*\(2, 2, 6400\).*wave.mean\(dim=1\)"):
        any_encoder(torch.randn(2, 2, 6400), 10)
    with pytest.raises(ValueError, match=r"wave\[None\]"):
        any_encoder(torch.randn(6400), 10)


def test_nan_inf_int_and_bad_lengths_are_refused(any_encoder):
    wave = torch.randn(2, 6400)
    wave[1, 1234] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf.*batch 1, sample 1234"):
        any_encoder(wave, 10)
    with pytest.raises(ValueError, match="NaN or Inf"):
        any_encoder(torch.full((1, 6400), float("inf")), 10)
    with pytest.raises(TypeError, match="32768"):
        any_encoder(torch.zeros(1, 6400, dtype=torch.int16), 10)
    with pytest.raises(ValueError, match="empty"):
        any_encoder(torch.zeros(1, 0), 10)
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        any_encoder(torch.zeros(1, 6400), 0)


def test_silent_and_tiny_clips_encode_without_nan(any_encoder):
    for wave in (torch.zeros(1, 640 * 10), torch.full((1, 3), 0.5)):
        out = any_encoder(wave, 10)
        assert out.shape[:2] == (1, 10) and torch.isfinite(out).all()


def test_mel_stream_refuses_bad_chunks(mel):
    with pytest.raises(ValueError, match="NaN or Inf"):
        mel.encode_chunk(torch.tensor([[0.0, float("nan")]]), mel.init_stream())
    with pytest.raises(ValueError, match="init_stream\\(batch_size"):
        mel.encode_chunk(torch.zeros(2, 640), mel.init_stream(batch_size=1))
