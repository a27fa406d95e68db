"""eval.reproduce: papermill runs, the stage DAG (order, 2 workers, failure isolation, resume), sweeps,
compare, the report, and the parameters-cell contract of the real notebooks. The stage tests use tiny
notebooks written here and an injected registry; the real notebooks run once in the smoke profile."""
import ast
import json
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from afcore.cli import main as afsuite
from eval.reproduce.compare import compare_runs
from eval.reproduce.notebook import NotebookError
from eval.reproduce.report import write_report
from eval.reproduce.runner import make_plan, read_run
from eval.reproduce.schedule import reproduce
from eval.reproduce.stages import REPO, STAGES, Stage, Upstream, load_profiles
from eval.reproduce.sweep import run_sweep

pytest.importorskip("papermill")

BARRIER = '''import time
from pathlib import Path
started_at = time.time()
if barrier_dir:  # meet the partner stage: only possible if both run at the same time
    Path(barrier_dir).mkdir(parents=True, exist_ok=True)
    Path(barrier_dir, me).touch()
    while not Path(barrier_dir, partner).exists():
        if time.time() - started_at > 90:
            raise TimeoutError(f"{partner} never started: the stages did not run in parallel")
        time.sleep(0.05)'''
WRITE = '''from afcore.io import write_metrics
write_metrics(out_dir, metrics, profile=profile, seed=seed, figures=figures,
              timing={"started_at": started_at, "finished_at": time.time()})'''
PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")

NOTEBOOKS = {
    "source": ('profile = "smoke"\nout_dir = "results/smoke/source"\nseed = 0\noffset = 1.0\n'
               'barrier_dir = ""\nme = "a"\npartner = "c"',
               BARRIER,
               'import json, numpy as np\nvalue = float(np.random.default_rng(seed).normal()) + offset\n'
               'Path(out_dir).mkdir(parents=True, exist_ok=True)\n'
               'Path(out_dir, "data.json").write_text(json.dumps({"value": value}))\n'
               'metrics, figures = {"value": value}, []',
               WRITE),
    "child": ('profile = "smoke"\nout_dir = "results/smoke/child"\nseed = 0\nsource_file = ""\nextra_term = 0',
              'import json, time\nstarted_at = time.time()\n'
              'value = json.loads(open(source_file).read())["value"]\n'
              'metrics, figures = {"value_plus_one": value + 1 + extra_term}, []',
              WRITE),
    "indep": ('profile = "smoke"\nout_dir = "results/smoke/indep"\nseed = 0\noffset = 0\n'
              'barrier_dir = ""\nme = "c"\npartner = "a"',
              BARRIER,
              'import base64, numpy as np\nrng = np.random.default_rng(seed)\n'
              'metrics = {"draws": rng.normal(size=3).tolist(), "mean": float(rng.normal()) + offset, '
              '"claims": [{"claim": "c is computed", "paper": 1, "ours": 1, "verdict": "reproduced in direction", '
              '"why": "a test claim"}]}\n'
              f'Path(out_dir).mkdir(parents=True, exist_ok=True)\nPath(out_dir, "dot.png").write_bytes(base64.b64decode("{PNG_1x1}"))\n'
              'figures = ["dot.png"]',
              WRITE),
    "raises": ('profile = "smoke"\nout_dir = "results/smoke/raises"\nseed = 0',
               'x = 1',
               'raise ValueError("boom: this notebook fails on purpose")'),
}


