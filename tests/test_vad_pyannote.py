"""The optional pyannote.audio VAD backend (data_prep/vad.py): a tiny PyanNet segmentation model is trained
here in seconds on formant speech over noise, saved as a pyannote.audio checkpoint, loaded back through our
local-only path and scored with pyannote.metrics on a held-out recording against its untrained self; missing
or wrong checkpoints fail clearly; an ingestion run records the backend and the model."""
import json

import numpy as np
import pytest
import torch

from data_prep import vad
from data_prep.schema import SAMPLE_RATE
from test_synth_ingest import SECONDS, _face_frames, _write

CHUNK_S = 2.0  # the model's training window, also the pipeline's sliding-window length


def _scene(seed: int, seconds: float):
    """(N,) float32 16 kHz: formant-voice sentences at random gaps over faint noise, and [(start_s, end_s)]
    of their voiced parts (pauses of 0.2 s or more split them), the reference speech."""
    from data_prep.synth.identity import Voice
    from data_prep.synth.speech import SENTENCES, make_utterance

    rng = np.random.default_rng(seed)
    voice = Voice("en", 160, 50, float(rng.uniform(95, 230)), float(rng.uniform(0.85, 1.15)), float(rng.uniform(-6, 3)))
    x = rng.normal(0, 10 ** (-48 / 20), int(seconds * SAMPLE_RATE)).astype(np.float32)
    segs, t = [], rng.uniform(0.2, 1.0)
    while True:
        u = make_utterance(SENTENCES[rng.integers(len(SENTENCES))], "speech", voice, "formant")
        a = int(t * SAMPLE_RATE)
        if a + len(u.audio) >= len(x):
            return x, segs
        x[a:a + len(u.audio)] += u.audio
        segs += [(t + s, t + e) for s, e in u.voiced]
        t += u.duration + rng.uniform(0.3, 1.5)


