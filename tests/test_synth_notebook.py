"""notebooks/01_dataset_curation.ipynb: one literal parameters cell, no stored outputs, runs end to end."""
from conftest import notebook_defaults, run_notebook


def test_notebook_defaults():
    names = notebook_defaults("01_dataset_curation")
    assert names["profile"] == "smoke" and names["out_dir"] == "results/smoke/01_dataset_curation"
    assert names["source"] == "synthetic" and names["corpus_dir"].startswith("data/")


def test_notebook_builds_the_corpus_and_writes_the_quality_report(tmp_path):
    record = run_notebook("01_dataset_curation", tmp_path / "out", corpus_dir=str(tmp_path / "corpus"), hours=0.01,
                          seed=1)
    assert record["profile"] == "smoke" and record["seed"] == 1 and "provenance" in record and record["wall_time_s"] > 0
    m = record["metrics"]
    assert m["identities_in_more_than_one_split"] == 0
    assert m["corpus"]["n_conversations"] == 3 and {r["split"] for r in m["corpus"]["per_split"]} == {"train", "val", "test"}
    assert m["vad"]["backend"] in ("silero", "energy") and 0 <= m["vad"]["detection_error_rate"] < 0.3
    mv = m["motion_variance"]
    assert mv["listener_exp_var"] < mv["speaker_exp_var"] and mv["listener_pose_var"] < mv["speaker_pose_var"]
    assert m["mouth_audio_pearson_r"] > 0.6
    for kind, stats in m["reaction_latency"].items():
        assert stats["in_rule_fraction"] == 1.0, kind
    for name in record["figures"]:
        assert (tmp_path / "out" / name).stat().st_size > 5_000
