"""notebooks/01_dataset_curation.ipynb: one literal parameters cell, no stored outputs, runs end to end."""
import ast
import json
import os
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01_dataset_curation.ipynb"


def test_notebook_has_one_literal_parameters_cell_and_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        names[node.targets[0].id] = ast.literal_eval(node.value)
    assert names["profile"] == "smoke" and names["out_dir"] == "results/smoke/01_dataset_curation"
    assert names["source"] == "synthetic" and names["corpus_dir"].startswith("data/")
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_notebook_builds_the_corpus_and_writes_the_quality_report(tmp_path):
    papermill = pytest.importorskip("papermill")
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{REPO}{os.pathsep}{env_path}" if env_path else str(REPO)
    try:
        papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), kernel_name="python3",
                                   cwd=str(REPO), progress_bar=False,
                                   parameters={"out_dir": str(tmp_path / "out"), "corpus_dir": str(tmp_path / "corpus"),
                                               "hours": 0.01, "seed": 1})
    finally:
        os.environ["PYTHONPATH"] = env_path
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())
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
