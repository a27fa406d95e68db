"""eval.readout, eval.experiments and eval.scoring: the logic behind notebooks 02-04, on a copy of the tiny
corpus whose "latents" are a known linear map of the true face parameters (no autoencoder to train)."""
import json
import shutil

import numpy as np
import pytest
import torch

from afcore.config import get_config
from afcore.data import latents_path
from afcore.model import AvatarForcing
from afcore.motion_ae import MotionAutoencoder
from afcore.objectives import noise_and_times
from afcore.train import get_profile
from data_prep.corpus import Corpus
from data_prep.schema import PARAM_COLUMNS
from eval import scoring
from eval.experiments import (
    VARIANTS,
    ZeroUserMotion,
    decode_motion,
    export_checkpoint,
    generate_clips,
    held_out_clips,
    load_variant,
    oracle_latent_corpus,
    reconstruction_grid,
    render_params,
    sample_config,
    side_by_side,
    train_config,
    train_variant,
    training_windows,
    traversal_grid,
)
from eval.readout import ParamReadout, fit_corpus_readout

SMALL = get_config("tiny", depth=1, hidden=32, heads=2, audio_hidden=16)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def linear_corpus(tiny_corpus, tmp_path_factory):
    """The tiny corpus plus latents m = params @ P + small noise (D = 64): the readout must recover P."""
    root = shutil.copytree(tiny_corpus, tmp_path_factory.mktemp("exp") / "corpus")
    corpus, rng = Corpus(root), np.random.default_rng(0)
    P = rng.normal(size=(10, SMALL.latent_dim))
    for r in corpus.manifest[["conversation_id", "person"]].drop_duplicates().itertuples():
        params = np.array(corpus.stream(r.conversation_id, r.person)["params"], np.float64)
        params[:, PARAM_COLUMNS.index("laugh")] = 0  # the train split never laughs: keep it out of the latents
        path = latents_path(root, r.conversation_id, r.person)
        path.parent.mkdir(exist_ok=True)
        np.save(path, (params @ P + 1e-4 * rng.normal(size=(len(params), SMALL.latent_dim))).astype(np.float32))
    (root / "latents" / "meta.json").write_text(json.dumps({"ae_tag": "linear-test", "latent_dim": SMALL.latent_dim}))
    return root


# ------------------------------------------------------------------------------------------------ readout
def test_readout_recovers_a_linear_map_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 16))
    W = rng.normal(size=(16, 10))
    Y = X @ W + 0.5
    readout = ParamReadout.fit(X, Y, alpha=1e-6)
    assert readout.r2(X, Y)["mean"] > 0.999
    assert np.allclose(readout(X), Y, atol=1e-3)
    assert readout(torch.from_numpy(X[None]).float()).shape == (1, 500, 10)  # (B, T, D) tensors too
    loaded = ParamReadout.load(readout.save(tmp_path / "readout.pt"))
    assert np.allclose(loaded(X), readout(X), atol=1e-5) and loaded.card["name"] == "latent-readout-ridge"
    with pytest.raises(FileNotFoundError, match="notebook 02"):
        ParamReadout.load(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="NaN"):
        ParamReadout.fit(np.full((4, 3), np.nan), np.zeros((4, 10)))


def test_corpus_readout_is_fitted_on_train_and_scored_on_held_out_identities(linear_corpus):
    readout = fit_corpus_readout(linear_corpus)
    info = readout.info
    assert info["fit_split"] == "train" and info["alpha_chosen_on"] == "val" and info["alpha"] in info["val_mean_r2_by_alpha"]
    per, seen = info["r2_test"]["per_param"], info["r2_train"]["per_param"]
    assert set(per) == set(readout.columns)
    # the latents are a linear map of the params: every parameter that varies in train is recovered
    assert all(per[c] > 0.95 for c in per if np.isfinite(seen[c]) and np.isfinite(per[c]))


# ------------------------------------------------------------------------------------------------ variants
def test_variant_configs():
    assert train_config(SMALL, VARIANTS["ours"]) == SMALL
    assert train_config(SMALL, VARIANTS["mask_blockwise"]).mask == "blockwise"
    assert train_config(SMALL, VARIANTS["block5"]).block == 5 and train_config(SMALL, VARIANTS["block5"]).window == 50
    assert train_config(SMALL, VARIANTS["infp"]).mask == "bidirectional"
    assert train_config(SMALL, VARIANTS["talking"]).conditioner == "avatar_only"
    ar = train_config(SMALL, VARIANTS["ar_diffusion"])
    assert (ar.window, ar.context_frames, ar.window + ar.context_frames) == (10, 40, 50)
    sampled = sample_config(SMALL, VARIANTS["ar_diffusion"])
    assert (sampled.window, sampled.context_frames, sampled.mask) == (50, 0, SMALL.mask)


