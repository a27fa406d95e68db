"""Stage 0 and the corpus datasets: autoencoder training and resume, latents, training windows."""
import shutil

import numpy as np
import pytest
import torch

from afcore.config import get_config
from afcore.data import CorpusWindows, FramePairs, encode_corpus_latents, latents_path
from afcore.train import RandomWindows, stage1, get_profile
from afcore.train_ae import ae_tag, get_ae_profile, load_autoencoder, train_autoencoder

CFG = get_config("tiny", ae_width=0.03, depth=2, hidden=64, audio_hidden=32)


@pytest.fixture(scope="module")
def corpus(tiny_corpus, tmp_path_factory):
    """A private copy: these tests add latents/ to it, and the shared corpus stays as built."""
    return shutil.copytree(tiny_corpus, tmp_path_factory.mktemp("data") / "corpus")


@pytest.fixture(scope="module")
def trained_ae(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ae")
    summary = train_autoencoder(corpus, CFG, get_ae_profile("smoke", steps=6, batch_size=4, ckpt_every=3,
                                                                 eval_pairs=8), out, progress=False)
    return out, summary


def test_frame_pairs_come_from_one_clip_and_are_repeatable(corpus):
    pairs = FramePairs(corpus, "train", seed=0)
    a, b = pairs[5], FramePairs(corpus, "train", seed=0)[5]
    assert a["source"].shape == (3, 64, 64) and -1 <= a["source"].min() and a["source"].max() <= 1
    assert torch.equal(a["source"], b["source"]) and torch.equal(a["driving"], b["driving"])
    with pytest.raises(ValueError, match="no clips in split"):
        FramePairs(corpus, "holdout")


def test_autoencoder_trains_resumes_exactly_and_reports_held_out_quality(trained_ae, corpus, tmp_path):
    out, summary = trained_ae
    held = summary["held_out"]
    assert held["split"] == "test" and 0 < held["psnr_db"] < 60 and -1 <= held["ssim"] <= 1
    # Stop at step 3 (a checkpoint), continue the same run to 6: the weights equal the unbroken run's.
    profile = get_ae_profile("smoke", steps=6, batch_size=4, ckpt_every=3, eval_pairs=8)
    train_autoencoder(corpus, CFG, get_ae_profile("smoke", steps=3, batch_size=4, ckpt_every=3, eval_pairs=8),
                      tmp_path, progress=False)
    resumed = train_autoencoder(corpus, CFG, profile, tmp_path, resume=True, progress=False)
    assert resumed["ae_tag"] == summary["ae_tag"]


def test_latents_then_windows_feed_stage1(trained_ae, corpus, tmp_path):
    ae, _ = load_autoencoder(trained_ae[0] / "autoencoder.pt")
    with pytest.raises(FileNotFoundError, match="afsuite data latents"):
        CorpusWindows(corpus, CFG, "train")
    encode_corpus_latents(corpus, ae, ae_tag(ae), progress=False)
    windows = CorpusWindows(corpus, CFG, "train")
    item = windows[len(windows) // 2]
    reference = RandomWindows(CFG)[0]
    assert {k: v.shape for k, v in item.items()} == {k: v.shape for k, v in reference.items()}
    conv, person, partner, start, offset = windows.items[len(windows) // 2]
    stored = np.load(latents_path(corpus, conv, partner))
    assert torch.equal(item["user_motion"], torch.from_numpy(stored[start + offset:start + offset + CFG.window]))
    with torch.no_grad():  # the latents are the autoencoder's motion of the stored frames
        frames = torch.from_numpy(np.array(windows.corpus.stream(conv, person)["frames"][start:start + 2]))
        images = frames.float().div(127.5).sub(1).permute(0, 3, 1, 2)
        torch.testing.assert_close(ae.encode_motion(images)[0], item["ref"], atol=1e-5, rtol=0)
    summary = stage1(CFG, windows, get_profile("smoke", steps=2, batch_size=2, log_every=1, ckpt_every=2), tmp_path)
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])
