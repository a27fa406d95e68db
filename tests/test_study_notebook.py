"""notebooks/06_preference_study.ipynb runs end to end with papermill; eval/study/rate.ipynb builds the form."""
import json

import nbformat
import pytest

from conftest import REPO, notebook_defaults, run_notebook

PAIR = "Ours__vs__INFP*"


def test_notebook_defaults():
    names = notebook_defaults("06_preference_study")
    assert names["profile"] == "smoke" and names["out_dir"] == "results/smoke/06_preference_study"
    assert names["seed"] == 0 and names["votes_files"] == [] and names["simulate"] is False


def test_notebook_reconstructs_the_paper_and_recovers_the_simulated_truth(tmp_path):
    record = run_notebook("06_preference_study", tmp_path, simulate=True, n_boot=500)
    assert record["profile"] == "smoke" and record["seed"] == 0 and "provenance" in record
    metrics = record["metrics"]
    paper = metrics["paper_reconstruction"]
    assert "RECONSTRUCTED" in paper["note"]
    overall = paper["analysis"]["criteria"]["Overall"][PAIR]
    assert overall["n"] == 504 and overall["a_share"] == pytest.approx(0.803, abs=0.001)
    assert overall["sign_test_p"] < 1e-50
    worst = paper["worst_case_rater_clustering"]["Overall"]["a_share_cluster_bootstrap_ci"]
    assert worst[0] < overall["a_share_wilson_ci"][0] and worst[1] > overall["a_share_wilson_ci"][1]

    simulated = metrics["simulated"]
    assert "SIMULATED" in simulated["note"] and all(simulated["recovered"].values())
    assert simulated["analysis"]["position_bias"]["p"] < 0.05  # the planted side bias is detected
    assert metrics["collected"] is None
    assert metrics["claims"][0]["verdict"] == "not measurable here"  # no votes collected: no verdict on the paper
    for name in record["figures"]:
        assert (tmp_path / name).stat().st_size > 5_000


def test_rating_notebook_builds_the_form_without_a_kernel(tmp_path, monkeypatch):
    nb = nbformat.read(REPO / "eval" / "study" / "rate.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    manifest = tmp_path / "study.json"
    manifest.write_text(json.dumps({
        "schema": "afsuite.study-manifest/1", "systems": ["a", "b"], "seed": 0, "sets": ["s1"],
        "criteria": [{"name": "Overall", "question": "Which?"}],
        "trials": [{"set_id": "s1", "systems": ["a", "b"], "videos": {"a": "ab.mp4", "b": "ba.mp4"}}],
        "practice": {}}))
    for name in ("ab.mp4", "ba.mp4"):
        (tmp_path / name).write_bytes(b"not really a video")  # the form only embeds the bytes
    monkeypatch.setenv("AFSUITE_STUDY_MANIFEST", str(manifest))
    monkeypatch.setenv("AFSUITE_STUDY_VOTES", str(tmp_path / "votes.csv"))
    monkeypatch.chdir(REPO / "eval" / "study")
    scope = {}
    *body, last = code[-1].splitlines()
    assert last == "RatingForm(study_manifest, votes_file).widget"
    for source in [*code[:-1], "\n".join(body)]:
        exec(source, scope)  # noqa: S102 -- the notebook's own code, run without a kernel
    form = eval(last.removesuffix(".widget"), scope)
    assert form.widget is not None
    form.start("r1")
    form.vote("Overall", "tie")
    assert (tmp_path / "votes.csv").read_text().splitlines()[1].startswith("r1,s1,Overall,")