def test_ar_diffusion_noises_only_the_last_block():
    """AR diffusion = 40 clean context frames (t = 0, outside the loss) + one noisy 10-frame block."""
    model = AvatarForcing(train_config(SMALL, VARIANTS["ar_diffusion"]))
    t, _ = noise_and_times(model.generator, torch.zeros(64, 50, SMALL.latent_dim), torch.Generator().manual_seed(0))
    assert (t[:, :40] == 0).all() and (t[:, 40:] == t[:, 40:41]).all() and (t[:, 40] > 0).float().mean() > 0.9


def test_zero_user_motion_and_training_windows(linear_corpus):
    windows = training_windows(linear_corpus, SMALL, VARIANTS["ours"])
    zeroed = training_windows(linear_corpus, SMALL, VARIANTS["no_user_motion"])
    assert isinstance(zeroed, ZeroUserMotion) and len(zeroed) == len(windows)
    a, b = windows[3], zeroed[3]
    assert b["user_motion"].abs().sum() == 0 and a["user_motion"].abs().sum() > 0
    assert all(torch.equal(a[k], b[k]) for k in ("motion", "avatar_wave", "user_wave", "ref"))


@pytest.mark.parametrize("name", ["ar_diffusion", "infp", "no_user_motion"])
def test_variants_train_reload_and_generate_held_out_clips(linear_corpus, tmp_path, name):
    profile = get_profile("smoke", steps=2, batch_size=2, ckpt_every=2, log_every=1)
    ckpt, summary = train_variant(name, SMALL, linear_corpus, profile, tmp_path)
    assert ckpt.is_file() and summary["steps"] == 2 and np.isfinite(summary["final_loss"])
    model = load_variant(ckpt, name)
    assert model.cfg == sample_config(SMALL, VARIANTS[name])
    exported = torch.load(export_checkpoint(ckpt, tmp_path / "model.pt", linear_corpus), weights_only=False)
    assert exported["latent_space"] == "linear-test" and "optimizer" not in exported
    clips = held_out_clips(linear_corpus, "test", max_frames=60)
    assert len(clips) == 2 and {c["person"] for c in clips} == {"A", "B"}
    c = clips[0]
    assert c["avatar_wave"].shape == (60 * 640,) and c["user_motion"].shape == (60, SMALL.latent_dim)
    assert c["avatar_params"].shape == (60, 10) and np.array_equal(c["ref"], c["avatar_latents"][0])
    v = VARIANTS[name]
    out = generate_clips(model, clips, kind=v.kind, user_motion=v.user_motion, nfe=3, progress=False)
    again = generate_clips(model, clips, kind=v.kind, user_motion=v.user_motion, nfe=3, progress=False)
    assert [m.shape for m in out] == [(60, SMALL.latent_dim)] * 2 and all(np.isfinite(m).all() for m in out)
    assert all(np.array_equal(a, b) for a, b in zip(out, again))  # seeded


def test_held_out_rollouts_cover_whole_conversations(linear_corpus):
    corpus = Corpus(linear_corpus)
    rollouts = held_out_clips(linear_corpus, "test", whole_conversations=True)
    n = int(corpus.conversations[corpus.conversations.split == "test"].n_frames.iloc[0])
    assert [r["frames"] for r in rollouts] == [n, n]
    assert len(held_out_clips(linear_corpus, "test", max_clips=1)) == 1


# ------------------------------------------------------------------------------------------------ scoring
def test_motion_scores_of_the_truth_and_of_the_readout(linear_corpus):
    clips = held_out_clips(linear_corpus, "test")
    readout = fit_corpus_readout(linear_corpus)
    refs = scoring.reference_rows(clips, readout)
    gt = refs["GT (corpus params)"]
    assert gt["rPCC-Exp"] == 0 and gt["rPCC-Pose"] == 0 and gt["SID"] > 1 and gt["Var"] > 0
    via = refs["GT latents via readout"]  # near-perfect readout: near the truth's own scores
    assert via["rPCC-Exp"] < 0.05 and abs(via["Var"] - gt["Var"]) < 0.3 * gt["Var"]  # laugh is not in the latents
    row = scoring.table_row("x", "src", via, ("rPCC-Exp", "FID"), reference=True)
    assert row == {"method": "x", "source": "src", "rPCC-Exp": via["rPCC-Exp"], "reference": True}


