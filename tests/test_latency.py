"""Latency harness: arithmetic, the onset detector on known delays, the INFP* stepper's parity, the interleaved
comparison's structure, the bench JSON, the CUDA path and the notebook. Timings are never asserted."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from afcore.baselines import generate_windowed
from afcore.config import get_config, infp_config, talking_config
from afcore.dfot import FlowTransformer
from afcore.io import write_json
from eval import latency
from eval.latency import (
    WindowStepper,
    _Synced,
    algorithmic_latency,
    bench_stream,
    effective_nfe,
    run_interleaved,
    system_config,
)
from eval.latency_bench import bench_latency, compare_systems, latency_claim, paper_reference
from eval.readout import ParamReadout
from eval.latency_cue import (
    cue_to_reaction,
    detect_onset,
    measure_cue_to_reaction,
    rising_onsets,
)

REPO = Path(__file__).resolve().parents[1]
# One torch thread in tests: on a loaded 2-core machine two threads spin against each other (7x slower).
# Same code paths, a fraction of the cost:
NARROW = dict(hidden=64, depth=2, heads=4, latent_dim=16, cond_dim=16, motion_dirs=8)


# ------------------------------------------------------------------------------------------ algorithmic latency
@pytest.mark.parametrize("base", ["tiny", "paper"])
def test_algorithmic_latency_ours_is_one_block_and_infp_its_window(base):
    ours = algorithmic_latency(get_config(base))
    assert ours["algorithmic_ms"] == pytest.approx(400.0) and ours["startup_buffer_ms"] == pytest.approx(400.0)
    assert algorithmic_latency(get_config(base), warmup="window")["startup_buffer_ms"] == pytest.approx(2000.0)
    for b, ms in ((5, 200.0), (25, 1000.0)):
        assert algorithmic_latency(get_config(base, block=b))["algorithmic_ms"] == pytest.approx(ms)
    infp = algorithmic_latency(infp_config(get_config(base)))
    assert infp["algorithmic_ms"] == pytest.approx(3000.0) and infp["startup_buffer_ms"] == pytest.approx(3000.0)
    assert algorithmic_latency(talking_config(get_config(base)))["algorithmic_ms"] == pytest.approx(400.0)


def test_model_lookahead_adds_nothing_past_the_block_but_audio_lookahead_does():
    for kw in (dict(lookahead=0), dict(lookahead=4), dict(mask="block_lookahead"), dict(mask="framewise")):
        assert algorithmic_latency(get_config("tiny", **kw))["algorithmic_ms"] == pytest.approx(400.0), kw
    a = algorithmic_latency(get_config("tiny"), audio_lookahead_frames=3)
    assert a["algorithmic_ms"] == pytest.approx(520.0) and a["startup_buffer_ms"] == pytest.approx(520.0)
    assert algorithmic_latency(infp_config(get_config("tiny")), audio_lookahead_frames=3)["algorithmic_ms"] == \
        pytest.approx(3120.0)


def test_auto_device_picks_cuda_only_when_present():
    want = ("cuda", "bfloat16") if torch.cuda.is_available() else ("cpu", "float32")
    assert latency.resolve_device() == want
    assert latency.resolve_device("cpu", "bfloat16") == ("cpu", "bfloat16")


def test_nfe_two_runs_as_three_and_paper_numbers_come_from_the_tables():
    assert [effective_nfe(n) for n in (2, 3, 4, 10)] == [3, 3, 4, 10]
    ref = paper_reference()
    assert ref["table1_latency_s"]["Ours"] == 0.5 and ref["table1_latency_s"]["INFP* [70]"] == 3.4
    assert ref["table7_latency_s"] == {5: 0.3, 25: 1.5, 10: 0.5}
    assert system_config("tiny", "infp").window == 75 and system_config("tiny", "talking").conditioner == "avatar_only"


# ------------------------------------------------------------------------------------------ onset detection
def bump(n, onset, rise=6.0, height=1.0):
    """Raised-cosine attack starting at `onset` (frames, may be fractional), then a plateau."""
    t = np.clip((np.arange(n) - onset) / rise, 0, 1)
    return height * (1 - np.cos(np.pi * t)) / 2


@pytest.mark.parametrize("delay", [0, 3, 7, 12.5, 17.25])
def test_onset_detector_recovers_known_delays(delay):
    cue, reaction = bump(120, 30), bump(120, 30 + delay, height=0.3)  # smaller response, same shape
    got = detect_onset(reaction, 20) - detect_onset(cue, 20)
    assert got == pytest.approx(delay, abs=1e-9 if float(delay).is_integer() else 0.1)


def test_onset_detector_with_noise_polarity_and_no_reaction():
    rng = np.random.default_rng(0)
    truth = rng.integers(2, 20, 50)
    errors = [detect_onset(bump(100, 40 + d, height=0.5) + rng.normal(0, 0.01, 100), 35, baseline=0.0)
              - detect_onset(bump(100, 40), 35) - d for d in truth]
    assert np.abs(errors).max() < 1.0  # within a frame at 2% noise
    assert detect_onset(-bump(80, 30), 0, polarity="negative") == pytest.approx(detect_onset(bump(80, 30), 0))
    assert detect_onset(-bump(80, 30), 0, polarity="abs") == pytest.approx(detect_onset(bump(80, 30), 0))
    assert detect_onset(rng.normal(0, 0.001, 80), 0, baseline=0.0, min_peak=0.05) is None
    assert detect_onset(bump(80, 60), 0, horizon=40) is None  # the reaction comes after the horizon
    with pytest.raises(ValueError, match="polarity"):
        detect_onset(bump(10, 2), 0, polarity="up")
    p = bump(200, 20) - bump(200, 60) + bump(200, 120) - bump(200, 140)
    assert rising_onsets(p, 0.4, 10) == [23, 123]


def test_cue_to_reaction_recovers_a_planted_mirroring_delay():
    """A fake 'model' that mirrors the user's motion d frames later: the pipeline must report d x 40 ms."""
    rng = np.random.default_rng(0)
    D, T, d = 8, 1500, 9
    direction = rng.normal(size=D)
    smile = sum(bump(T, o, rise=8, height=0.6) - bump(T, o + 40, rise=8, height=0.6) for o in (100, 700, 1300))
    user_motion = smile[:, None] * direction + rng.normal(0, 0.002, (T, D))
    params = np.zeros((T, 2))
    params[:, 1] = smile
    conv = {"name": "synthetic", "avatar_audio": np.zeros((T, 4)), "user_audio": np.zeros((T, 4)),
            "user_motion": user_motion, "avatar_motion": np.zeros((T, D)), "user_params": params,
            "columns": ("jaw_open", "smile")}
    W = np.zeros((D, 2))
    W[:, 1] = direction / direction.dot(direction)
    readout = ParamReadout(W, np.zeros(2), conv["columns"])

    def mirror(aa, ua, um, ref):  # (T, D) -> (T, D), d frames late
        return torch.cat([um[:1].expand(d, -1), um[:-d]])

    res = cue_to_reaction(mirror, readout, [conv], n_injections=12, compute_ms=30.0, progress=False)
    assert res["n_reacted"] == 12 and res["reaction_rate"] == 1.0
    assert res["media_delay"]["median_ms"] == pytest.approx(d * 40, abs=15)
    assert res["end_to_end"]["median_ms"] == pytest.approx(d * 40 + 400 + 30, abs=15)
    assert len({r["block_phase"] for r in res["records"]}) > 1  # cues land at different places in a block


