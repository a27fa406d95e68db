"""Real-video ingestion (data_prep/ingest.py) on small videos made from a real photo: layouts, face params,
bad inputs (curation report), VAD on the pyannote sample, pre-separated / mixed audio."""
import json

import numpy as np
import pytest

from data_prep.corpus import Corpus
from data_prep.ingest import IngestConfig, discover, ingest
from data_prep.ingest_media import IngestError

FPS_IN, SECONDS, SR_IN = 30, 4, 22050


def _face_frames(flip=False, drift=0):
    from skimage import data
    from skimage.transform import rescale

    face = (rescale(data.astronaut(), 0.5, channel_axis=2) * 255).astype(np.uint8)  # a real face, 256 px
    face = face[:, ::-1] if flip else face
    frames = []
    for k in range(FPS_IN * SECONDS):
        dx = int(drift * np.sin(2 * np.pi * k / (FPS_IN * 2)))
        frames.append(np.roll(face, dx, axis=1))
    return np.stack(frames)


def _voice(on_s, off_s, f0=140.0):
    t = np.arange(SECONDS * SR_IN) / SR_IN
    x = 0.3 * np.sign(np.sin(2 * np.pi * f0 * t)) * (1 + np.sin(2 * np.pi * 4 * t)) / 2  # buzzy, syllable-modulated
    return (x * ((t >= on_s) & (t < off_s))).astype(np.float32)


def _write(path, frames, audio, sr=SR_IN):
    """audio: (C, N) float32 at `sr` or None (no audio stream); H.264 + AAC like a camera file."""
    import av

    with av.open(str(path), "w") as box:
        v = box.add_stream("libx264", rate=FPS_IN)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if audio is not None:
            a = box.add_stream("aac", rate=sr)
            a.layout = "stereo" if len(audio) == 2 else "mono"
        for f in frames:
            box.mux(v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        box.mux(v.encode())
        for i in range(0, 0 if audio is None else audio.shape[1], 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, i:i + 1024]), format="fltp", layout=a.layout)
            fr.sample_rate, fr.pts = sr, i
            box.mux(a.encode(fr))
        if audio is not None:
            box.mux(a.encode())


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    left, right = _face_frames(drift=6), _face_frames(flip=True)
    _write(root / "talk1.mp4", np.concatenate([left, right], axis=2), np.stack([_voice(0.5, 2.0), _voice(2.4, 3.6, 110)]))
    _write(root / "talk2_A.mp4", left, _voice(0.3, 1.5)[None])
    _write(root / "talk2_B.mp4", right, _voice(1.8, 3.5, 110)[None])
    return root


def test_discover_finds_both_layouts(src):
    convs = discover(src)
    assert [(c["conversation_id"], c["layout"]) for c in convs] == [("talk1", "side-by-side"), ("talk2", "pair")]


def test_ingested_corpus_reads_like_the_synthetic_one(src, tmp_path):
    out = ingest(src, tmp_path / "real", IngestConfig(size=64, detect_every=10, vad="energy"), progress=False)
    c = Corpus(out)
    assert c.meta["generator"] == "data_prep.ingest" and c.meta["params_source"] == "dlib68-pnp-v1"
    assert json.loads((out / "curation.json").read_text()) == c.meta["curation"]
    assert [x["status"] for x in c.meta["curation"]] == ["ok", "ok"]
    assert [x["scene_cuts"] for x in c.meta["curation"]] == [[], []]  # continuous shots: no false cut
    assert set(c.conversations.conversation_id) == {"talk1", "talk2"}
    conv = c.conversations.set_index("conversation_id")
    assert conv.loc["talk1", "audio"].startswith("stereo")
    assert abs(conv.loc["talk1", "duration"] - SECONDS) <= 2 / 25  # 30 fps resampled to 25 fps
    clip = c.clip(c.clip_ids()[0], "A")
    assert clip.frames.shape[1:] == (64, 64, 3) and clip.audio.shape == (len(clip.frames) * 640,)
    # face parameters from dlib landmarks: measured columns finite, unmeasured (gaze, laugh) NaN
    cols = list(clip.columns)
    measured = [cols.index(k) for k in ("jaw_open", "smile", "brow_raise", "blink", "yaw", "pitch", "roll")]
    assert np.isfinite(clip.params[:, measured]).mean() > 0.9
    assert np.isnan(clip.params[:, [cols.index(k) for k in ("gaze_x", "gaze_y", "laugh")]]).all()
    jaw = clip.params[:, cols.index("jaw_open")]
    assert 0 < np.nanmedian(jaw) < 0.5 and abs(np.nanmedian(clip.params[:, cols.index("roll")])) < 0.3
    # the crop follows the face: a face (skin tones, not the black border) fills the middle of the crop
    mid = clip.frames[:, 16:48, 16:48].astype(int)
    assert mid.mean() > 60
    # per-person VAD turns: A speaks first in talk1, B later (stereo channels kept apart)
    seg = c.segments[c.segments.conversation_id == "talk1"]
    a, b = seg[seg.person == "A"], seg[seg.person == "B"]
    assert a.start.min() == pytest.approx(0.5, abs=0.15) and a.end.max() == pytest.approx(2.0, abs=0.15)
    assert b.start.min() == pytest.approx(2.4, abs=0.15)
    # identity-disjoint splits even without an identity table (each person is their own identity)
    assert (c.manifest.groupby("identity").split.nunique() == 1).all()


