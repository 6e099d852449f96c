"""Run jobs: each file's steps (api.fix_steps) in child processes, several
files side by side, results in the order the jobs were given.

A model that crashes its child, hangs past the timeout or exhausts memory is
reported as failed and the batch goes on. Children only compute: the parent
writes files, so a killed child never leaves a half-written one.

Results reach the report as ``Outcome`` records of plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

from dimfix.discover import Job
from dimfix.errors import DimfixError, one_line
from dimfix.isolate import POLL, Child, Limits, warm
from dimfix.source import SourceFile


@dataclass(frozen=True)
class ModelOutcome:
    """One model: what was fixed, what cannot be, or why it failed."""

    name: str
    fixes: Tuple[dict, ...] = ()
    cannot_fix: Tuple[dict, ...] = ()
    error: Optional[dict] = None  # {"kind": ..., "message": ...}
    device: str = ""
    notes: Tuple[str, ...] = ()
    printed: str = ""


@dataclass(frozen=True)
class Outcome:
    """One file: its models, and the verified new text of each file to write."""

    path: str
    display: str
    models: Tuple[ModelOutcome, ...]
    changes: Tuple[Tuple[SourceFile, str], ...] = ()  # (file as read, new text)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def source(self) -> Optional[SourceFile]:
        return self.changes[0][0] if self.changes else None


def run_jobs(jobs: Sequence[Job], workers: int, limits: Limits,
             on_start: Optional[Callable[[Job], None]] = None) -> Iterator[Outcome]:
    """Outcomes of ``jobs``, in the order given, up to ``workers`` children at a time."""
    warm()
    running: Dict[int, Tuple[object, Child]] = {}  # job index -> (steps, child)
    finished: Dict[int, Outcome] = {}
    queue = list(range(len(jobs)))
    queue.reverse()
    nxt = 0
    try:
        while nxt < len(jobs):
            while queue and len(running) < workers:
                i = queue.pop()
                if on_start:
                    on_start(jobs[i])
                _advance(i, jobs[i], _steps(jobs[i]), None, None, running, finished, limits)
            if running:
                wait([c.conn for _, c in running.values()], timeout=POLL)
            for i, (steps, child) in list(running.items()):
                if child.poll():
                    del running[i]
                    try:
                        value, error = (child.value(), child.output()), None
                    except DimfixError as e:
                        value, error = None, e
                    finally:
                        child.close()
                    _advance(i, jobs[i], steps, value, error, running, finished, limits)
            while nxt in finished:
                yield finished.pop(nxt)
                nxt += 1
    finally:
        for _, child in running.values():
            child.close()


def _steps(job: Job):
    from dimfix.api import fix_steps

    return fix_steps(job.path, job.models, job.source)


def _advance(i, job, steps, value, error, running, finished, limits) -> None:
    """Send ``steps`` its last result; start its next child, or file its outcome."""
    while True:
        try:
            step = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            finished[i] = outcome_of(job, stop.value)
            return
        except DimfixError as e:  # the file itself could not be read
            finished[i] = _failed(job, e)
            return
        except Exception as e:  # a bug in dimfix: this file is reported, the rest go on
            finished[i] = _failed(job, _internal(e))
            return
        try:
            running[i] = (steps, Child(step.fn, step.args, limits.for_model(step.max_memory)))
            return
        except OSError as e:  # no fork (out of processes): this step fails
            value, error = None, DimfixError(f"cannot start a process: {e.strerror}")


def run_here(job: Job, limits: Limits) -> Outcome:
    """One job, one child at a time."""
    return next(iter(run_jobs([job], 1, limits)))


def outcome_of(job: Job, fix) -> Outcome:
    problems = tuple(ModelOutcome(n, error={"kind": "BadUsage", "message": why})
                     for n, why in job.problems)
    models = [_model(r) for r in fix.results]
    models += [ModelOutcome(o.name, error=_error(e)) for o, e in fix.errors]
    order = {o.name: k for k, o in enumerate(job.models)}
    models.sort(key=lambda m: order.get(m.name, len(order)))
    return Outcome(job.path, job.display, tuple(models) + problems, fix.changes)


def _model(result) -> ModelOutcome:
    fixes = tuple(_entry(e.mismatch, e.reason, e.path, e.line, e.col, e.new_code)
                  for e in result.edits)
    cannot = tuple(_entry(u.mismatch, u.reason, u.path, u.line, u.col, None)
                   for u in result.unfixable)
    return ModelOutcome(result.name, fixes, cannot, None, result.device, result.notes,
                        result.printed)


def _entry(m, reason: str, path: str, line: int, col: int, code: Optional[str]) -> dict:
    def plain(v):
        return list(v) if isinstance(v, tuple) else v

    entry = {"file": path, "line": line, "col": col, "layer": m.layer_path, "kind": m.kind,
             "argument": m.arg, "old": plain(m.declared), "new": plain(m.observed),
             "reason": reason}
    if code is not None:
        entry["replacement"] = code
    return entry


def _error(e: DimfixError) -> dict:
    kind = getattr(e, "kind", None) or type(e).__name__
    error = {"kind": kind, "message": str(e)}
    detail = getattr(e, "detail", None)
    if detail:
        error["traceback"] = detail
    printed = getattr(e, "output", "")
    if printed:
        error["printed"] = printed
    return error


def _internal(e: Exception) -> DimfixError:
    import traceback

    first = one_line(str(e))
    error = DimfixError(f"internal error ({type(e).__name__}: {first}); nothing written for "
                        "this file. Please report it; --verbose shows the traceback")
    error.kind = "InternalError"
    error.detail = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return error


def _failed(job: Job, e: DimfixError) -> Outcome:
    error = _error(e)
    models = tuple(ModelOutcome(o.name, error=error) for o in job.models)
    problems = tuple(ModelOutcome(n, error={"kind": "BadUsage", "message": why})
                     for n, why in job.problems)
    return Outcome(job.path, job.display, models + problems)


__all__ = ["ModelOutcome", "Outcome", "run_jobs", "run_here", "outcome_of"]