def test_cue_to_reaction_says_why_it_cannot_be_measured(tmp_path):
    missing = tmp_path / "nope.pt"
    res = measure_cue_to_reaction(str(missing), None, n_injections=5, progress=False)
    assert res["ours"]["status"] == "not measurable" and f"no trained checkpoint at {missing}" in res["ours"]["reason"]
    assert res["infp"].startswith("not applicable")
    assert measure_cue_to_reaction(None, None, n_injections=0)["ours"]["status"] == "skipped"


def test_cue_to_reaction_reads_the_corpus_in_the_checkpoints_latent_space(tiny_corpus, tmp_path):
    from afcore.model import AvatarForcing, save_checkpoint
    cfg = get_config("tiny", **NARROW)
    oracle = save_checkpoint(tmp_path / "oracle.pt", AvatarForcing(cfg), latent_space=f"oracle-params-{cfg.latent_dim}-0")
    res = measure_cue_to_reaction(str(oracle), tiny_corpus, n_injections=2, nfe=3, progress=False)["ours"]
    assert res["status"] == "measured" and res["corpus_dir"].endswith("_oracle_latents"), res  # 03/04 oracle view
    view = tmp_path / "encoded"  # the corpus encoded by another autoencoder than the model's
    view.mkdir()
    for p in Path(tiny_corpus).iterdir():
        (view / p.name).symlink_to(p)
    (view / "latents").mkdir()
    (view / "latents" / "meta.json").write_text(json.dumps({"ae_tag": "0123456789abcdef"}))
    other = save_checkpoint(tmp_path / "other.pt", AvatarForcing(cfg), latent_space="fedcba9876543210")
    res = measure_cue_to_reaction(str(other), view, n_injections=2, progress=False)["ours"]
    assert res["status"] == "not measurable" and "re-encode" in res["reason"] and "fedcba9876543210" in res["reason"]