def test_bad_ingest_arguments(src, tmp_path):
    with pytest.raises(FileNotFoundError, match="no videos"):
        ingest(tmp_path, tmp_path / "x")
    with pytest.raises(ValueError, match="--layout"):
        ingest(src, tmp_path / "x", IngestConfig(layout="grid"))
    assert not (tmp_path / "x").exists()


def test_cli_ingest(bad_src, tmp_path, capsys):
    from afcore.cli import main as afsuite

    src = tmp_path / "src"  # the short good pair only (the batch tests cover the rest)
    src.mkdir()
    for name in ("good_A.mp4", "good_B.mp4"):
        (src / name).write_bytes((bad_src / name).read_bytes())
    assert afsuite(["data", "ingest", "--src", str(src), "--out", str(tmp_path / "r"), "--vad", "energy", "--no-mp4",
                     "--quiet", "--detect-every", "25"]) == 0
    assert "ingested" in capsys.readouterr().out
    assert afsuite(["data", "ingest", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "s"), "--quiet"]) == 2
    assert "not a folder" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input: skipped, reported, batch goes on
def _short(frames, seconds=1.2):
    return frames[: int(FPS_IN * seconds)]


def _mono(seconds=1.2, sr=SR_IN, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    return np.tile(0.2 * np.sin(2 * np.pi * 180 * t).astype(np.float32), (channels, 1))


@pytest.fixture(scope="module")
def bad_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    face, mirror = _short(_face_frames()), _short(_face_frames(flip=True))
    _write(root / "good_A.mp4", face, _mono())
    _write(root / "good_B.mp4", mirror, _mono())
    _write(root / "hifi_A.mp4", face, _mono(sr=44100, channels=2), sr=44100)  # stereo 44.1 kHz
    _write(root / "hifi_B.mp4", mirror, _mono(sr=44100, channels=2), sr=44100)
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    _write(root / "whole.mp4", np.concatenate([face, mirror], axis=2), _mono())
    data = (root / "whole.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "whole.mp4").unlink()
    _write(root / "silent.mp4", np.concatenate([face, mirror], axis=2), None)  # no audio stream
    _write(root / "noface.mp4", np.full((30, 128, 256, 3), 90, np.uint8), _mono())
    _write(root / "twofaces_A.mp4", np.concatenate([face, mirror], axis=2), _mono())  # two people in a "pair" file
    _write(root / "twofaces_B.mp4", mirror, _mono())
    _write(root / "short.mp4", np.concatenate([face, mirror], axis=2)[:9], _mono(0.3))  # 9 frames at 30 fps
    return root


def test_bad_inputs_are_skipped_and_reported(bad_src, tmp_path):
    out = ingest(bad_src, tmp_path / "c", IngestConfig(detect_every=10, vad="energy", mp4=False), progress=False)
    c = Corpus(out)
    assert set(c.conversations.conversation_id) == {"good", "hifi"}
    report = {x["conversation_id"]: x for x in json.loads((out / "curation.json").read_text())}
    assert report == {x["conversation_id"]: x for x in c.meta["curation"]} and c.meta["n_skipped"] == 6
    expect = {"corrupt": ("corrupt.mp4", "corrupt or truncated"), "truncated": ("truncated.mp4", "corrupt or truncated"),
              "silent": ("silent.mp4", "no audio stream"), "noface": ("noface.mp4", "no face found"),
              "twofaces": ("twofaces_A.mp4", "two faces where one is expected"),
              "short": ("short.mp4", "shorter than one block of 10 frames")}
    for cid, (name, words) in expect.items():
        assert report[cid]["status"] == "skipped", cid
        assert name in report[cid]["problem"] and words in report[cid]["problem"], report[cid]["problem"]
    hifi = " | ".join(report["hifi"]["notes"])
    assert "44100 Hz -> 16000 Hz" in hifi and "stereo downmixed to mono" in hifi
    # no partial output of a skipped conversation, and the kept ones are whole
    names = {f.name.split("_")[0].split(".")[0] for sub in ("frames", "params", "audio", "rttm") for f in (out / sub).iterdir()}
    assert names == {"good", "hifi"}
    clip = c.clip(c.clip_ids()[0], "B")
    assert clip.audio.shape == (len(clip.frames) * 640,) and np.abs(clip.audio).max() > 0.05


def test_a_batch_with_nothing_usable_fails_cleanly(bad_src, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("corrupt.mp4", "short.mp4"):
        (src / name).write_bytes((bad_src / name).read_bytes())
    with pytest.raises(IngestError, match="none of the 2 conversations") as err:
        ingest(src, tmp_path / "c", IngestConfig(vad="energy"), progress=False)
    assert "corrupt.mp4" in str(err.value) and "short.mp4" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no corpus, no leftover temp folder


# ---------------------------------------------------------------- VAD on real speech nobody here made
def test_vad_on_the_pyannote_sample():
    from data_prep.ingest import pyannote_sample_vad
    from data_prep.vad import silero_available

    if not silero_available():
        pytest.skip("silero-vad is not installed")
    r = pyannote_sample_vad("silero")
    assert r["backend"] == "silero" and r["duration_s"] == pytest.approx(30.0, abs=0.1)
    assert r["speech_s"] == pytest.approx(22.46, abs=0.05)  # union of the RTTM's two speakers
    assert r["detection_error_rate"] < 0.06  # measured 2.0% (0.25 s missed, 0.19 s false alarm)


# ---------------------------------------------------------------- one mixed track: wav files or lip activity
def test_assign_by_lips_gives_each_segment_to_the_moving_mouth():
    from data_prep.ingest_faces import assign_by_lips, split_mixed
    from data_prep.schema import PARAM_COLUMNS

    T, j = 100, PARAM_COLUMNS.index("jaw_open")
    pa, pb = np.full((T, 10), 0.1, np.float32), np.full((T, 10), 0.1, np.float32)
    wobble = 0.1 + 0.08 * np.sin(np.arange(T) * 1.3)
    pa[:50, j], pb[50:, j] = wobble[:50], wobble[50:]  # A talks in the first 2 s, B in the last 2 s
    pb[90:, :] = np.nan
    pa[90:, :] = np.nan
    got = assign_by_lips([(0.2, 1.5), (2.2, 3.4), (3.7, 3.9)], {"A": pa, "B": pb}, 25)
    assert [g[2] for g in got] == ["A", "B", None]  # the last one: no face measured
    mix = np.ones(4 * 16000, np.float32)
    per = split_mixed(mix, got, 16000)
    assert per["A"][int(0.5 * 16000)] == 1 and per["B"][int(0.5 * 16000)] == 0
    assert per["B"][(3 * 16000)] == 1 and per["A"][(3 * 16000)] == 0
    assert per["A"][int(3.8 * 16000)] == per["B"][int(3.8 * 16000)] == 1 and per["A"][int(2.0 * 16000)] == 0


def test_mixed_mono_split_screen_and_pre_separated_wavs(tmp_path):
    from scipy.io import wavfile

    src = tmp_path / "src"
    src.mkdir()
    face, mirror = _short(_face_frames(), 2), _short(_face_frames(flip=True), 2)
    both = np.concatenate([face, mirror], axis=2)
    t = np.arange(2 * SR_IN) / SR_IN
    _write(src / "mixed.mp4", both, (0.3 * np.sin(2 * np.pi * 150 * t) * (t > 0.5) * (t < 1.5)).astype(np.float32)[None])
    _write(src / "sep.mp4", both, None)  # no sound in the video: the wav files carry the voices
    tone = lambda f, a, b: (0.3 * np.sin(2 * np.pi * f * np.arange(32000) / 16000) * 32767).astype(np.int16) * \
        ((np.arange(32000) >= a * 16000) & (np.arange(32000) < b * 16000))
    wavfile.write(src / "sep_A.wav", 16000, tone(200, 0.2, 0.9).astype(np.int16))
    wavfile.write(src / "sep_B.wav", 48000, np.repeat(tone(120, 1.1, 1.8), 3).astype(np.int16))  # 48 kHz
    c = Corpus(ingest(src, tmp_path / "c", IngestConfig(detect_every=10, vad="energy", mp4=False), progress=False))
    conv = c.conversations.set_index("conversation_id")
    assert conv.loc["mixed", "audio"].startswith("mixed mono track split by lip activity")
    assert conv.loc["sep", "audio"].startswith("pre-separated wav files")
    notes = {x["conversation_id"]: " | ".join(x["notes"]) for x in c.meta["curation"]}
    assert "sep_B.wav: resampled 48000 Hz -> 16000 Hz" in notes["sep"]
    a, b = (c.stream("sep", p)["audio"].astype(np.float32) / 32768 for p in "AB")
    assert np.abs(a[3200:14000]).max() > 0.2 and np.abs(a[18000:]).max() < 0.01  # A's wav, not B's
    assert np.abs(b[18000:28000]).max() > 0.2 and np.abs(b[:16000]).max() < 0.01
    seg = c.segments[c.segments.conversation_id == "sep"]
    assert seg[seg.person == "A"].start.min() == pytest.approx(0.2, abs=0.1)
    assert seg[seg.person == "B"].start.min() == pytest.approx(1.1, abs=0.1)
    # the mixed track: every voiced sample lands in at least one person's track, none is invented
    ma, mb = (c.stream("mixed", p)["audio"].astype(np.float32) / 32768 for p in "AB")
    assert np.abs(np.maximum(np.abs(ma), np.abs(mb))[10000:22000]).max() > 0.2 and np.abs(ma[:6000]).max() < 0.01


def test_without_dlib_params_stay_nan_and_the_cascade_tracks(bad_src, tmp_path, monkeypatch):
    import data_prep.ingest_faces as faces

    monkeypatch.setitem(faces._EXTRACTOR, "x", (None, "face parameters not extracted (params are NaN): no dlib"))
    src = tmp_path / "src"
    src.mkdir()
    for name in ("good_A.mp4", "good_B.mp4"):
        (src / name).write_bytes((bad_src / name).read_bytes())
    c = Corpus(ingest(src, tmp_path / "c", IngestConfig(detect_every=5, vad="energy", mp4=False, detector="skimage"),
                      progress=False))
    assert c.meta["params_source"] is None and "no dlib" in c.meta["params_note"]
    assert c.meta["face_detector"] == "skimage-lbp"
    clip = c.clip(c.clip_ids()[0], "A")
    assert np.isnan(clip.params).all() and clip.frames[:, 16:48, 16:48].mean() > 60


def test_the_vico_release_layout(tmp_path):
    """ViCo's folders: videos/<uuid>.speaker|listener.mp4 (here one pair in a subfolder, as its baseline's
    reorganisation leaves the test videos), audios/<uuid>.wav = the speaker's voice, csv files = the split."""
    from scipy.io import wavfile

    src = tmp_path / "listening_head"
    (src / "videos" / "test").mkdir(parents=True)
    (src / "audios").mkdir()
    face, mirror = _short(_face_frames(drift=6), 2), _short(_face_frames(flip=True), 2)
    for uuid, folder in (("u1", src / "videos"), ("u2", src / "videos" / "test")):
        _write(folder / f"{uuid}.speaker.mp4", face, None)
        _write(folder / f"{uuid}.listener.mp4", mirror, None)
        voice = np.zeros(32000, np.int16)
        voice[8000:24000] = (0.3 * 32767 * np.sin(2 * np.pi * 170 * np.arange(16000) / 16000)).astype(np.int16)
        wavfile.write(src / "audios" / f"{uuid}.wav", 16000, voice)
    (src / "train.csv").write_text("uuid,speaker_id\nu1,s1\n")
    (src / "test.csv").write_text("uuid,speaker_id\nu2,s2\n")
    convs = discover(src)
    assert [(c["conversation_id"], c["convention"], c["split"]) for c in convs] == [("u1", "vico", "train"),
                                                                                   ("u2", "vico", "test")]
    assert convs[0]["roles"] == {"A": "speaker", "B": "listener"} and convs[0]["voices"]["B"] is None
    c = Corpus(ingest(src, tmp_path / "c", IngestConfig(detect_every=10, vad="energy", mp4=False), progress=False))
    conv = c.conversations.set_index("conversation_id")
    assert conv.split.to_dict() == {"u1": "train", "u2": "test"} and c.meta["split_source"] == "the source's split files"
    assert conv.loc["u1", "role_A"] == "speaker" and conv.loc["u1", "audio"] == "pre-separated wav files (A: u1.wav, B: silent)"
    a, b = (c.stream("u1", p)["audio"].astype(np.float32) / 32768 for p in "AB")
    assert np.abs(a[9000:23000]).max() > 0.2 and np.abs(a[:7000]).max() < 0.01  # the speaker's wav
    assert not np.abs(b).any()  # the listener is silent
    seg = c.segments[c.segments.conversation_id == "u1"]
    assert set(seg.person) == {"A"} and seg.start.min() == pytest.approx(0.5, abs=0.1)
    # what a broken release gets told
    (src / "videos" / "test" / "u2.listener.mp4").unlink()
    with pytest.raises(FileNotFoundError, match="u2.speaker.mp4: its listener video u2.listener.mp4 is missing"):
        discover(src)
    (src / "test.csv").write_text("id\nu2\n")
    with pytest.raises(ValueError, match="test.csv: a ViCo split file needs a 'uuid' column"):
        discover(src, "vico")
    with pytest.raises(FileNotFoundError, match="no ViCo videos"):
        discover(tmp_path / "c", "vico")
