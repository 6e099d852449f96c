"""The one driver: run sessions' requests in child processes.

``Driver`` is the whole loop of a session — start a child for its next
request, hand the child's typed result back, start the next — written once.
Its three front ends differ only in how they wait for a child:

* ``run_many``   — many sessions, up to ``workers`` children at once, results
  in the order given (the CLI over files and folders); ``run``, one session
  (the library API, editor mode), is run_many of one;
* ``run_async``  — one session from an asyncio event loop; cancelling it
  kills the child (the language server).
"""

from __future__ import annotations

import asyncio
import atexit
import os
from collections import OrderedDict
from multiprocessing.connection import wait
from typing import Callable, Dict, Iterator, Optional, Sequence

from dimfix.errors import ErrorKind, Problem
from dimfix.isolate import POLL, Child
from dimfix.worker import Worker, close_spare, take_spare
from dimfix.session import FileFix, FixSession
from dimfix.steps import Failed, Limits, StepResult

Observer = Callable[[FixSession, StepResult], None]


class Workers:
    """This process's warm workers (worker.py), one per project: kept between
    runs (a batch's files, the language server's saves), replaced when a file
    one imported changed on disk, at most ``MAX`` of them."""

    MAX = 4

    def __init__(self) -> None:
        self.by_project: "OrderedDict[tuple, Worker]" = OrderedDict()

    def for_path(self, path: str) -> Optional[Worker]:
        """The worker for the project of the file at ``path``."""
        if os.environ.get("DIMFIX_WORKER", "1") == "0":
            return None
        from dimfix.load import Location

        loc = Location.of(path)
        key = (loc.root, loc.module.split(".")[0] if loc.in_package else None)
        worker = self.by_project.get(key)
        if worker is not None and worker.stale(loc.path):
            worker.close()
            worker = None
        if worker is None:
            worker = take_spare()
            if worker is not None:
                worker.adopt(*key)
            else:
                worker = Worker(*key)
            self.by_project[key] = worker
            while len(self.by_project) > self.MAX:
                self.by_project.popitem(last=False)[1].close()
        self.by_project.move_to_end(key)
        return worker

    def close(self) -> None:
        close_spare()
        while self.by_project:
            self.by_project.popitem()[1].close()


WORKERS = Workers()
atexit.register(WORKERS.close)


class Driver:
    """Runs sessions' requests as children under ``limits``, each forked by
    its project's warm worker; ``observe(session, result)``, if given, sees
    every result once its session took it."""

    def __init__(self, limits: Limits, observe: Optional[Observer] = None) -> None:
        self.limits = limits
        self.observe = observe

    def start(self, session: FixSession) -> Optional[Child]:
        """The child for ``session``'s first request (None: it needs none)."""
        return self._next(session, None)

    def finish(self, session: FixSession, child: Child) -> Optional[Child]:
        """Hand ``child``'s result to ``session``; the child for its next request."""
        result = child.result
        child.close()
        nxt = self._next(session, result)
        if self.observe is not None:
            self.observe(session, result)
        return nxt

    def _next(self, session: FixSession, result: Optional[StepResult]) -> Optional[Child]:
        while True:
            request = session.advance(result)
            if request is None:
                return None
            try:
                return Child(request.fn, request.args, self.limits.for_model(request.max_memory),
                             WORKERS.for_path(session.path))
            except OSError as e:  # no fork (out of processes): this step fails
                result = Failed(Problem(ErrorKind.CRASHED,
                                        f"cannot start a process: {e.strerror}"), self.limits)


def run(session: FixSession, limits: Limits) -> FileFix:
    """Drive ``session`` one child at a time."""
    return next(run_many([session], 1, limits))


def run_many(sessions: Sequence[FixSession], workers: int, limits: Limits,
             on_start: Optional[Callable[[FixSession], None]] = None) -> Iterator[FileFix]:
    """Each session's FileFix, in the order given, up to ``workers`` children at a time."""
    driver = Driver(limits)
    running: Dict[int, Child] = {}  # session index -> its child
    finished: Dict[int, FileFix] = {}
    queue = list(reversed(range(len(sessions))))
    nxt = 0

    def advance(i: int, child: Optional[Child]) -> None:
        if child is None:
            finished[i] = sessions[i].result
        else:
            running[i] = child

    try:
        while nxt < len(sessions):
            while queue and len(running) < workers:
                i = queue.pop()
                if on_start:
                    on_start(sessions[i])
                advance(i, driver.start(sessions[i]))
            if running:
                wait([w for c in running.values() for w in c.waitables()], timeout=POLL)
            for i, child in list(running.items()):
                if child.poll():
                    del running[i]
                    advance(i, driver.finish(sessions[i], child))
            while nxt in finished:
                yield finished.pop(nxt)
                nxt += 1
    finally:
        for child in running.values():
            child.close()
        for session in sessions:
            session.close()


async def run_async(session: FixSession, limits: Limits,
                    observe: Optional[Observer] = None) -> FileFix:
    """Drive ``session`` from the running event loop; cancelling kills the child."""
    driver = Driver(limits, observe)
    child = driver.start(session)
    try:
        while child is not None:
            await _done(child)
            child = driver.finish(session, child)
    finally:
        if child is not None:
            child.close()
        session.close()
    return session.result


async def _done(child: Child) -> None:
    """Wait, without blocking the loop, until ``child`` has a result or hit a limit."""
    loop = asyncio.get_running_loop()
    while not child.poll():
        ready = loop.create_future()
        fds = [w if isinstance(w, int) else w.fileno() for w in child.waitables()]
        for fd in fds:
            loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait_for(ready, POLL)
        except asyncio.TimeoutError:
            pass
        finally:
            for fd in fds:
                loop.remove_reader(fd)


__all__ = ["Driver", "run", "run_async", "run_many"]
