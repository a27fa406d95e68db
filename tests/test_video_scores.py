"""eval.video_scores on the tiny corpus's held-out conversation with the quick-trained extractors of conftest's
video_extractors_dir: relations that must hold whatever the extractor (defects, identity, audio), not values."""
import numpy as np
import pytest
import torch

from data_prep.corpus import Corpus
from eval.extractors.renders import corpus_streams
from eval.extractors.videofeat import _blur
from eval.video_scores import EXTRACTOR_OF, video_extractors, video_scores

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # 2 OpenMP threads on 2 shared cores were 10x slower here (see common.torch_threads)
    yield


@pytest.fixture(scope="module")
def extractors(tiny_corpus, video_extractors_dir):
    ex, records = video_extractors(tiny_corpus, video_extractors_dir)
    assert not any("training_s" in r for r in records.values())  # the cache is read, never retrained
    return ex


@pytest.fixture(scope="module")
def clips(tiny_corpus):
    """Both persons of the test conversation (14 s each): frames, their own audio, their first frames."""
    streams = list(corpus_streams(Corpus(tiny_corpus), "test"))
    frames = [np.array(s["frames"]) for s in streams]
    return frames, [s["audio"] for s in streams], [f[0] for f in frames]


def blur(frames):
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    return (_blur(x, torch.full((len(frames),), 1.5)).permute(0, 2, 3, 1) * 255).round().byte().numpy()


def test_video_scores_see_defects_identity_and_sync(extractors, clips):
    frames, audio, refs = clips
    gt = video_scores(frames, frames, audio, refs, extractors)
    assert gt["extractors"] == {k: extractors[m].card["name"] for k, m in EXTRACTOR_OF.items()}
    assert abs(gt["FID"]) < 1e-3 and abs(gt["FVD"]) < 1e-3 and gt["fvd_windows"] == 2 * (360 // 16)
    blurred = video_scores([blur(f) for f in frames], frames, audio, refs, extractors)
    assert blurred["FID"] > 10 and blurred["FVD"] > 1 and blurred["CSIM"] < gt["CSIM"]  # measured 631, 12.6
    other = video_scores(frames, frames, audio, refs[::-1], extractors)  # each clip against the other's face
    assert gt["CSIM"] > 0.9 and other["CSIM"] < gt["CSIM"] - 0.5  # measured 0.98 vs -0.44
    # the avatar's own audio, the partner's, and its own 40 frames late (beyond the +-15 the protocol searches)
    partner = video_scores(frames, frames, audio[::-1], refs, extractors)
    late = video_scores(frames, frames, [np.roll(a, 40 * 640) for a in audio], refs, extractors)
    assert gt["lse_offset_per_clip"] == [0, 0]
    for wrong in (partner, late):  # measured LSE-D 0.97 vs 1.20 / 1.04, LSE-C 0.090 vs 0.023 / 0.041
        assert gt["LSE-D"] < wrong["LSE-D"] and gt["LSE-C"] > wrong["LSE-C"]


def test_video_scores_refuse_mismatched_inputs(extractors, clips):
    frames, audio, refs = clips
    with pytest.raises(ValueError, match="same number"):
        video_scores(frames, frames[:1], audio, refs, extractors)
    with pytest.raises(ValueError, match="FVD window"):
        video_scores([f[:10] for f in frames], frames, audio, refs, extractors)


def test_video_columns_draw_oracle_latents_with_the_renderer(tiny_corpus, video_extractors_dir, extractors):
    """The ground-truth oracle latents, drawn by the renderer from their exact read-out, score like the corpus frames
    themselves; shuffled in time they do not."""
    from afcore.data import oracle_latent_corpus
    from eval.experiments import held_out_clips
    from eval.readout import fit_corpus_readout
    from eval.video_scores import score_generated, video_columns

    view = oracle_latent_corpus(tiny_corpus, 16)
    clips = held_out_clips(view, "test")
    truth = [c["avatar_latents"] for c in clips]
    shuffled = [m[np.random.default_rng(0).permutation(len(m))] for m in truth]
    cols = video_columns({"shuffled": shuffled}, clips, view, latents="oracle", readout=fit_corpus_readout(view),
                         extractors_dir=video_extractors_dir)
    scores, gt = cols["scores"], cols["scores"]["GT latents via readout"]
    assert not cols["not_measured"] and set(scores) == {"shuffled", "GT latents via readout", "GT (corpus frames)"}
    assert "renderer" in cols["source"] and set(cols["records"]) == {"fid", "fvd", "csim", "lipsync"}
    assert gt["FVD"] < 0.5 * scores["shuffled"]["FVD"] and gt["FID"] < 1.0
    assert gt["LSE-D"] < scores["shuffled"]["LSE-D"]
    with pytest.raises(ValueError, match="pass one"):
        score_generated({"gt": truth}, clips, view, extractors)


def test_video_columns_say_why_they_are_not_measured(tiny_corpus):
    from eval.video_scores import video_columns

    off = video_columns({}, [], tiny_corpus, enabled=False)
    assert off["not_measured"] == dict.fromkeys(EXTRACTOR_OF, "video_metrics = False") and not off["scores"]
    no_ae = video_columns({}, [], tiny_corpus, latents="autoencoder", autoencoder="")
    assert set(no_ae["not_measured"]) == set(EXTRACTOR_OF) and "no autoencoder" in no_ae["not_measured"]["FID"]