def _tiny_pyannet():
    """PyanNet (its fixed SincNet front end, then a 16-unit BiLSTM and one 16-unit layer: 53k weights) with a
    voice-activity specification: one binary "speech" class per frame."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    model = PyanNet(sincnet={"stride": 10}, lstm={"hidden_size": 16, "num_layers": 1},
                    linear={"hidden_size": 16, "num_layers": 1})
    model.specifications = Specifications(problem=Problem.BINARY_CLASSIFICATION, resolution=Resolution.FRAME,
                                          duration=CHUNK_S, classes=["speech"])
    model.setup()  # adds the task-dependent classifier and sigmoid, as loading a checkpoint does
    return model


def _train(model, scenes, steps: int, batch: int = 8, seed: int = 0) -> list:
    """Plain BCE on random CHUNK_S crops, labels = reference speech at each output frame's centre; -> losses."""
    import torch.nn.functional as F

    rng, n = np.random.default_rng(seed), int(CHUNK_S * SAMPLE_RATE)
    rf = model.receptive_field
    centres = rf.start + np.arange(model.num_frames(n)) * rf.step + rf.duration / 2  # (F,) seconds into a crop
    opt, losses = torch.optim.Adam(model.parameters(), lr=3e-3), []
    model.train()
    for _ in range(steps):
        xs, ys = [], []
        for k in rng.integers(len(scenes), size=batch):
            x, segs = scenes[k]
            a = int(rng.integers(len(x) - n))
            c = centres + a / SAMPLE_RATE
            xs.append(x[a:a + n])
            ys.append(np.any([(c >= s) & (c < e) for s, e in segs], axis=0))
        p = model(torch.from_numpy(np.stack(xs))[:, None])  # (B, 1, n) -> (B, F, 1) probabilities
        loss = F.binary_cross_entropy(p, torch.from_numpy(np.stack(ys)).float()[..., None])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _save_checkpoint(model, path) -> None:
    """The Lightning checkpoint layout Model.from_pretrained reads: weights, constructor hyper-parameters, the
    Lightning version (for its migrations) and pyannote.audio's own block (version, class, specifications)."""
    import lightning

    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": lightning.__version__}
    model.on_save_checkpoint(ckpt)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    """Any attempt to fetch from the Hugging Face hub fails the test instead of (not) going online."""
    import pyannote.audio.core.model as model_module

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download {args} from the Hugging Face hub")
    monkeypatch.setattr(model_module, "download_from_hf_hub", refuse)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Untrained and trained checkpoints of one tiny model: a file path and a folder path."""
    root = tmp_path_factory.mktemp("pyannote_vad")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = _tiny_pyannet()
        _save_checkpoint(model, root / "untrained.bin")
        losses = _train(model, [_scene(seed, 30.0) for seed in range(4)], steps=60)
        _save_checkpoint(model, root / "trained" / "pytorch_model.bin")
    finally:
        torch.set_num_threads(threads)
    return dict(untrained=root / "untrained.bin", trained=root / "trained", losses=losses,
                weights={k: v.clone() for k, v in model.state_dict().items()})


def test_locally_trained_tiny_model_detects_speech_through_our_path(models):
    losses = models["losses"]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    loaded = vad.pyannote_pipeline(models["trained"])._segmentation.model  # the folder form of the path
    assert type(loaded).__name__ == "PyanNet" and loaded.specifications.classes == ["speech"]
    state = loaded.state_dict()
    assert state.keys() == models["weights"].keys() and all(torch.equal(v, models["weights"][k]) for k, v in state.items())

    x, segs = _scene(100, 20.0)  # another voice and other sentences than in training
    ref, duration = vad.segments_to_annotation(segs, "held_out"), len(x) / SAMPLE_RATE
    der = {}
    for name in ("trained", "untrained"):
        hyp, used = vad.detect(x, "held_out", "pyannote", pyannote_model=models[name])
        assert used == "pyannote" and hyp.uri == "held_out" and set(hyp.labels()) <= {"speech"}
        der[name] = vad.detection_error_rate(ref, hyp, duration)["detection_error_rate"]
    speech_share = sum(b - a for a, b in segs) / duration
    always = (1 - speech_share) / speech_share  # DER of calling everything speech (never calling it: 1.0)
    print(f"held-out DER: trained {der['trained']:.3f}, untrained {der['untrained']:.3f}, always-speech {always:.3f}")
    assert der["trained"] < 0.25 and der["trained"] < 0.5 * min(der["untrained"], always, 1.0)
    short, _ = vad.detect(x[: SAMPLE_RATE // 2], "short", "pyannote", pyannote_model=models["trained"])
    assert all(0 <= s.start < s.end <= 0.5 + 1e-6 for s in short.get_timeline())  # shorter than one window


def test_missing_or_wrong_checkpoints_fail_clearly(tmp_path):
    for missing in (tmp_path / "nope.bin", tmp_path, "pyannote/segmentation"):  # a hub id is never fetched
        with pytest.raises(FileNotFoundError, match="not found.*nothing is downloaded"):
            vad.detect(np.zeros(SAMPLE_RATE, np.float32), backend="pyannote", pyannote_model=missing)
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint at all")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    for bad in ("junk.bin", "plain.pt"):
        with pytest.raises(ValueError, match=f"{bad} is not a pyannote.audio model checkpoint"):
            vad.pyannote_pipeline(tmp_path / bad)
    with pytest.raises(ValueError, match="needs pyannote_model"):
        vad.detect(np.zeros(SAMPLE_RATE, np.float32), backend="pyannote")
    with pytest.raises(ValueError, match="must be one of"):
        vad.detect(np.zeros(SAMPLE_RATE, np.float32), backend="webrtc")


def test_missing_pyannote_audio_is_named(tmp_path, monkeypatch):
    import sys

    torch.save({}, tmp_path / "m.bin")
    monkeypatch.setitem(sys.modules, "pyannote.audio", None)  # makes `import pyannote.audio` fail
    with pytest.raises(ImportError, match="needs pyannote.audio.*pip install pyannote.audio"):
        vad.pyannote_pipeline(tmp_path / "m.bin")


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """One pair conversation whose voices are held-out formant scenes, muxed as AAC at 16 kHz."""
    root, frames = tmp_path_factory.mktemp("videos"), _face_frames()
    for p, seed in (("A", 200), ("B", 201)):
        _write(root / f"talk_{p}.mp4", frames, _scene(seed, SECONDS)[0][None], sr=SAMPLE_RATE)
    return root


def test_cli_needs_model_and_backend_together(src, models, tmp_path, capsys):
    from afcore.cli import main as afsuite

    def run(out, *extra):
        return afsuite(["data", "ingest", "--src", str(src), "--out", str(tmp_path / out), "--no-mp4", "--quiet", *extra])
    assert run("a", "--vad", "pyannote") == 2
    assert "--vad pyannote needs --pyannote-model" in capsys.readouterr().err
    assert run("b", "--vad", "energy", "--pyannote-model", str(models["trained"])) == 2
    assert "--pyannote-model is only used with --vad pyannote" in capsys.readouterr().err
    assert run("c", "--vad", "pyannote", "--pyannote-model", str(tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'x'} not found" in err and "nothing is downloaded" in err
    assert not any((tmp_path / d).exists() for d in "abc")


def test_ingest_with_pyannote_records_backend_and_model(src, models, tmp_path):
    from data_prep.corpus import Corpus
    from data_prep.ingest import IngestConfig, ingest

    cfg = IngestConfig(size=64, detect_every=10, vad="pyannote", pyannote_model=str(models["trained"]), mp4=False,
                       params=False)
    out = ingest(src, tmp_path / "real", cfg, progress=False)
    c = Corpus(out)
    model_file = str((models["trained"] / "pytorch_model.bin").resolve())
    assert c.meta["vad_backend"] == "pyannote" and c.meta["vad_model"] == model_file
    assert c.meta["config"]["pyannote_model"] == str(models["trained"])
    curation = json.loads((out / "curation.json").read_text())
    assert [x["status"] for x in curation] == ["ok"]
    assert f"vad: pyannote (segmentation model {model_file})" in curation[0]["notes"]
    seg = c.segments
    assert set(seg.person) == {"A", "B"}
    for p, seed in (("A", 200), ("B", 201)):  # the turns written come from the model and match the voices
        segs = _scene(seed, SECONDS)[1]
        hyp = vad.segments_to_annotation([(r.start, r.end) for r in seg[seg.person == p].itertuples()], "talk")
        assert vad.detection_error_rate(vad.segments_to_annotation(segs, "talk"), hyp, SECONDS)["detection_error_rate"] < 0.15
