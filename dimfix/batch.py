"""Run jobs: in this process for one file, else in worker processes.

Each worker imports torch once and takes job after job. A model that crashes
its worker, hangs past the timeout or exhausts memory is reported as failed,
the worker is replaced, and the batch goes on. Workers only compute: the
parent writes files, so a killed worker never leaves a half-written one.

Results cross process boundaries as ``Outcome`` records of plain data.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from dimfix.discover import Job
from dimfix.errors import DimfixError
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


@dataclass(frozen=True)
class Outcome:
    """One file: its models, and the verified new bytes to write (if changed)."""

    path: str
    display: str
    models: Tuple[ModelOutcome, ...]
    source: Optional[SourceFile] = None
    new_text: Optional[str] = None

    @property
    def changed(self) -> bool:
        return self.source is not None and self.new_text is not None \
            and self.new_text != self.source.text

    @property
    def new_bytes(self) -> bytes:
        return self.source.encode(self.new_text)


class Timeout(DimfixError):
    """A model ran past --timeout."""


def run_jobs(jobs: Sequence[Job], workers: int, timeout: float,
             on_start: Optional[Callable[[Job], None]] = None) -> Iterator[Outcome]:
    """Outcomes of ``jobs`` in the order they finish."""
    if len(jobs) <= 1:
        for job in jobs:
            if on_start:
                on_start(job)
            yield run_here(job, timeout)
        return
    yield from _Pool(min(workers, len(jobs)), timeout).run(jobs, on_start)


def run_here(job: Job, timeout: float) -> Outcome:
    """Run ``job`` in this process, with a SIGALRM-based timeout where possible."""
    with _alarm(timeout * max(1, len(job.models))):
        return _run(job)


def _run(job: Job) -> Outcome:
    from dimfix.api import fix_models
    from dimfix.source import read_source

    problems = tuple(ModelOutcome(n, error={"kind": "BadUsage", "message": why})
                     for n, why in job.problems)
    try:
        source = job.source or read_source(job.path)
        fix = fix_models(source, job.models)
    except (DimfixError, Exception) as e:
        error = _error(e)
        failed = tuple(ModelOutcome(o.name, error=error) for o in job.models)
        return Outcome(job.path, job.display, failed + problems)
    models = [_model(r) for r in fix.results]
    models += [ModelOutcome(o.name, error=_error(e)) for o, e in fix.errors]
    return Outcome(job.path, job.display, tuple(models) + problems, fix.source, fix.new_text)


def _model(result) -> ModelOutcome:
    fixes = tuple(_entry(e.mismatch, e.reason, result.path, e.line, e.col, e.new_code)
                  for e in result.edits)
    cannot = tuple(_entry(u.mismatch, u.reason, u.path, u.line, u.col, None)
                   for u in result.unfixable)
    return ModelOutcome(result.options.name, fixes, cannot, None, result.device, result.notes)


def _entry(m, reason: str, path: str, line: int, col: int, code: Optional[str]) -> dict:
    def plain(v):
        return list(v) if isinstance(v, tuple) else v

    entry = {"file": path, "line": line, "col": col, "layer": m.layer_path, "kind": m.kind,
             "argument": m.arg, "old": plain(m.declared), "new": plain(m.observed),
             "reason": reason}
    if code is not None:
        entry["replacement"] = code
    return entry


def _error(e: BaseException) -> dict:
    import traceback

    cause = e.__cause__ or e
    detail = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    if isinstance(e, DimfixError):
        return {"kind": type(e).__name__, "message": str(e), "traceback": detail}
    # A bug in dimfix, not in the model: said plainly, the file left alone.
    first = (str(e).strip().splitlines() or [""])[0]
    return {"kind": "InternalError",
            "message": f"internal error ({type(e).__name__}: {first}); nothing written "
                       "for this file. Please report it; --verbose shows the traceback",
            "traceback": detail}


@contextlib.contextmanager
def _alarm(seconds: float):
    usable = seconds > 0 and hasattr(signal, "setitimer") and \
        multiprocessing.current_process().name == "MainProcess" and _main_thread()
    if not usable:
        yield
        return

    def expired(signum, frame):
        raise Timeout(f"timed out after {seconds:g} s (--timeout)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# -- worker processes ----------------------------------------------------------------------


def _worker_main(conn) -> None:
    # The user's prints must not mix with our stdout (a diff, JSON); torch once.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    import warnings

    warnings.simplefilter("ignore")
    import torch  # noqa: F401 - warm the import once per worker

    conn.send("ready")  # timeouts count from here, not from the import
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        conn.send(_run(job))
        gc.collect()  # the CLI disables automatic collection; one file's garbage goes here


@dataclass
class _Worker:
    process: multiprocessing.Process
    conn: object
    job: Optional[Job] = None
    deadline: float = 0.0
    ready: bool = False


class _Pool:
    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self.context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")

    def _spawn(self) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child,), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, jobs: Sequence[Job], on_start) -> Iterator[Outcome]:
        queue = list(reversed(jobs))
        workers = [self._spawn() for _ in range(self.size)]
        try:
            while queue or any(w.job for w in workers):
                for w in workers:
                    if w.ready and w.job is None and queue:
                        w.job = queue.pop()
                        w.deadline = time.monotonic() + self.timeout * max(1, len(w.job.models))
                        if on_start:
                            on_start(w.job)
                        w.conn.send(w.job)
                busy = [w for w in workers if w.job]
                starting = [w for w in workers if not w.ready]
                soonest = min((w.deadline for w in busy), default=time.monotonic() + 60)
                ready = wait([w.conn for w in busy + starting]
                             + [w.process.sentinel for w in busy + starting],
                             timeout=max(0.0, soonest - time.monotonic()))
                for i, w in enumerate(workers):
                    if not w.ready:
                        workers[i] = self._start(w, ready)
                        continue
                    if w.job is None:
                        continue
                    outcome = self._collect(w, ready)
                    if outcome is not None:
                        yield outcome
                        if not w.process.is_alive():
                            workers[i] = self._spawn()
                        else:
                            w.job = None
        finally:
            for w in workers:
                w.conn.close()
                if w.process.is_alive():
                    w.process.kill()
                w.process.join(timeout=5)

    def _start(self, w: _Worker, ready: List[object]) -> _Worker:
        """A starting worker: ready once it said so; replaced if it died."""
        if w.conn in ready:
            try:
                w.ready = w.conn.recv() == "ready"
            except (EOFError, OSError):
                pass
        if not w.ready and not w.process.is_alive():
            w.process.join(timeout=1)
            return self._spawn()
        return w

    def _collect(self, w: _Worker, ready: List[object]) -> Optional[Outcome]:
        job = w.job
        if w.conn in ready:
            try:
                return w.conn.recv()
            except (EOFError, OSError):
                pass  # the worker died while answering: reported below
        if w.process.sentinel in ready or not w.process.is_alive():
            w.process.join(timeout=1)
            code = w.process.exitcode
            why = "killed (out of memory?)" if code == -signal.SIGKILL else f"exit code {code}"
            return _failed(job, "Crashed", f"the worker process died: {why}")
        if time.monotonic() >= w.deadline:
            w.process.kill()
            w.process.join(timeout=5)
            seconds = self.timeout * max(1, len(job.models))
            return _failed(job, "Timeout", f"timed out after {seconds:g} s (--timeout)")
        return None


def _failed(job: Job, kind: str, message: str) -> Outcome:
    error = {"kind": kind, "message": message}
    return Outcome(job.path, job.display, tuple(ModelOutcome(o.name, error=error) for o in job.models))

