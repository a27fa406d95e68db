"""The tidy votes file: one row per judgement, `rater_id, set_id, criterion, left_system, right_system,
choice` with choice in {left, right, tie}. Extra columns (e.g. the form's `time`) are allowed and kept.

Every reader checks every row and reports all problems as `file:line: problem` instead of dropping
rows: a silently dropped vote changes the result.
"""
from __future__ import annotations

import csv
import fcntl
import json
import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from afcore.io import atomic_path
from eval.study.design import CHOICES, COLUMNS, StudyError

MAX_REPORTED = 20


def _report(problems: list[str], what: str):
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED])
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise StudyError(f"{len(problems)} problem(s) in {what}; fix or delete these rows and run again:\n"
                         f"  {shown}{more}")


def check_row(row: dict, where: str, criteria=None) -> list[str]:
    """Problems with one vote row (already stripped), each prefixed with `where` (file:line)."""
    problems = [f"{where}: {col} is missing" for col in COLUMNS if not row.get(col)]
    if row.get("choice") and row["choice"] not in CHOICES:
        problems.append(f"{where}: choice {row['choice']!r} is not one of {', '.join(CHOICES)}")
    if row.get("left_system") and row["left_system"] == row.get("right_system"):
        problems.append(f"{where}: system {row['left_system']!r} is judged against itself")
    if criteria and row.get("criterion") and row["criterion"] not in criteria:
        problems.append(f"{where}: criterion {row['criterion']!r} is not one of {list(criteria)}")
    return problems


def judgement_key(row) -> tuple:
    """What one rater may judge only once: a criterion of a set for an unordered system pair."""
    return (row["rater_id"], row["set_id"], row["criterion"],
            tuple(sorted((row["left_system"], row["right_system"]))))


def read_votes(paths, criteria=None) -> pd.DataFrame:
    """Read and check one or more votes CSVs (blank lines are skipped). Raises StudyError listing
    every bad row by file and line: missing fields, unknown choice, a system judged against itself,
    an unknown criterion (when `criteria` is given) and a repeated judgement."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    rows, problems, seen = [], [], {}
    for path in map(Path, paths):
        if not path.is_file():
            raise StudyError(f"{path}: votes file not found")
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise StudyError(f"{path}:1: header lacks column(s) {missing}; the header must contain "
                                 f"{', '.join(COLUMNS)}")
            for raw in reader:
                where = f"{path}:{reader.line_num}"
                if None in raw:
                    problems.append(f"{where}: more fields than the header has columns")
                row = {k: (v or "").strip() for k, v in raw.items() if k is not None}
                if not any(row.values()):
                    continue
                row["choice"] = row["choice"].lower()
                found = check_row(row, where, criteria)
                if not found:
                    key = judgement_key(row)
                    if key in seen:
                        found.append(f"{where}: rater {row['rater_id']!r} already judged {row['criterion']!r} "
                                     f"of set {row['set_id']!r} for this pair at {seen[key]}")
                    seen[key] = where
                problems += found
                rows.append(row)
    _report(problems, ", ".join(map(str, paths)))
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    return pd.DataFrame(rows, columns=[*COLUMNS, *extra]).fillna("").astype(str)


def write_votes(votes: pd.DataFrame, path) -> Path:
    """Write a votes table atomically (the required columns first, then any extra ones)."""
    extra = [c for c in votes.columns if c not in COLUMNS]
    with atomic_path(path) as tmp:
        votes[[*COLUMNS, *extra]].to_csv(tmp, index=False, lineterminator="\n")
    return Path(path)


@contextmanager
def locked(path):
    """An exclusive lock on `path.lock`, so two kernels (two Voila raters) never interleave a
    read-modify-write of the same votes file."""
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def append_vote(path, row: dict) -> pd.DataFrame:
    """Add one judgement and rewrite the file atomically; refuse a repeat of the same judgement.
    Returns the whole table as written."""
    row = {k: str(v).strip() for k, v in row.items()}
    _report(check_row(row, f"{path}:new vote"), str(path))
    with locked(path):
        votes = read_votes(path) if Path(path).is_file() else pd.DataFrame(columns=list(COLUMNS))
        key = judgement_key(row)
        if any(judgement_key(r) == key for r in votes.to_dict("records")):
            raise StudyError(f"{path}: rater {row['rater_id']!r} already judged {row['criterion']!r} of set "
                             f"{row['set_id']!r} for {key[3][0]} vs {key[3][1]}; a judgement cannot be changed")
        votes = pd.concat([votes, pd.DataFrame([row])], ignore_index=True).fillna("")
        write_votes(votes, path)
    return votes


def import_wide(export_path, mapping_path) -> pd.DataFrame:
    """Turn a wide survey export (one row per respondent, one column per question) into tidy votes.

    The mapping file (JSON) names the rater column, how answers map to left/tie/right, and what each
    question column asked. A question field is either a literal or {"column": NAME} to read it from the
    respondent's row (for surveys that randomise sides per respondent):

        {"rater_column": "ResponseId", "skip_rows": 2,
         "choices": {"Left video": "left", "About the same": "tie", "Right video": "right"},
         "questions": {"Q1_1": {"set_id": "s01", "criterion": "Overall",
                                "left_system": "Ours", "right_system": {"column": "Q1_right"}}}}

    `skip_rows` drops extra header rows under the column names (Qualtrics exports have 2). Empty
    answers are skipped (the respondent did not answer); any other unmapped answer is an error.
    """
    mapping = json.loads(Path(mapping_path).read_text())
    for key in ("rater_column", "choices", "questions"):
        if key not in mapping:
            raise StudyError(f"{mapping_path}: mapping lacks {key!r}; see `afsuite study import --help`")
    choices = {str(k).strip().lower(): v for k, v in mapping["choices"].items()}
    if bad := sorted(set(choices.values()) - set(CHOICES)):
        raise StudyError(f"{mapping_path}: choices map to {bad}; map every answer to one of {CHOICES}")
    rows, problems = [], []
    with open(export_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        needed = [mapping["rater_column"], *mapping["questions"]]
        if missing := [c for c in needed if c not in (reader.fieldnames or [])]:
            raise StudyError(f"{export_path}:1: columns {missing} named in {mapping_path} are not in the export")
        for index, raw in enumerate(reader):
            if index < mapping.get("skip_rows", 0):
                continue
            where = f"{export_path}:{reader.line_num}"
            for column, question in mapping["questions"].items():
                answer = (raw.get(column) or "").strip()
                if not answer:
                    continue
                row = {"rater_id": raw.get(mapping["rater_column"])}
                for field in COLUMNS[1:5]:
                    spec = question.get(field)
                    row[field] = raw.get(spec["column"]) if isinstance(spec, dict) else spec
                row = {k: (v or "").strip() for k, v in row.items()}
                row["choice"] = choices.get(answer.lower(), "")
                if not row["choice"]:
                    problems.append(f"{where}: answer {answer!r} in column {column!r} is not in the "
                                    f"mapping's choices {list(mapping['choices'])}")
                    continue
                problems += check_row(row, f"{where} ({column})")
                rows.append(row)
    _report(problems, str(export_path))
    keys = Counter(judgement_key(r) for r in rows)
    if repeated := [k for k, n in keys.items() if n > 1]:
        raise StudyError(f"{mapping_path}: {len(repeated)} judgement(s) occur more than once (same rater, set, "
                         f"criterion and pair), e.g. {repeated[0]}; map each question column to a distinct item")
    return pd.DataFrame(rows, columns=list(COLUMNS))