def write_notebook(path: Path, params: str, *cells: str) -> Path:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [new_code_cell(params, metadata={"tags": ["parameters"]}), *(new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def nbs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notebooks")
    return {name: write_notebook(folder / f"{name}.ipynb", *cells) for name, cells in NOTEBOOKS.items()}


def registry(nbs, missing: Path):
    return (
        Stage("a_source", str(nbs["source"])),
        Stage("b_child", str(nbs["child"]), inputs={"source_file": Upstream("a_source", "data.json")}),
        Stage("c_indep", str(nbs["indep"])),
        Stage("d_raises", str(nbs["raises"]), claims=("d works",)),
        Stage("e_after_failure", str(nbs["indep"]), depends=("d_raises",)),
        Stage("f_missing", str(missing)),
        Stage("g_after_missing", str(nbs["indep"]), depends=("f_missing",)),
    )


def profiles(barrier=""):
    return {"smoke": {"all": {"seed": 0}, "a_source": {"barrier_dir": barrier},
                      "c_indep": {"barrier_dir": barrier}}}


@pytest.fixture(scope="module")
def dag_run(nbs, tmp_path_factory):
    root = tmp_path_factory.mktemp("dag")
    lines = []
    stages = registry(nbs, root / "not_written_yet.ipynb")
    summary = reproduce("smoke", run_dir=root / "run", stages=stages, profiles=profiles(str(root / "barrier")),
                        jobs=2, echo=lines.append)
    return {"root": root, "run": root / "run", "summary": summary, "lines": lines, "stages": stages}


def metrics_of(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_dag_runs_in_dependency_order_with_two_workers(dag_run):
    st, run = dag_run["summary"]["stages"], dag_run["run"]
    assert [st[n]["status"] for n in ("a_source", "b_child", "c_indep")] == ["ok"] * 3  # the barrier met: parallel
    a, b = metrics_of(run / "a_source"), metrics_of(run / "b_child")
    assert b["timing"]["started_at"] >= a["timing"]["finished_at"]  # b waited for a
    assert b["metrics"]["value_plus_one"] == pytest.approx(a["metrics"]["value"] + 1)  # a's output reached b
    record = read_run(run / "b_child")
    assert record["parameters"]["source_file"].endswith("a_source/data.json")
    assert record["upstream"] == {"a_source": read_run(run / "a_source")["fingerprint"]}
    for line in dag_run["lines"]:
        if line.startswith("[a_source]"):
            assert "done in" in line and "(metrics: 1 values)" in line
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no staging folders left behind


def test_a_failing_notebook_is_reported_and_independent_stages_go_on(dag_run):
    st, run, lines = dag_run["summary"]["stages"], dag_run["run"], dag_run["lines"]
    assert dag_run["summary"]["exit_code"] == 1
    err = st["d_raises"]["error"]
    assert st["d_raises"]["status"] == "failed" and err["cell"] == 3 and err["ename"] == "ValueError"
    assert "raise ValueError" in err["source"] and "boom" in err["traceback_tail"]
    assert "[d_raises] FAILED at cell 3: ValueError: boom: this notebook fails on purpose" in lines
    assert not (run / "d_raises").exists() and (run / "d_raises.failed" / "raises.ipynb").is_file()
    assert st["e_after_failure"]["status"] == "upstream failed" and st["e_after_failure"]["blocked_by"] == ["d_raises"]
    assert st["f_missing"]["status"] == "not built" and st["g_after_missing"]["status"] == "upstream not built"
    assert any(line.startswith("[f_missing] not built yet") for line in lines)
    assert len([line for line in lines if not line.startswith("reproduce ")]) == 7  # one line per stage


def test_report_has_stages_claims_hardware_and_inline_figures(dag_run):
    md, page = write_report(dag_run["run"], stages=dag_run["stages"])
    text = md.read_text()
    for needle in ("## Stages", "| c_indep | done |", "| d_raises | FAILED |", "not built yet",
                   "skipped: upstream failed (d_raises)", "| c is computed | 1 | 1 | reproduced in direction |",
                   "| d works |  |  | not measurable here | the stage failed (ValueError at cell 3) |",
                   "## Hardware", "raise ValueError", "![dot](c_indep/dot.png)"):
        assert needle in text, needle
    html = page.read_text()
    assert "data:image/png;base64," in html and "<table>" in html and "c_indep/dot.png" not in html


def test_resume_skips_unchanged_and_reruns_only_downstream_of_a_change(dag_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(dag_run["run"], run)  # moved results keep their fingerprints (paths are not hashed)
    stages = dag_run["stages"][:3]
    before = {n: (run / n / "run.json").stat().st_mtime_ns for n in ("a_source", "b_child", "c_indep")}
    prof = profiles(str(dag_run["root"] / "barrier"))
    summary = reproduce("smoke", run_dir=run, stages=stages, profiles=prof, jobs=2, resume=True, echo=lambda _: None)
    assert {n: s["status"] for n, s in summary["stages"].items()} == dict.fromkeys(before, "unchanged")
    assert before == {n: (run / n / "run.json").stat().st_mtime_ns for n in before}  # nothing re-executed

    prof["smoke"]["a_source"]["offset"] = 2.5  # upstream change: a and its dependent rerun, c does not
    summary = reproduce("smoke", run_dir=run, stages=stages, profiles=prof, jobs=2, resume=True, echo=lambda _: None)
    assert {n: s["status"] for n, s in summary["stages"].items()} == {
        "a_source": "ok", "b_child": "ok", "c_indep": "unchanged"}
    assert metrics_of(run / "b_child")["metrics"]["value_plus_one"] == pytest.approx(
        metrics_of(run / "a_source")["metrics"]["value"] + 1)
    reproduce("smoke", run_dir=run, stages=stages, profiles=prof, jobs=2, only=["c_indep"], echo=lambda _: None)
    table = write_report(run, stages=stages)[0].read_text().split("## Claims")[0]
    a_time = json.loads((run / "a_source" / "run.json").read_text())["wall_time_s"]
    assert f"| a_source | not selected (earlier run kept) | {a_time:.0f} s (earlier run) |" in table


@pytest.fixture(scope="module")
def two_runs(nbs, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    codes = [afsuite(["run", str(nbs["indep"]), "-p", "seed", "7", "-p", "offset", "0.5", "--out", str(root / name)])
             for name in ("first", "second")]
    return root, codes


def test_run_writes_metrics_and_run_record(two_runs):
    root, codes = two_runs
    assert codes == [0, 0]
    out = root / "first"
    record = read_run(out)
    assert record["status"] == "ok" and record["parameters"]["seed"] == 7 and record["parameters"]["offset"] == 0.5
    assert record["parameters"]["barrier_dir"] == "" and record["overrides"]["profile"] == "smoke"
    assert record["wall_time_s"] > 0 and record["packages"]["papermill"] and "git_commit" in record
    assert len(record["fingerprint"]) == 64 and (out / "indep.ipynb").is_file()
    executed = nbformat.read(out / "indep.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    assert metrics_of(out)["seed"] == 7


def test_two_runs_with_the_same_seed_give_the_same_metrics(two_runs):
    root, _ = two_runs
    assert metrics_of(root / "first")["metrics"] == metrics_of(root / "second")["metrics"]
    diffs, compared = compare_runs(root / "first", root / "second", rtol=0, atol=0)
    assert diffs == [] and compared == 6


def test_unknown_parameter_and_bad_parameters_cell_are_refused(nbs, tmp_path):
    with pytest.raises(NotebookError, match="no parameter named sed"):
        make_plan(nbs["indep"], tmp_path / "x", profile="smoke", extra={"sed": 1})
    bad = write_notebook(tmp_path / "bad.ipynb", "import os\nseed = os.getpid()")
    with pytest.raises(NotebookError, match="line 1"):
        make_plan(bad, tmp_path / "y", profile="smoke")
    assert afsuite(["run", str(nbs["indep"]), "-p", "sed", "1", "--out", str(tmp_path / "z")]) == 2


def test_sweep_two_by_two_with_two_workers_gathers_a_tidy_table(nbs, tmp_path):
    result = run_sweep(nbs["indep"], {"seed": [0, 1], "offset": [0, 10], "profile": "smoke"}, profile="smoke",
                       out_dir=tmp_path / "sweep", jobs=2, echo=lambda _: None)
    table, summary = result["table"], result["summary"]
    assert result["failed"] == 0 and len(result["points"]) == 4
    assert list(table.columns) == ["run", "seed", "offset", "metric", "value"]
    assert table["run"].nunique() == 4 and len(table) == 4 * 6  # draws x3, mean, claims' paper and ours
    means = summary[summary["metric"] == "mean"].set_index("offset")
    assert list(means["n"]) == [2, 2] and means.loc[10, "mean"] - means.loc[0, "mean"] == pytest.approx(10)
    for name in ("sweep.parquet", "sweep.csv", "summary.csv", "sweep_offset.png"):
        assert (tmp_path / "sweep" / name).stat().st_size > 0, name
    import pandas as pd
    assert len(pd.read_parquet(tmp_path / "sweep" / "sweep.parquet")) == len(table)


def _metrics_run(folder: Path, values: dict) -> Path:
    for stage, metrics in values.items():
        (folder / stage).mkdir(parents=True)
        (folder / stage / "metrics.json").write_text(json.dumps({"metrics": metrics, "wall_time_s": time.time()}))
    return folder


def test_export_reference_keeps_the_small_files_and_compares_equal(tmp_path, capsys):
    run = _metrics_run(tmp_path / "run", {"s1": {"x": 1.0}, "s2": {"z": 2}})
    (run / "REPORT.md").write_text("# report")
    for name in ("fig.png", "table.csv", "checkpoint.pt", "s1.ipynb"):
        (run / "s1" / name).write_bytes(b"x")
    _metrics_run(run / "s1" / "runs", {"beta10": {"y": 3}})  # a stage's own sub-runs (04's beta sweep)
    ref = tmp_path / "reference"
    assert afsuite(["export-reference", str(run), "--out", str(ref)]) == 0
    kept = sorted(str(p.relative_to(ref)) for p in ref.rglob("*") if p.is_file())
    assert kept == ["REPORT.md", "s1/fig.png", "s1/metrics.json", "s1/runs/beta10/metrics.json", "s1/table.csv",
                    "s2/metrics.json"]
    assert compare_runs(ref, run) == ([], 3)
    assert afsuite(["export-reference", str(run), "--out", str(ref)]) == 2  # no silent overwrite
    assert "--overwrite" in capsys.readouterr().err
    (ref / "README.md").write_text("how this reference was made")
    assert afsuite(["export-reference", str(run), "--out", str(ref), "--overwrite"]) == 0
    assert (ref / "README.md").read_text() == "how this reference was made"  # a refresh keeps the notes
    assert afsuite(["export-reference", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")]) == 2
    assert not (tmp_path / "r2").exists()


def test_compare_reports_differences_beyond_tolerance_only(tmp_path, capsys):
    a = _metrics_run(tmp_path / "a", {"s1": {"x": 1.0, "deep": {"y": [1, 2]}, "wall_time_s": 3}, "s2": {"z": 0}})
    near = _metrics_run(tmp_path / "near", {"s1": {"x": 1.0005, "deep": {"y": [1, 2]}, "wall_time_s": 9}, "s2": {"z": 0}})
    far = _metrics_run(tmp_path / "far", {"s1": {"x": 1.1, "deep": {"y": [1, 3]}}, "s3": {"z": 0}})
    assert compare_runs(a, near, rtol=1e-3, atol=0) == ([], 4)
    diffs, _ = compare_runs(a, far, rtol=1e-3, atol=0)
    assert {(d.stage, d.key) for d in diffs} == {("s1", "x"), ("s1", "deep.y[1]"), ("s2", "(no metrics.json)"),
                                                ("s3", "(no metrics.json)")}
    assert afsuite(["compare", str(a), str(near)]) == 0
    assert afsuite(["compare", str(a), str(far)]) == 1
    assert "s1: x: 1 vs 1.1" in capsys.readouterr().out


def real_notebooks():
    return sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", real_notebooks(), ids=lambda p: p.stem)
def test_real_notebook_has_one_literal_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} parameters cells"
    names = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name), ast.dump(node)
        names[node.targets[0].id] = ast.literal_eval(node.value)  # raises on anything but a literal
    assert {"profile", "out_dir"} <= set(names)
    assert any(s.notebook_path() == path for s in STAGES), f"{path.name} is not in eval/reproduce/stages.py"


QUICK_REAL_STAGES = ("01_dataset_curation", "06_preference_study")  # ~20 s in smoke; 05 takes minutes


@pytest.mark.slow
def test_quick_real_notebooks_reproduce_in_the_smoke_profile(tmp_path):
    built = [s.name for s in STAGES if s.name in QUICK_REAL_STAGES and s.notebook_path().is_file()]
    if not built:
        pytest.skip("none of the quick real notebooks exists yet")
    lines = []
    summary = reproduce("smoke", run_dir=tmp_path / "smoke", profiles=load_profiles(), jobs=2, only=built,
                        echo=lines.append)
    assert summary["exit_code"] == 0, "\n".join(lines)
    assert all(summary["stages"][n]["status"] == "ok" for n in built), "\n".join(lines)
    for name in built:
        assert (tmp_path / "smoke" / name / "metrics.json").is_file()
    md, _ = write_report(tmp_path / "smoke")
    assert all(f"| {n} | done |" in md.read_text() for n in built)