# ------------------------------------------------------------------------------------------ steppers, interleaving
def random_model(cfg, seed=0):
    torch.manual_seed(seed)
    model = FlowTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # the DiT zero-init would make every output 0
    return model


def test_window_stepper_reproduces_generate_windowed():
    torch.set_num_threads(1)
    cfg = infp_config(get_config("tiny", hidden=64, depth=2, heads=4, latent_dim=16, cond_dim=16))
    model = random_model(cfg)
    g = torch.Generator().manual_seed(1)
    T = 2 * cfg.window
    streams = [torch.randn(1, T, cfg.cond_dim, generator=g) for _ in range(3)]
    noise = [torch.randn(1, cfg.window, cfg.latent_dim, generator=g) for _ in range(2)]
    ref = torch.randn(1, cfg.latent_dim, generator=g)
    want = generate_windowed(model, ref, *streams, nfe=4, noise=noise)
    stepper = WindowStepper(model, nfe=4)
    stepper.ref3 = ref.repeat(3, 1)
    got = torch.cat([stepper.step([s[:, w * cfg.window:(w + 1) * cfg.window] for s in streams], noise=noise[w])
                     for w in range(2)], 1)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert set(stepper.last_timing) == {"condition_ms", "denoise_ms", "cache_write_ms"}


class FakeStepper:
    def __init__(self, name, log):
        self.name, self.log, self.cfg, self.device, self.threads = name, log, get_config("tiny"), torch.device("cpu"), None
        self.next_frames, self.last_timing = 10, {}

    def step(self, inputs):
        self.log.append(self.name)
        self.last_timing = {"condition_ms": 1.0, "denoise_ms": 2.0, "cache_write_ms": 0.5}


def test_run_interleaved_rotates_the_order_and_drops_warmup():
    log = []
    out = run_interleaved({n: FakeStepper(n, log) for n in "abc"}, rounds=3, warmup=1, progress=False)
    assert log == list("abc" "bca" "cab" "abc")
    assert all(len(out[n]["ms"]) == 3 and out[n]["split"]["denoise_ms"] == [2.0] * 3 for n in "abc")


