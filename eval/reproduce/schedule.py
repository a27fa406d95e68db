"""`afsuite reproduce`: run the registered stages of a profile in dependency order, independent ones in
parallel (a process pool of `jobs` workers, each driving one papermill kernel), skip unchanged stages
with `resume`, and keep going after a failure: a failed stage's dependents are skipped, everything
independent of it still runs. Prints one line per stage and writes `<run dir>/reproduce.json`."""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from eval.reproduce import runner
from eval.reproduce.notebook import NotebookError
from eval.reproduce.stages import REPO, STAGES, check_registry, load_profiles, select

GOOD = {"ok", "unchanged", "kept"}          # a dependent may run on these
BAD = {"failed", "upstream failed", "upstream missing"}  # these make the exit status non-zero
SUMMARY_FILE = "reproduce.json"


@dataclass
class StageResult:
    name: str
    status: str   # ok | unchanged | kept | failed | not built | upstream failed | upstream not built |
    #               upstream missing | absent (not selected, no earlier results)
    line: str
    notebook: str = ""
    wall_time_s: float | None = None
    fingerprint: str | None = None
    error: dict | None = None
    blocked_by: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def _blocked(stage, results) -> tuple[str, list] | None:
    """Why a stage cannot run given its upstreams' outcomes, or None if it can."""
    ups = {u: results[u].status for u in stage.upstream}
    for kinds, status in (({"failed", "upstream failed"}, "upstream failed"),
                          ({"absent", "upstream missing"}, "upstream missing"),
                          ({"not built", "upstream not built"}, "upstream not built")):
        culprits = [u for u, s in ups.items() if s in kinds]
        if culprits:
            return status, culprits
    return None


_BLOCKED_TEXT = {"upstream failed": "skipped: upstream failed",
                 "upstream missing": "skipped: upstream has no results here (run it, or add it to --only)",
                 "upstream not built": "skipped: upstream not built yet"}


