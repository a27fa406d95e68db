"""First version of real-video ingestion (data_prep/ingest.py) on small videos made from a real photo."""
import numpy as np
import pytest

from data_prep.corpus import Corpus
from data_prep.ingest import IngestConfig, discover, ingest

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


def _write(path, frames, audio):
    """audio: (C, N) float32 at SR_IN; H.264 + AAC like a camera file."""
    import av

    with av.open(str(path), "w") as box:
        v = box.add_stream("libx264", rate=FPS_IN)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        a = box.add_stream("aac", rate=SR_IN)
        a.layout = "stereo" if len(audio) == 2 else "mono"
        for f in frames:
            box.mux(v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        box.mux(v.encode())
        for i in range(0, audio.shape[1], 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, i:i + 1024]), format="fltp", layout=a.layout)
            fr.sample_rate, fr.pts = SR_IN, i
            box.mux(a.encode(fr))
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
    assert c.meta["generator"] == "data_prep.ingest" and c.meta["params_source"] is None
    assert set(c.conversations.conversation_id) == {"talk1", "talk2"}
    conv = c.conversations.set_index("conversation_id")
    assert conv.loc["talk1", "audio"].startswith("stereo")
    assert abs(conv.loc["talk1", "duration"] - SECONDS) <= 2 / 25  # 30 fps resampled to 25 fps
    clip = c.clip(c.clip_ids()[0], "A")
    assert clip.frames.shape[1:] == (64, 64, 3) and clip.audio.shape == (len(clip.frames) * 640,)
    assert np.isnan(clip.params).all()
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


def test_cli_ingest(src, tmp_path, capsys):
    from afcore.cli import main as afsuite

    assert afsuite(["data", "ingest", "--src", str(src), "--out", str(tmp_path / "r"), "--vad", "energy", "--no-mp4",
                     "--quiet", "--detect-every", "25"]) == 0
    assert "ingested" in capsys.readouterr().out
    assert afsuite(["data", "ingest", "--src", str(tmp_path / "missing"), "--out", str(tmp_path / "s"), "--quiet"]) == 2
    assert "not a folder" in capsys.readouterr().err