def test_interleaved_comparison_on_tiny_models_has_sane_structure():
    res = compare_systems("tiny", rounds=2, warmup=0, decode_repeats=1, startup_repeats=1, overrides=NARROW,
                          threads=1, progress=False)
    assert set(res["systems"]) == {"ours", "infp", "talking"}
    for rec in res["systems"].values():
        st = rec["settings"]
        assert {"config", "device", "dtype", "threads", "nfe", "block_frames", "kv_cache", "compile"} <= set(st)
        assert st["nfe"] == 10 and st["device"] == "cpu" and len(rec["series_ms"]) == 2
        u = rec["steady"]["per_unit"]
        assert 0 < u["median_ms"] <= u["p95_ms"] and math.isfinite(rec["paper_style_ms"])
        assert rec["paper_style_ms"] == pytest.approx(rec["algorithmic"]["algorithmic_ms"] + u["median_ms"])
        assert rec["startup"]["startup_ms"] > rec["startup"]["buffer_ms"] and rec["decode"]["first_chunk_ms"] > 0
    assert res["systems"]["infp"]["steady"]["unit_frames"] == 75
    assert res["systems"]["infp"]["steady"]["split_median_ms"]["cache_write_ms"] == 0.0
    assert "official_window" in res["systems"]["ours"]["startup"]
    r = res["ratios"]["infp_over_ours"]
    assert r["n_rounds"] == 2 and r["paper_style_median_paired"] > 1  # 3.0 s of buffering vs 0.4 s


def test_bench_stream_keeps_its_keys():
    res = bench_stream("tiny", 0.8, warmup_blocks=1, threads=1, progress=False, window_seconds=0.4, return_series=True)
    for key in ("config", "device", "dtype", "threads", "nfe", "block_frames", "kv_cache", "per_block_compute",
                "split_median_ms", "blocks_per_second", "block_duration_ms", "real_time_factor", "first_10s_median_ms",
                "last_10s_median_ms", "last_over_first", "rss_mb_first", "rss_mb_last", "provenance"):
        assert key in res, key
    assert len(res["series"]["block_ms"]) == 2 and res["last_over_first_window"] > 0


SMALL = dict(rounds=2, warmup=0, nfe_list=[2], blocks=[10], thread_list=[1], session_seconds=0.8,
             session_window_s=0.4, kv_seconds=0.8, decode_repeats=1, startup_repeats=1, compile=False, cue_injections=3)


def test_bench_latency_json_schema(tmp_path):
    result = bench_latency("tiny", threads=1, progress=False, model_overrides=NARROW, **SMALL)
    res = json.loads(write_json(tmp_path / "lat.json", result).read_text())
    assert res["schema"] == "afsuite.bench.latency/1" and res["config"] == "tiny"
    assert {"comparison", "sweeps", "session", "cue_to_reaction", "targets", "paper", "machine", "provenance"} <= set(res)
    nfe_row = {r["system"]: r for r in res["sweeps"]["nfe"]["rows"]}
    assert nfe_row["ours"]["nfe_requested"] == 2 and nfe_row["ours"]["nfe"] == 3
    assert res["sweeps"]["block"]["rows"][0]["paper_table7_latency_s"] == 0.5
    assert {"on", "off", "last_off_over_on"} <= set(res["sweeps"]["kv_cache"])
    assert {"drift_cancelled_last_over_first", "last_over_first_window", "series"} <= set(res["session"])
    assert {r["threads"] for r in res["sweeps"]["threads"]["rows"]} == {1}
    t = res["targets"]
    assert t["applies"] is False  # a narrowed model is not the target's config
    assert res["comparison"]["systems"]["ours"]["settings"]["config_overrides"] == NARROW
    assert isinstance(t["per_block_p50_under_40ms"], bool)
    assert {"ratio_infp_over_ours", "algorithmic_plus_compute_ms", "session_flat_within_10pct"} <= set(t)
    assert res["cue_to_reaction"]["ours"]["status"] == "not measurable"
    claim = latency_claim(res)  # 0.4 s of buffering + compute against 3 s + compute
    ours, infp = (res["comparison"]["systems"][k]["paper_style_ms"] / 1000 for k in ("ours", "infp"))
    assert claim["verdict"] == "reproduced in direction" and claim["ours"].startswith(f"{ours:.2f} s vs {infp:.2f} s")
    del res["comparison"]["systems"]["infp"]
    assert latency_claim(res)["verdict"] == "not measurable here"
    with pytest.raises(TypeError, match="unknown settings"):
        bench_latency("tiny", rounds_typo=3)