class Scheduler:
    def __init__(self, profile, run_dir, stages, profiles, jobs, resume, timeout, kernel, echo):
        self.profile, self.run_dir, self.profiles = profile, Path(run_dir), profiles
        self.stages = check_registry(stages)
        self.jobs, self.resume, self.timeout, self.kernel, self.echo = max(1, jobs), resume, timeout, kernel, echo
        self.results: dict[str, StageResult] = {}
        self.pool = None

    def _done(self, result: StageResult) -> None:
        self.results[result.name] = result
        self.echo(result.line)

    def _decide(self, stage, selected):
        """Settle a stage whose upstreams are settled: a result now, or a Plan to execute."""
        notebook = stage.notebook_path()
        out_dir = self.run_dir / stage.name
        if stage.name not in selected:
            record = runner.read_run(out_dir)
            if record and record.get("status") == "ok":
                return StageResult(stage.name, "kept", f"[{stage.name}] not selected (earlier results kept)",
                                   runner.shown_path(notebook), fingerprint=record.get("fingerprint"))
            return StageResult(stage.name, "absent", f"[{stage.name}] not selected (no earlier results)")
        if not notebook.is_file():
            return StageResult(stage.name, "not built", f"[{stage.name}] not built yet "
                               f"({runner.shown_path(notebook)} does not exist)", runner.shown_path(notebook))
        blocked = _blocked(stage, self.results)
        if blocked:
            status, culprits = blocked
            return StageResult(stage.name, status, f"[{stage.name}] {_BLOCKED_TEXT[status]} ({', '.join(culprits)})",
                               runner.shown_path(notebook), blocked_by=culprits)
        try:
            plan = runner.make_plan(notebook, out_dir, profile=self.profile, stage=stage, profiles=self.profiles,
                                    run_dir=self.run_dir,
                                    upstream_fps={u: self.results[u].fingerprint for u in stage.upstream})
        except (NotebookError, OSError, ValueError) as err:
            error = {"cell": None, "ename": type(err).__name__, "evalue": str(err), "source": None,
                     "traceback_tail": None}
            return StageResult(stage.name, "failed", f"[{stage.name}] FAILED before running: {err}",
                               runner.shown_path(notebook), error=error)
        for note in plan.notes:
            self.echo(f"[{stage.name}] note: {note}")
        if self.resume and runner.unchanged(plan):
            return StageResult(stage.name, "unchanged", f"[{stage.name}] skipped (unchanged)",
                               runner.shown_path(notebook), fingerprint=plan.fingerprint, notes=plan.notes)
        return plan

    def _submit(self, plan):
        cpus = os.cpu_count() or 1
        staging = runner.stage_staging(plan)
        job = runner.make_job(plan, staging, threads=cpus if plan.exclusive else max(1, cpus // self.jobs),
                              timeout=self.timeout, kernel=self.kernel)
        if self.pool is None:  # spawn: workers must not inherit this process' threads or torch state
            self.pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"))
        try:
            future = self.pool.submit(runner.execute, job)
        except BrokenProcessPool:  # a worker died (e.g. out of memory): start a fresh pool
            self.pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"))
            future = self.pool.submit(runner.execute, job)
        return future, (plan, staging, job)

    def _collect(self, future, plan, staging, job) -> StageResult:
        try:
            outcome = future.result()
        except Exception as err:  # the worker process itself died
            outcome = {"status": "failed", "started": None, "wall_time_s": None,
                       "error": {"cell": None, "ename": type(err).__name__, "evalue": str(err) or "worker died",
                                 "source": None, "traceback_tail": None}}
        record = runner.finish(plan, staging, outcome, job=job)
        where = plan.out_dir if record["status"] == "ok" else runner.failed_dir(plan.out_dir)
        line = runner.progress_line(plan.name, record["status"], record, where)
        return StageResult(plan.name, record["status"], line, runner.shown_path(plan.notebook),
                           record["wall_time_s"], plan.fingerprint, record["error"], notes=plan.notes)

    def run(self, selected) -> dict[str, StageResult]:
        pending, ready, running = list(self.stages), [], {}
        try:
            while pending or ready or running:
                for name in list(pending):  # settle every stage whose upstreams are settled
                    stage = self.stages[name]
                    if all(u in self.results for u in stage.upstream):
                        pending.remove(name)
                        outcome = self._decide(stage, selected)
                        if isinstance(outcome, StageResult):
                            self._done(outcome)
                        else:
                            ready.append(outcome)
                        break  # re-scan from the start: this result may unblock earlier-listed stages
                else:
                    ready.sort(key=lambda p: not p.exclusive)  # an exclusive stage goes first, alone
                    while ready and len(running) < self.jobs:
                        exclusive_running = any(p.exclusive for p, _, _ in running.values())
                        if exclusive_running or (ready[0].exclusive and running):
                            break
                        future, ctx = self._submit(ready.pop(0))
                        running[future] = ctx
                    if running:
                        finished, _ = wait(running, return_when=FIRST_COMPLETED)
                        for future in finished:
                            self._done(self._collect(future, *running.pop(future)))
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
        return self.results


def reproduce(profile: str, *, run_dir: str | Path | None = None, stages=STAGES, profiles: dict | None = None,
              jobs: int = 2, only=None, resume: bool = False, timeout: float | None = None,
              kernel: str = runner.KERNEL, echo=print) -> dict:
    """Run the stages of `profile` into `run_dir` (default results/<profile>). Returns the summary that is
    also written to `<run dir>/reproduce.json`: {"stages": {name: StageResult as dict}, "exit_code", ...}."""
    from afcore.io import provenance, write_json  # lazy: imports torch
    run_dir = Path(run_dir) if run_dir else REPO / "results" / profile
    profiles = load_profiles() if profiles is None else profiles
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(profiles)}")
    selected = set(select(stages, only)) if only else {s.name for s in stages}
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    echo(f"reproduce {profile}: {len(selected)} of {len(stages)} stages, {jobs} workers, "
         f"{'resume' if resume else 'rerun all'} -> {runner.shown_path(run_dir)}")
    results = Scheduler(profile, run_dir, stages, profiles, jobs, resume, timeout, kernel, echo).run(selected)
    summary = {"schema": "afsuite.reproduce/1", "profile": profile, "run_dir": runner.shown_path(run_dir),
               "started": started, "wall_time_s": round(time.perf_counter() - t0, 2), "jobs": jobs,
               "resume": resume, "only": sorted(selected) if only else None,
               "stages": {name: asdict(r) for name, r in results.items()},
               "exit_code": int(any(r.status in BAD for r in results.values())), "hardware": provenance()}
    write_json(run_dir / SUMMARY_FILE, summary)
    return summary
