"""`<run dir>/REPORT.md` and `REPORT.html` (figures inline as base64): a summary of every stage (status,
wall time), the paper's claims with a verdict each, the hardware, then one section per stage built from
its run.json and metrics.json (tables the notebook wrote beside the paper's, figures, headline numbers,
or the failing cell).

What the report reads from a stage's metrics.json, all optional:
  claims:   [{"claim", "paper", "ours", "verdict", "why"}], verdict one of VERDICTS
  headline: {name: number} shown first (else the first HEADLINE_LEAVES numeric leaves)
  figures:  [paths relative to the stage folder] (else the images in that folder)
`claims` and `headline` may sit at the top level or inside "metrics". Markdown files in the stage folder
(e.g. eval.tables.write_table's <table>.md) are included as they are.
"""
from __future__ import annotations

import base64
import html
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from eval.reproduce import runner
from eval.reproduce.compare import numeric_leaves
from eval.reproduce.stages import NOT_MEASURABLE_HERE, STAGES, check_registry

VERDICTS = ("reproduced in direction", "not reproduced", "not measurable here")
HEADLINE_LEAVES = 20
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".svg": "image/svg+xml"}
STATUS_TEXT = {"ok": "done", "unchanged": "unchanged (earlier run reused)", "kept": "not selected (earlier run kept)",
                "failed": "FAILED", "not built": "not built yet", "upstream failed": "skipped: upstream failed",
                "upstream missing": "skipped: upstream has no results", "upstream not built":
                "skipped: upstream not built yet", "absent": "not selected, no results", "did not run": "did not run"}


def _cell(value) -> str:
    text = "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", r"\|").replace("\n", " ")


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _field(record, name):
    if not isinstance(record, dict):
        return None
    inner = record.get("metrics")
    return record.get(name) if name in record else inner.get(name) if isinstance(inner, dict) else None


def stage_state(stage, run_dir: Path, summary: dict | None) -> dict:
    """Status, run record, metrics record and folder of one stage, from reproduce.json and the disk."""
    out_dir, failed = run_dir / stage.name, runner.failed_dir(run_dir / stage.name)
    entry = (summary or {}).get("stages", {}).get(stage.name)
    run, metrics = runner.read_run(out_dir), _read_json(out_dir / "metrics.json")
    if entry:
        status = entry["status"]
    elif not stage.notebook_path().is_file():
        status = "not built"
    elif run and run.get("status") == "ok":
        status = "ok"
    elif runner.read_run(failed):
        status = "failed"
    else:
        status = "did not run"
    if status == "failed":  # the failed attempt lives beside the last good output
        run = runner.read_run(failed) or run
        if entry and entry.get("error") and run:
            run = {**run, "error": entry["error"]}
        elif entry and entry.get("error"):
            run = {"error": entry["error"]}
    usable = status in ("ok", "unchanged", "kept")
    return {"status": status, "entry": entry, "run": run, "metrics": metrics if usable else None,
            "dir": out_dir, "blocked_by": (entry or {}).get("blocked_by", [])}


_WHY = {"not built": "the notebook is not built yet", "did not run": "the stage did not run here",
        "absent": "the stage was not selected and has no earlier results"}


def _why_not(state) -> str:
    status = state["status"]
    if status == "failed":
        err = (state["run"] or {}).get("error") or {}
        return f"the stage failed ({err.get('ename', 'error')}{' at cell ' + str(err['cell']) if err.get('cell') else ''})"
    if state["blocked_by"]:
        return f"{STATUS_TEXT[status]} ({', '.join(state['blocked_by'])})"
    if status in ("ok", "unchanged", "kept"):
        return "the notebook reports no verdict for it"
    return _WHY.get(status, f"stage status: {STATUS_TEXT.get(status, status)}")


def claims_rows(stages, states) -> list[list]:
    rows = []
    for stage in stages:
        state = states[stage.name]
        given = _field(state["metrics"], "claims") or []
        for c in given:
            rows.append([c.get("claim"), c.get("paper"), c.get("ours"), c.get("verdict"), c.get("why"), stage.name])
        if not given:
            rows += [[claim, "", "", "not measurable here", _why_not(state), stage.name] for claim in stage.claims]
    rows += [[c["claim"], "", "", "not measurable here", c["why"], "-"] for c in NOT_MEASURABLE_HERE]
    return rows