def test_cli_registers_under_bench():
    import argparse

    from eval.latency_bench import PROFILES
    from eval.latency_cli import PROFILE_NAMES, add_bench_latency
    assert set(PROFILE_NAMES) == set(PROFILES)
    parser = argparse.ArgumentParser()
    add_bench_latency(parser.add_subparsers(dest="bench"))
    args = parser.parse_args(["latency", "--config", "paper", "--profile", "compare", "--nfe-list", "2,4,10",
                              "--no-compile"])
    assert (args.config, args.profile, args.nfe_list, args.compile) == ("paper", "compare", [2, 4, 10], False)
    assert (args.device, args.dtype) == ("auto", "auto")


# ------------------------------------------------------------------------------------------ CUDA
def test_sync_path_synchronises_every_model_call(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    latency.sync(torch.device("cpu"))
    assert calls == []
    model = random_model(get_config("tiny", hidden=64, depth=2, heads=4, latent_dim=16, cond_dim=16))
    proxy = _Synced(model, torch.device("cuda"))
    x = torch.randn(3, 4, 16)
    proxy(x, torch.zeros(3, 4), proxy.encode_conditions(x, x, x), torch.randn(3, 16))
    assert len(calls) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: the CUDA path runs only where one exists")
def test_cuda_comparison_runs_with_synchronised_timers():
    res = compare_systems("tiny", rounds=2, warmup=1, decode_repeats=1, startup_repeats=1, device="cuda",
                          progress=False)
    assert res["systems"]["ours"]["settings"]["device"] == "cuda"
    assert res["systems"]["ours"]["steady"]["per_unit"]["median_ms"] > 0


# ------------------------------------------------------------------------------------------ notebook
@pytest.mark.slow
def test_notebook_smoke(tmp_path):
    papermill = pytest.importorskip("papermill")
    out_dir = tmp_path / "05"
    papermill.execute_notebook(
        str(REPO / "notebooks" / "05_latency.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
        cwd=str(REPO), progress_bar=False,
        parameters=dict(out_dir=str(out_dir), rounds=2, warmup=0, nfe_list=[3], block_sizes=[10], thread_list=[1], threads=1,
                        session_seconds=0.8, session_window_s=0.4, kv_seconds=0.8, decode_repeats=1,
                        startup_repeats=1, model_overrides=NARROW))
    record = json.loads((out_dir / "metrics.json").read_text())
    assert record["profile"] == "smoke" and "tiny" in record["metrics"]
    m = record["metrics"]["tiny"]
    assert {"comparison", "sweeps", "session", "cue_to_reaction", "targets", "tables"} <= set(m)
    assert record["metrics"]["claims"] == [latency_claim(m)]  # the report's verdict row
    for name in record["figures"]:
        assert (out_dir / name).stat().st_size > 1000


def test_people_reaction_delay_reads_the_planted_mirroring_latency(tmp_path):
    from data_prep.corpus import Corpus
    from data_prep.synth.build import SynthConfig, build_corpus
    from eval.latency_cue import people_reaction_delay

    corpus = build_corpus(tmp_path / "c", SynthConfig(hours=0.03, seed=5, size=64, reactivity=1.0, mp4=False, workers=1),
                          progress=False)  # everyone mirrors smiles
    d = people_reaction_delay(corpus)
    planted = Corpus(corpus).events.query("kind == 'smile_mirror'").latency
    assert d["n"] >= 1 and d["planted_median_s"] == pytest.approx(planted.median())
    # both smiles rise with one shape, so half-way to half-way is the planted onset latency, to a frame
    assert abs(d["median_s"] - d["planted_median_s"]) < 0.04 and 0.3 - 0.04 <= d["p5_s"] <= d["median_s"] <= d["p95_s"]
    # a visible change comes within the rise: after the reaction starts, about when it is half-way up
    assert 0.3 - 0.04 <= d["visible_median_s"] <= d["median_s"] + 0.2 and d["visible_n"] >= 1
    assert people_reaction_delay(corpus, kind="no_such_event") is None
