"""notebooks/07_live_demo.ipynb: literal parameters, an end-to-end papermill run that drives the demo
headlessly, and the page served by Voila in headless Chromium: the avatar talks when told to, a "Smile" click
makes the user's face smile, and the avatar (the default, reactive bundle) smiles back."""
import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "07_live_demo.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "results" / "live_demo" / "voila_smile.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def test_notebook_has_one_literal_parameters_cell_and_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        names[node.targets[0].id] = ast.literal_eval(node.value)
    assert names["profile"] == "smoke" and names["out_dir"] == "results/smoke/07_live_demo"
    assert names["checkpoint"] == "" and names["autoencoder"] == "" and names["seconds"] == 10
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def _with_repo_on_path():
    env_path = os.environ.get("PYTHONPATH", "")
    return f"{REPO}{os.pathsep}{env_path}" if env_path else str(REPO)


@pytest.mark.slow
def test_notebook_drives_the_demo_headlessly(tmp_path, tiny_corpus):
    papermill = pytest.importorskip("papermill")
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = _with_repo_on_path()
    try:
        papermill.execute_notebook(
            str(NOTEBOOK), str(tmp_path / "executed.ipynb"), kernel_name="python3", cwd=str(REPO),
            progress_bar=False, parameters={"out_dir": str(tmp_path), "corpus_dir": str(tiny_corpus), "seconds": 4,
                                            "script": [[0.8, "smile"], [1.6, "say:0"], [2.4, "nod"]],
                                            "reaction_seeds": [0]})
    finally:
        os.environ["PYTHONPATH"] = old
    record = json.loads((tmp_path / "metrics.json").read_text())
    live, check = record["metrics"]["live"], record["metrics"]["smile_reaction"]
    assert live["blocks"] >= 8 and live["error"] is None
    assert [e["event"] for e in live["events"]][:3] == ["smile", "say:0", "nod"]
    assert live["timing_ms"]["decode_ms"]["median"] > 0 and live["real_time_factor"] > 0
    assert check["runs"][0]["pre_click_max_abs_diff"] == 0.0 and "peak_rise" in check["runs"][0]
    assert record["headline"]["smile_rise"] == check["peak_rise_mean"] and record["claims"]
    for name in record["figures"]:
        assert (tmp_path / name).stat().st_size > 1000
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    views = [o for c in executed.cells for o in c.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views and executed.metadata.get("widgets")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc, timeout: float):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with {proc.returncode} before serving")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"voila did not listen on port {port} within {timeout} s")


def _readings(page, seconds: float) -> dict[str, list[float]]:
    """The per-block values the page shows (user/avatar smile and jaw), polled for `seconds`."""
    ids = ("user-smile", "avatar-smile", "user-jaw", "avatar-jaw")
    out, end = {k: [] for k in ids}, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            values = [float(page.locator(f"#{k}").inner_text()) for k in ids]
        except ValueError:
            values = None
        if values:
            for k, v in zip(ids, values):
                out[k].append(v)
        time.sleep(0.1)
    return out


def _mean(values):
    return sum(values) / len(values)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium: run "
                    "`scripts/system_packages.sh --with-browser` (never `playwright install`)")
def test_voila_page_smile_click_makes_the_avatar_smile(tmp_path, tiny_corpus):
    pytest.importorskip("voila")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": _with_repo_on_path(), "AFSUITE_DEMO_CORPUS": str(tiny_corpus)}
    with open(tmp_path / "voila.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
                                 "--Voila.ip=127.0.0.1"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: the kernel goes down with it
        try:
            _wait_for_port(port, proc, 60)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1300})
                    page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
                    page.get_by_role("button", name="Start").wait_for(timeout=120_000)
                    page.get_by_role("button", name="Start").click()
                    page.wait_for_function("() => !isNaN(parseFloat(document.querySelector('#avatar-smile')?.textContent))",
                                           timeout=30_000)
                    before = _readings(page, 2.5)
                    page.locator("select").first.select_option(index=1)  # the avatar says its first utterance
                    talking = _readings(page, 3.0)
                    page.get_by_role("button", name="Smile").click()
                    smiling = _readings(page, 2.5)
                    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(SCREENSHOT), full_page=True)  # while the user smiles
                    later = _readings(page, 2.0)
                    page.get_by_role("button", name="Stop").click()
                    page.wait_for_function("() => document.body.innerText.includes('stopped')", timeout=15_000)
                finally:
                    browser.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
    shutil.copy(tmp_path / "voila.log", SCREENSHOT.with_suffix(".log"))
    assert before["avatar-jaw"] and talking["avatar-jaw"], (tmp_path / "voila.log").read_text()[-2000:]
    assert SCREENSHOT.stat().st_size > 10_000
    # the page is live: the click reached the kernel and the user's face (the model's input) smiles
    assert max(smiling["user-smile"] + later["user-smile"]) > 0.5
    # a trained reaction the page shows: the avatar's mouth opens when it speaks
    assert _mean(talking["avatar-jaw"]) > _mean(before["avatar-jaw"]) + 0.08, (before, talking)
    avatar_before, avatar_after = max(before["avatar-smile"]), max(smiling["avatar-smile"] + later["avatar-smile"])
    # and the default (reactive) bundle smiles back
    assert avatar_after > avatar_before + 0.1, (f"avatar smile readout {avatar_before:.3f} before the user's smile, "
                                                f"at most {avatar_after:.3f} after", before, smiling, later)
