"""The embedded extractors, trained inside the tests on a tiny corpus and fresh render identities, must
recover known ground truth on identities they never saw: face parameters (R^2), audio offsets (LSE),
identity (verification AUC), and frame / clip defects (FID / FVD)."""
import numpy as np
import pytest
import torch

from data_prep.corpus import Corpus
from data_prep.synth.build import SynthConfig, build_corpus
from eval.extractors import registry
from eval.extractors.renders import corpus_streams, render_bank

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # see common.torch_threads: 2 OpenMP threads on 2 shared cores are far slower
    yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("extractors") / "corpus"
    build_corpus(out, SynthConfig(hours=0.03, seed=3, workers=1, mp4=False), progress=False)
    return Corpus(out)


@pytest.fixture(scope="module")
def test_stream(corpus):
    return next(corpus_streams(corpus, "test"))


def test_facecnn_recovers_params_on_unseen_identities(tmp_path):
    from eval.extractors.facecnn import NAME, FaceParamExtractor, train_facecnn
    fx = train_facecnn(n_identities=96, frames_per_identity=30, steps=300, held_out_identities=6, threads=1)
    r2 = fx.card["quality"]["r2_heldout_renders"]  # 6 fresh identities x 100 frames, independent params
    for name in ("yaw", "pitch", "roll"):  # measured 0.94, 0.87, 0.96 (seeds 1, 2: >= 0.94, 0.95, 0.94)
        assert r2[name] > 0.8, (name, r2)
    # The small cues, read from the face aligned with the estimated pose. The v1 model (one CNN on the raw frame,
    # train_facecnn(pose_width=0)) measured smile -0.00, brow 0.0, gaze_x 0.0, blink 0.53, jaw 0.79 here; v2
    # 0.37, 0.75, 0.41, 0.70, 0.65 (jaw: 0.84-0.97 on five identities, -0.4 on the one with a full beard at this
    # budget; 0.91 / 0.89 with seeds 1 / 2; 0.86 after 2000 steps). Gaze_y and laugh stay < 0.2 at 300 steps.
    assert r2["smile"] > 0.2 and r2["gaze_x"] > 0.25 and r2["brow_raise"] > 0.5, r2
    assert r2["blink"] > 0.5 and r2["jaw_open"] > 0.55, r2
    fx.save(tmp_path / "facecnn.pt")
    back = registry.resolve("face_params", embedded={"face_params": tmp_path / "facecnn.pt"})
    assert isinstance(back, FaceParamExtractor)
    held = render_bank(2, 10, seed=77)
    np.testing.assert_allclose(back(held["frames"]), fx(held["frames"]), atol=1e-5)
    assert back.card["quality"]["r2_heldout_renders"] == r2 and back.card["name"] == NAME == "embedded-facecnn-v2"


def test_embedded_syncnet_finds_the_true_offset_and_a_known_shift(corpus, test_stream):
    from eval.extractors.syncnet_embedded import train_syncnet
    net = train_syncnet(corpus, steps=120, batch=24, n_offsets=6, relooks=2, threads=1)
    n = 300
    frames, audio = np.asarray(test_stream["frames"][:n]), test_stream["audio"][:n * 640]
    aligned = net(frames, audio)
    assert aligned["offset"] == 0 and aligned["extractor"] == "embedded-syncnet-v1"
    mdist = np.array(aligned["mean_dist_per_offset"])
    assert mdist[15] < mdist[[5, 25]].min()  # LSE-D at the true offset beats +-10 frames
    delayed = net(frames, np.r_[np.zeros(5 * 640, np.float32), audio[:-5 * 640]])  # audio 5 frames late
    assert delayed["audio_lag_frames"] == 5 and delayed["offset"] == -5
    assert aligned["lse_c"] > 0.02


def test_identity_encoder_separates_unseen_identities():
    from eval.extractors.identity import csim, train_identity_encoder
    enc = train_identity_encoder(n_identities=40, frames_per_identity=24, steps=100, threads=1)
    q = enc.card["quality"]  # 8 new identities, 2 backgrounds each
    assert q["auc"] > 0.85 and q["same_identity_cos"] > q["other_identity_cos"] + 0.3, q
    bank = render_bank(2, 6, seed=4242, backgrounds_per_identity=2)
    same = csim(bank["frames"][0], bank["frames"][1:6], enc)["csim"]
    other = csim(bank["frames"][0], bank["frames"][6:], enc)
    assert same > other["csim"] and other["extractor"] == "embedded-identity-v1"


def test_embedded_fid_and_fvd_see_defects(corpus, test_stream, tmp_path):
    from eval.extractors.quality import fid, fvd
    from eval.extractors.videofeat import _blur, train_clip_encoder, train_frame_encoder
    frames = np.asarray(test_stream["frames"][:480])
    fe = train_frame_encoder(n_identities=24, frames_per_identity=40, steps=80, threads=1)
    a, b = frames[0::2], frames[1::2]
    x = torch.from_numpy(b).permute(0, 3, 1, 2).float() / 255
    blurred = (_blur(x, torch.full((len(b),), 1.5)).permute(0, 2, 3, 1) * 255).round().byte().numpy()
    fe.save(tmp_path / "fid.pt")
    feature = registry.resolve("fid", embedded={"fid": tmp_path / "fid.pt"})  # checkpoint round trip
    same, worse = fid(a, b, feature), fid(a, blurred, feature)
    assert worse["fid"] > 5 * same["fid"] and same["extractor"] == "embedded-framefeat-v1"

    ce = train_clip_encoder(corpus, steps=80, batch=12, threads=1)
    clips = np.stack([frames[i:i + 16] for i in range(0, 464, 8)])  # (57, 16, 64, 64, 3)
    first, second = clips[0::2], clips[1::2]
    frozen = np.repeat(second[:, 5:6], 16, axis=1)
    clean, broken = fvd(first, second, ce.feature), fvd(first, frozen, ce.feature)
    assert broken["fvd"] > 3 * clean["fvd"] and clean["extractor"] == "embedded-clipfeat-v1"