def _hardware(summary, states) -> dict | None:
    if summary and summary.get("hardware"):
        return summary["hardware"]
    for state in states.values():
        prov = _field(state["metrics"], "provenance")
        if prov:
            return prov
    return None


def _figures(state) -> list[Path]:
    listed = _field(state["metrics"], "figures")
    if isinstance(listed, list) and listed:
        paths = [state["dir"] / str(p) for p in listed]
    else:
        paths = sorted(p for p in state["dir"].glob("*") if p.suffix.lower() in IMAGE_TYPES)
    return [p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_TYPES]


def _paper_table(key: str, reason: str) -> str:
    try:
        from eval.tables import build_table, get_table, to_markdown
        table = build_table(key)
        source = table["source"].iloc[0]
        table["source"] = table["source"].str.split(";").str[0]  # the full source once, under the table
        return (f"**{get_table(key).caption}** (paper only; ours not measured: {reason})\n\n"
                f"{to_markdown(table, key)}\nSource: {source}.\n\n")
    except Exception as err:  # a table key the tables module does not know: say so, do not fail the report
        return f"*(paper table {key!r} unavailable: {err})*\n\n"


def _wall_text(state) -> str:
    """A kept stage's time is from the earlier run whose results the report shows, and says so."""
    wall = (state["run"] or {}).get("wall_time_s")
    if wall is None:
        return ""
    return f"{wall:.0f} s" + (" (earlier run)" if state["status"] == "kept" else "")


def stage_section(stage, state, run_dir: Path, paper_only_shown: set) -> str:
    run, status = state["run"] or {}, state["status"]
    parts = [f"## {stage.name}\n\n"]
    line = f"**{STATUS_TEXT.get(status, status)}**"
    if state["blocked_by"]:
        line += f" ({', '.join(state['blocked_by'])})"
    if _wall_text(state):
        line += f" in {_wall_text(state)}"
    parts.append(f"{line}. Notebook `{stage.notebook}`" + (f", executed copy `{stage.name}/{run['executed_notebook']}`"
                                                           if status in ("ok", "unchanged", "kept") and run.get("executed_notebook") else "") + ".\n\n")
    if run.get("overrides"):
        given = ", ".join(f"`{k}={v!r}`" for k, v in run["overrides"].items() if k != "out_dir")
        parts.append(f"Parameters given: {given or 'none'} (all of them: `{stage.name}/run.json`).\n\n")
    if status == "failed" and run.get("error"):
        err = run["error"]
        where = f" at cell {err['cell']}" if err.get("cell") else ""
        parts.append(f"Failed{where}: `{_cell(err.get('ename'))}: {_cell((err.get('evalue') or '').splitlines()[0] if err.get('evalue') else '')}`"
                     f" (executed notebook: `{stage.name}.failed/`).\n\n")
        if err.get("source"):
            parts.append(f"```python\n{err['source'].rstrip()}\n```\n\n")
        if err.get("traceback_tail"):
            parts.append(f"```\n{err['traceback_tail'].rstrip()}\n```\n\n")
    usable = status in ("ok", "unchanged", "kept")
    tables = sorted(state["dir"].glob("*.md")) if usable else []
    for key in stage.tables:
        if any(p.stem == key for p in tables):
            continue
        if key in paper_only_shown:
            parts.append(f"*(paper's {key}: shown above; ours not measured here either)*\n\n")
        else:
            paper_only_shown.add(key)
            parts.append(_paper_table(key, "this run did not write it" if usable else _why_not(state)))
    for path in tables:
        parts.append(path.read_text().rstrip() + "\n\n")
    for path in _figures(state) if usable else []:
        rel = path.relative_to(run_dir).as_posix()
        parts.append(f"![{path.stem}]({rel})\n\n")
    if usable and state["metrics"]:
        headline = _field(state["metrics"], "headline")
        leaves = numeric_leaves(headline if isinstance(headline, dict) else state["metrics"].get("metrics", {}),
                                none_as_nan=False)
        shown = list(leaves.items())[:HEADLINE_LEAVES]
        if shown:
            more = len(leaves) - len(shown)
            parts.append(_table(["metric", "value"], shown) +
                         (f"\n... and {more} more numbers in `{stage.name}/metrics.json`.\n\n" if more else "\n"))
    return "".join(parts)