def test_drift_jitter_latency_and_claims():
    rng = np.random.default_rng(0)
    gt = [rng.normal(size=(200, 10)) for _ in range(2)]
    drifting = [g + np.linspace(0, 3, 200)[:, None] for g in gt]
    assert scoring.drift_curve(drifting, gt, 50)["drift"] > 1 > abs(scoring.drift_curve(gt, gt, 50)["drift"])
    smooth = np.cumsum(rng.normal(size=(120, 4)) * 0.01, 0)
    jumpy = smooth + (np.arange(120) // 10)[:, None] * 0.5  # steps at every block start
    assert scoring.boundary_jitter([jumpy], 10, 50)["ratio"] > 5 > scoring.boundary_jitter([smooth], 10, 50)["ratio"]
    model = AvatarForcing(SMALL).eval()
    lat = scoring.block_latency(model, nfe=3, blocks=2)
    assert lat["buffer_s"] == 0.4 and lat["latency_s"] > lat["buffer_s"]
    infp = scoring.block_latency(AvatarForcing(train_config(SMALL, VARIANTS["infp"])).eval(), nfe=3)
    assert infp["buffer_s"] == 3.0
    assert scoring.direction_claim("c", "p", 0.2, 0.1, "down", metric="m")["verdict"] == "reproduced in direction"
    assert scoring.direction_claim("c", "p", 0.2, 0.1, "up", metric="m")["verdict"] == "not reproduced"
    # beta 1000 saturated (DPO's gradient factor ~0 over the run), 100 at the threshold, 10 fully active
    assert scoring.active_beta({1000.0: 0.003, 100.0: scoring.DPO_ACTIVE_MIN_WEIGHT, 10.0: 0.35}) == 100.0
    assert scoring.active_beta({1000.0: 0.003, 100.0: 0.02}) is None


def test_stage0_figures_and_video_frames(linear_corpus):
    ae = MotionAutoencoder(get_config("tiny", ae_width=0.03)).eval()
    corpus = Corpus(linear_corpus)
    frame = np.asarray(corpus.stream("conv0002", "A")["frames"][0])
    grid = reconstruction_grid(ae, linear_corpus, n=3)
    assert grid.dtype == np.uint8 and grid.shape == (3 * 66, 3 * 66, 3)
    assert traversal_grid(ae, frame, np.ones(20), steps=3).shape == (20 * 66, 3 * 66, 3)
    video = decode_motion(ae, frame, np.zeros((5, 64), np.float32), batch=2)
    assert video.shape == (5, 64, 64, 3) and video.dtype == np.uint8
    assert side_by_side([video, video[:4]], scale=2).shape == (4, 128, 256, 3)


def test_oracle_latent_view_is_invertible_and_renders(tiny_corpus, tmp_path):
    corpus = shutil.copytree(tiny_corpus, tmp_path / "corpus")
    view = oracle_latent_corpus(corpus, SMALL.latent_dim)
    assert view.name == "corpus_oracle_latents" and (view / "manifest.parquet").is_symlink()
    assert json.loads((view / "latents" / "meta.json").read_text())["ae_tag"].startswith("oracle-params")
    again = np.load(latents_path(oracle_latent_corpus(corpus, SMALL.latent_dim), "conv0002", "A"))
    assert np.array_equal(again, np.load(latents_path(view, "conv0002", "A")))  # 03 and 04 see the same view
    readout = fit_corpus_readout(view)
    per, seen = readout.info["r2_test"]["per_param"], readout.info["r2_train"]["per_param"]
    assert all(per[c] > 0.999 for c in per if np.isfinite(seen[c]) and np.isfinite(per[c]))
    clip = held_out_clips(view, "test", max_frames=4)[0]
    frames = render_params(view, clip["identity"], clip["avatar_params"])
    stored = np.asarray(Corpus(view).stream(clip["conversation_id"], clip["person"])["frames"][:4])
    assert frames.shape == stored.shape and np.abs(frames.astype(int) - stored).mean() < 5  # the corpus renderer
