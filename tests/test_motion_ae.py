"""Motion autoencoder: official parity (size-64 fixture), paper-size census, tiny-size behaviour."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from afcore.config import get_config
from afcore.motion_ae import (MotionAutoencoder, decode_signbits, load_official_motion_ae, map_official_keys)
from conftest import FIXTURES, needs_fixtures

ATOL_LATENT, ATOL_IMAGE = 1e-4, 5e-4  # fixture README section 8


def count(module):
    return sum(p.numel() for p in module.parameters())


def max_err(a, b):
    return (a - b).abs().max().item()


# --- 1. official parity ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def official():
    """The fixture Generator (size 64, style 512, 20 dirs, official channels), loaded with the checkpoint
    prefix a real motion_autoencoder.pth carries."""
    from safetensors.torch import load_file
    with torch.device("meta"):  # no 43 M-parameter random init; the checkpoint tensors are assigned
        model = MotionAutoencoder(get_config("official-tiny", latent_dim=512))
    weights = decode_signbits(load_file(FIXTURES / "tiny_motion_ae.safetensors"))
    ignored = load_official_motion_ae(model, {"motion_autoencoder." + k: v for k, v in weights.items()})
    return model.eval(), ignored, load_file(FIXTURES / "tiny_motion_ae_io.safetensors")


@needs_fixtures
def test_official_weights_load_strictly(official):
    model, ignored, _ = official
    assert not any(p.is_meta for p in model.parameters())
    # 8 decoder convs + conv1 carry a noise weight; to_rgb1 has 3 tensors. Nothing else is dropped.
    assert sum(k.endswith(".noise.weight") for k in ignored) == 9
    assert sorted(k for k in ignored if "to_rgb1" in k) == [
        "motion_autoencoder.dec.to_rgb1." + s for s in ("bias", "conv.0.weight", "conv.1.bias")]
    assert len(ignored) == 12
    config = json.loads((FIXTURES / "tiny_config.json").read_text())["motion_autoencoder"]
    assert count(model) == config["num_parameters"] - 9 - 1542  # minus noise weights and to_rgb1


@needs_fixtures
def test_official_encoder_parity(official):
    model, _, io = official
    with torch.no_grad():
        z, feats = model.encode_identity(io["in.images"])
        lam = model.motion_lambda(io["in.images"])
        Q = model.directions()
        motion = model.lambda_to_motion(lam)
    assert max_err(z, io["enc.appearance_latent"]) < ATOL_LATENT
    assert max_err(lam, io["enc.motion_lambda"]) < ATOL_LATENT
    assert max_err(Q, io["direction.Q"]) < ATOL_LATENT  # same LAPACK Householder signs, no sign fix
    assert max_err(motion, io["enc.motion_512"]) < ATOL_LATENT
    assert len(feats) == 4
    for i, (feat, r) in enumerate(zip(feats, (8, 16, 32, 64))):
        name = f"enc.feat{i}_{r}px"
        assert list(feat.shape) == io[name + ".shape"].tolist()
        ref = io[name] if name in io else io[name + ".first16ch"]
        assert max_err(feat[:, :ref.shape[1]], ref) < ATOL_LATENT, name
        assert max_err(feat.mean((2, 3)), io[name + ".channel_mean"]) < ATOL_LATENT, name


@needs_fixtures
def test_official_decoder_parity(official):
    model, _, io = official
    with torch.no_grad():
        _, feats = model.encode_identity(io["in.images"])
        src = io["dec.source_index"]
        img, grids = model.decode(io["dec.latent"], [f[src] for f in feats], return_flows=True)
    assert [g.shape[1] for g in grids] == [8, 16, 32, 64]
    assert max_err(grids[-1], io["dec.flow_64px"]) < ATOL_LATENT
    assert max_err(img, io["dec.image"]) < ATOL_IMAGE
    # The fixture rows are [s0 + r0, s0 + r1, s1 + extra]: check the latent convention end to end.
    z, r = io["enc.appearance_latent"], io["enc.motion_512"]
    rows = torch.stack([z[0] + r[0], z[0] + r[1], z[1] + io["in.extra_motion"][0]])
    assert max_err(rows, io["dec.latent"]) < 1e-6


# --- 2. paper size ---------------------------------------------------------------------------------

@needs_fixtures
def test_paper_size_matches_official_census():
    census = json.loads((FIXTURES / "census_paper.json").read_text())["motion_autoencoder"]
    with torch.device("meta"):
        model = MotionAutoencoder(get_config("paper"))
    shapes = {e["key"]: tuple(e["shape"]) for e in census["entries"]}  # 177 parameters + 35 FIR buffers
    mapping, ignored = map_official_keys(model, shapes)  # raises on any missing / unexpected / mis-shaped key
    assert sorted(mapping.values()) == sorted(n for n, _ in model.named_parameters())
    assert sum(k.endswith(".kernel") for k in ignored) == census["num_buffer_tensors"] == 35
    ignored_params = sum(np.prod(shapes[k]) for k in ignored if not k.endswith(".kernel"))
    assert ignored_params == 15 + 1542  # 15 noise weights (conv1 + 14 convs) and to_rgb1
    assert count(model) + ignored_params == census["num_parameters"] == 45_239_560
    b = census["breakdown"]
    assert count(model.encoder) + count(model.lambda_head) == b["enc"]
    assert count(model.decoder) + model.direction_weight.numel() + ignored_params == b["dec"]


# --- 3. tiny-size behaviour ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return MotionAutoencoder(get_config("tiny"))


def smooth_pairs(n=4, size=64, shift=3, seed=1):
    """Smooth random colour fields; the driving frame is the source shifted by a few pixels."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.randn(n, 3, 6, 6, generator=g), size=size + 2 * shift, mode="bicubic").tanh()
    src = base[..., shift:shift + size, shift:shift + size]
    drv = base[..., :size, 2 * shift:]
    return src.contiguous(), drv.contiguous()