def build_markdown(run_dir: Path, stages=STAGES, profile: str | None = None) -> str:
    run_dir = Path(run_dir)
    stages = list(check_registry(stages).values())
    summary = _read_json(run_dir / "reproduce.json")
    profile = profile or (summary or {}).get("profile") or run_dir.name
    states = {s.name: stage_state(s, run_dir, summary) for s in stages}
    commit = next((s["run"].get("git_commit") for s in states.values() if s["run"] and s["run"].get("git_commit")), None)
    out = [f"# Avatar Forcing reproduction report: profile `{profile}`\n\n",
           f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from `{runner.shown_path(run_dir)}`"
           f"{f', code at commit `{commit[:12]}`' if commit else ''}. Paper: Ki et al., *Avatar Forcing*, CVPR 2026, "
           "arXiv 2601.00664 (v2). Verdicts are per claim: *reproduced in direction* (ours moves the way the "
           "paper says, on our data and scale), *not reproduced*, or *not measurable here* (with the reason).\n\n",
           "## Stages\n\n"]
    rows = []
    for s in stages:
        st = states[s.name]
        n = len(numeric_leaves(st["metrics"].get("metrics", {}), none_as_nan=False)) if st["metrics"] else None
        rows.append([s.name, STATUS_TEXT.get(st["status"], st["status"]) +
                     (f" ({', '.join(st['blocked_by'])})" if st["blocked_by"] else ""),
                     _wall_text(st), "" if n is None else n])
    out.append(_table(["stage", "status", "wall time", "numbers"], rows))
    if summary:
        out.append(f"\nWhole run: {summary['wall_time_s']:.0f} s with {summary['jobs']} workers "
                   f"({'resumed' if summary.get('resume') else 'all selected stages rerun'}), started {summary['started']}.\n")
    out.append("\n## Claims\n\n")
    out.append(_table(["claim", "paper", "ours", "verdict", "why", "stage"], claims_rows(stages, states)))
    hw = _hardware(summary, states)
    out.append("\n## Hardware\n\n")
    if hw:
        pk = ", ".join(f"{k} {v}" for k, v in (hw.get("packages") or {}).items() if v)
        out.append(f"{hw.get('cpu_count')} CPUs ({hw.get('processor') or hw.get('machine')}), torch threads "
                   f"{hw.get('torch_threads')}, GPU: {hw.get('cuda') or 'none'}; Python {hw.get('python')}; {pk}.\n\n")
    else:
        out.append("No stage recorded its provenance.\n\n")
    paper_only_shown = set()
    out += [stage_section(s, states[s.name], run_dir, paper_only_shown) for s in stages]
    return "".join(out)


def to_html(markdown: str, run_dir: Path, title: str) -> str:
    """Render with mistune (raw HTML in the input is escaped) and inline local images as base64."""
    import mistune
    body = mistune.create_markdown(escape=True, plugins=["table"])(markdown)

    def inline(match):
        src = html.unescape(match.group(1))
        path = (run_dir / src) if not re.match(r"^[a-z]+:", src) else None
        if path is None or not path.is_file() or path.suffix.lower() not in IMAGE_TYPES:
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'<img src="data:{IMAGE_TYPES[path.suffix.lower()]};base64,{data}"'
    body = re.sub(r'<img src="([^"]+)"', inline, body)
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em}"
             "img{max-width:100%}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n{body}</body></html>\n")


def write_report(run_dir: str | Path, stages=STAGES, profile: str | None = None) -> tuple[Path, Path]:
    from afcore.io import atomic_path
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder; run `afsuite reproduce --profile ...` first")
    text = build_markdown(run_dir, stages, profile)
    md, page = run_dir / "REPORT.md", run_dir / "REPORT.html"
    with atomic_path(md) as tmp:
        tmp.write_text(text)
    with atomic_path(page) as tmp:
        tmp.write_text(to_html(text, run_dir, f"Avatar Forcing reproduction: {run_dir.name}"))
    return md, page
