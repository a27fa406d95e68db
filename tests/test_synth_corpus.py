"""Building, storing and loading the synthetic corpus: determinism, splits, atomic writes, the CLI."""
import json

import numpy as np
import pandas as pd
import pytest

from afcore.cli import main as afsuite
from data_prep.corpus import Corpus
from data_prep.schema import PARAM_COLUMNS, SAMPLES_PER_FRAME
from data_prep.synth import build
from data_prep.synth.build import SynthConfig, build_corpus

from conftest import TINY_CORPUS as TINY


@pytest.fixture(scope="module")
def corpus_dir(tiny_corpus):
    return tiny_corpus


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".npy", ".wav"))


def test_layout_manifest_and_metadata(corpus_dir):
    c = Corpus(corpus_dir)
    assert {"train", "val", "test"} == set(c.manifest.split)
    for col in ("clip_id", "conversation_id", "person", "identity", "split", "n_frames", "frames_path", "audio_path",
                "params_path", "seed", "voice_backend"):
        assert col in c.manifest.columns
    meta = json.loads((corpus_dir / "corpus.json").read_text())
    assert meta["voice_backend"] in ("espeak", "formant") and meta["param_columns"] == list(PARAM_COLUMNS)
    assert abs(c.conversations.duration.sum() - TINY["hours"] * 3600) < 0.05
    assert not list(corpus_dir.parent.glob(".corpus.*")), "temporary folders left behind"


def test_splits_are_identity_disjoint(corpus_dir):
    m = Corpus(corpus_dir).manifest
    assert (m.groupby("identity").split.nunique() == 1).all()
    assert (m.groupby("partner_identity").split.nunique() == 1).all()


def test_clip_loader_returns_aligned_streams_and_partner(corpus_dir):
    c = Corpus(corpus_dir)
    cid = c.clip_ids("val")[0]
    clip = c.clip(cid, person="B")
    T = len(clip.params)
    assert clip.frames.shape == (T, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (T * SAMPLES_PER_FRAME,) and clip.audio.dtype == np.float32
    assert clip.params.dtype == np.float32 and clip.columns == PARAM_COLUMNS
    assert clip.expression.shape[1] + clip.pose.shape[1] == len(PARAM_COLUMNS)
    assert clip.partner.person == "A" and len(clip.partner.params) == T and clip.partner.identity != clip.identity
    assert isinstance(clip.frames, np.memmap) or isinstance(clip.frames.base, np.memmap)
    for segment, _, label in clip.turns.itertracks(yield_label=True):
        assert 0 <= segment.start <= segment.end <= T / 25 + 1e-6 and label in ("speech", "backchannel", "laugh")


def test_rttm_and_mp4_are_readable(corpus_dir):
    import av
    from pyannote.core import Annotation  # noqa: F401

    c = Corpus(corpus_dir)
    conv = c.conversations.iloc[0]
    rttm = (corpus_dir / conv.rttm_A).read_text().splitlines()
    seg = c.segments[(c.segments.conversation_id == conv.conversation_id) & (c.segments.person == "A")]
    assert len(rttm) == len(seg) and rttm[0].startswith(f"SPEAKER {conv.conversation_id}_A 1 ")
    with av.open(str(corpus_dir / conv.video_path)) as box:
        kinds = {s.type: s.codec_context.name for s in box.streams}
        assert kinds == {"video": "h264", "audio": "aac"}
        v = box.streams.video[0]
        assert (v.width, v.height) == (128, 64)  # the two persons side by side
        assert sum(1 for _ in box.decode(video=0)) == conv.n_frames


def test_same_seed_gives_identical_arrays_for_any_worker_count(corpus_dir, tmp_path):
    again = build_corpus(tmp_path / "again", SynthConfig(workers=1, **TINY), progress=False)
    a, b = _files(corpus_dir), _files(again)
    assert [p.relative_to(corpus_dir) for p in a] == [p.relative_to(again) for p in b]
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes(), x.name
    for table in ("manifest", "segments", "events"):
        pd.testing.assert_frame_equal(pd.read_parquet(corpus_dir / f"{table}.parquet"), pd.read_parquet(again / f"{table}.parquet"))


def test_other_seed_gives_other_corpus(corpus_dir, tmp_path):
    other = build_corpus(tmp_path / "other", SynthConfig(workers=1, mp4=False, **{**TINY, "seed": 4}), progress=False)
    for name in ("params/conv0000_A.npy", "frames/conv0000_A.npy"):
        assert not np.array_equal(np.load(corpus_dir / name), np.load(other / name))


def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected renderer failure")
        return real(*args, **kwargs)

    real = build._render_person
    monkeypatch.setattr(build, "_render_person", flaky)
    with pytest.raises(RuntimeError, match="injected"):
        build_corpus(tmp_path / "broken", SynthConfig(workers=1, mp4=False, **TINY), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_corpus_is_kept_unless_overwrite(corpus_dir, tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_corpus(out, SynthConfig(workers=1, mp4=False, **TINY), progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    build_corpus(out, SynthConfig(workers=1, mp4=False, voice="formant", **TINY), overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and Corpus(out).meta["voice_backend"] == "formant"
    assert "formant" in Corpus(out).meta["voice_backend_description"]


@pytest.mark.parametrize("bad, message", [(dict(hours=0.0), "--hours"), (dict(size=33), "--size"),
                                          (dict(workers=0), "--workers"), (dict(voice="festival"), "--voice"),
                                          (dict(reactivity=1.5), "--reactivity")])
def test_bad_arguments_are_explained(bad, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        build_corpus(tmp_path / "x", SynthConfig(**{**TINY, **bad}), progress=False)
    assert not (tmp_path / "x").exists()


def test_fixed_reactivity_changes_only_how_often_people_react():
    from data_prep.synth.build import plan_corpus
    convs, drawn = plan_corpus(SynthConfig(**TINY))
    convs_r, fixed = plan_corpus(SynthConfig(reactivity=1.0, **TINY))
    assert convs == convs_r and len(drawn) == len(fixed)
    for a, b in zip(drawn, fixed):
        assert (a.appearance, a.voice, a.style.smile_rate) == (b.appearance, b.voice, b.style.smile_rate)
        assert b.style.reactivity == 1.0 and b.style.p_smile_mirror >= 0.15 + 0.75 * 0.7  # the rule at its lowest draw
        assert b.style.p_nod == 0.95 and b.style.p_nod >= a.style.p_nod


def test_cli_synth_and_errors(tmp_path, capsys):
    assert afsuite(["data", "synth", "--hours", "0.004", "--out", str(tmp_path / "c"), "--no-mp4", "--quiet",
                     "--workers", "1", "--seed", "9"]) == 0
    assert "Corpus(" in capsys.readouterr().out
    assert afsuite(["data", "synth", "--hours", "0.004", "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert afsuite(["data", "synth", "--size", "33", "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert "--size" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["silero", "energy"])
def test_vad_agrees_with_the_ground_truth_turns(corpus_dir, backend):
    import torch

    from data_prep import report, vad

    if backend == "silero" and not vad.silero_available():
        pytest.skip("silero-vad is not installed")
    torch.set_num_threads(2)
    df, hyps, used = report.vad_report(Corpus(corpus_dir), backend=backend)
    assert used == backend and len(df) == 6 and torch.get_num_threads() == 2
    assert report.pooled_detection_error_rate(df) < 0.2
    assert all(len(h) > 0 for h in hyps.values())
