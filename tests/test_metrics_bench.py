"""`afsuite bench metrics --quick`: every metric is timed and the JSON says on what. Timings are recorded,
never compared with thresholds (a benchmark on a shared CPU, not a test of speed)."""
import json
import math
import statistics

from afcore.cli import main as afsuite

EXPECTED = [f"{m}-{part} (d={d})" for part, dims in (("Exp", (7, 50)), ("Pose", (3, 6))) for d in dims
            for m in ("rPCC", "SID", "Var", "FD", "P-FD")] + [
    "jitter (d=10)", "FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn",
    "face params (extraction)", "LSE-D / LSE-C", "FID", "FVD", "CSIM", "LPIPS"]


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_quick_bench_times_every_metric_and_records_the_setting(tmp_path):
    out = tmp_path / "bench" / "metrics_timing.json"
    assert afsuite(["bench", "metrics", "--quick", "--extractors", "untrained", "--threads", "1", "--repeats", "2",
                    "--quiet", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # written atomically: no temporary left
    assert result["schema"] == "afsuite.bench.metrics/1"
    s = result["settings"]
    assert (s["clips"], s["seconds"], s["frames_per_clip"], s["quick"], s["threads"]) == (4, 3.0, 75, True, 1)

    rows = result["metrics"]
    assert sorted(rows) == sorted(EXPECTED)
    for name, r in rows.items():
        assert _positive(r["total_s"]) and _positive(r["per_clip_ms"]), (name, r)
        assert r["runs_s"] and all(_positive(t) for t in r["runs_s"]), (name, r)
        assert math.isclose(r["total_s"], statistics.median(r["runs_s"])), (name, r)
        assert r["clips"] == 4 and math.isclose(r["per_clip_ms"], 1000 * r["total_s"] / 4), (name, r)
    assert all(1 <= len(r["runs_s"]) <= 2 for r in rows.values())  # --repeats 2 (1 if a run was not cheap)

    ex = result["extractors"]
    assert set(ex) == {"face_params", "lipsync", "fid", "fvd", "csim", "lpips"}
    assert ex["lpips"]["name"] == "lpips-alex-v0.1"  # real AlexNet weights even here
    assert all(ex[m]["name"].endswith("-untrained") for m in ex if m != "lpips")
    for name in ("LSE-D / LSE-C", "FID", "FVD", "CSIM", "LPIPS", "face params (extraction)"):
        assert rows[name]["extractor"] in {e["name"] for e in ex.values()}
    assert result["extractor_training"] is None

    m = result["machine"]
    assert m["cpu_count"] >= 1 and m["torch_threads"] == 1
    assert len(m["loadavg_start"]) == 3 and len(m["loadavg_end"]) == 3
    assert result["inputs"]["layout"]["react"]["predictions"] == [2, 2, 75, 25]