def test_directions_orthonormal_and_motion_in_span(tiny):
    Q = tiny.directions()
    D, K = tiny.latent_dim, tiny.motion_dirs
    assert Q.shape == (D, K)
    assert torch.allclose(Q.T @ Q, torch.eye(K), atol=1e-5)
    src, _ = smooth_pairs()
    with torch.no_grad():
        m = tiny.encode_motion(src)
        assert m.shape == (4, D)
        assert torch.allclose(Q @ (Q.T @ m.T), m.T, atol=1e-5)  # m lies in span(Q)
        assert torch.allclose(m, tiny.motion_lambda(src) @ Q.T, atol=1e-6)
        z, feats = tiny.encode_identity(src)
        assert z.shape == (4, D) and [f.shape[-1] for f in feats] == [8, 16, 32, 64]


def test_reconstruction_training_lowers_l1():
    torch.manual_seed(0)
    model = MotionAutoencoder(get_config("tiny"))
    src, drv = smooth_pairs(n=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # these small ops are faster on one thread, and immune to a busy second core
    try:
        for _ in range(10):
            loss = (model.reconstruct(src, drv) - drv).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert all(p.grad is not None for p in model.parameters())  # every parameter is on the training path
    assert losses[-1] < 0.92 * losses[0], losses


def test_128px_variant_runs():
    model = MotionAutoencoder(get_config("tiny", image_size=128))
    src, drv = smooth_pairs(n=2, size=128)
    with torch.no_grad():
        z, feats = model.encode_identity(src)
        img, grids = model.decode(z + model.encode_motion(drv), feats, return_flows=True)
    assert [f.shape[-1] for f in feats] == [8, 16, 32, 64, 128]
    assert img.shape == (2, 3, 128, 128) and grids[-1].shape == (2, 128, 128, 2)
    assert torch.isfinite(img).all()


def test_bad_inputs_give_clear_errors(tiny):
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\).*image_size=64"):
        tiny.encode_identity(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match="expects images"):
        tiny.reconstruct(torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64))
    z, feats = tiny.encode_identity(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match="decode expects z"):
        tiny.decode(z[:, :10], feats)
    with pytest.raises(ValueError, match="feature maps"):
        tiny.decode(z, feats[:-1])
    with pytest.raises(ValueError, match="image_size must be one of"):
        MotionAutoencoder(get_config("tiny", image_size=96))


@needs_fixtures
def test_official_key_errors_list_the_keys():
    with torch.device("meta"):
        model = MotionAutoencoder(get_config("official-tiny", latent_dim=512))
    from safetensors import safe_open
    with safe_open(FIXTURES / "tiny_motion_ae.safetensors", "pt") as f:
        shapes = {k: tuple(v.shape) for k, v in decode_signbits({k: f.get_tensor(k) for k in f.keys()}).items()}
    map_official_keys(model, shapes)  # the real key set passes
    broken = dict(shapes)
    del broken["dec.direction.weight"]
    broken["dec.bogus.weight"] = (3,)
    broken["enc.fc.4.bias"] = (21,)
    with pytest.raises(ValueError) as err:
        map_official_keys(model, broken)
    msg = str(err.value)
    assert "dec.direction.weight" in msg and "dec.bogus.weight" in msg and "enc.fc.4.bias" in msg
    with pytest.raises(ValueError, match="image_size=512"):  # a paper checkpoint does not fit a 64-px model
        map_official_keys(model, {**shapes, "enc.net_app.convs.6.weight": (512, 512, 4, 4)})


def test_decode_signbits_matches_numpy_packbits():
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(3, 5, 7)).astype(np.float32)  # 105 bits: tests the padding
    packed = np.packbits(signs.reshape(-1) > 0)  # MSB-first
    out = decode_signbits({"w.signbits": torch.from_numpy(packed), "w.shape": torch.tensor([3, 5, 7]),
                           "b": torch.ones(2)})
    assert sorted(out) == ["b", "w"]
    assert torch.equal(out["w"], torch.from_numpy(signs))
