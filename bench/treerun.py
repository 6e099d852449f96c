"""Run a command and measure its whole process tree (a bench helper; not a test).

dimfix is a tree of processes: the CLI (or language server), its warm worker
and each step's child, forked from the worker. ``/usr/bin/time -f %M`` gives
the largest of them only, so ``run_tree`` polls ``/proc`` of the tree while
the command runs:

* ``rss_sum``: the peak over samples of the sum of the tree's RSS. A page the
  worker and its forked child share is counted in both: an upper bound.
* ``pss``: the peak over samples of the sum of the tree's PSS (a shared page
  is split between the processes that map it): the memory the tree uses.
  Reading ``smaps_rollup`` costs 25-60 ms of CPU per process, so it is only
  sampled when asked (``pss=True``; the benchmarks do it in an untimed round).
* ``rss_max``: the largest single process (``ru_maxrss`` from ``wait4``, as
  ``/usr/bin/time -f %M`` reports it), comparable with older figures.
* ``cpu``: user + system seconds of the tree (every process reaped below the
  root counts): less sensitive to other load than the wall time.

The tree is found from the root through ``/proc/PID/task/PID/children`` (the
main thread's children: dimfix forks from its main threads). The command runs
in its own session; on a timeout every process of the tree is killed.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class TreeRun:
    wall: float  # seconds
    rc: Optional[int]  # None: killed on timeout
    stdout: str
    stderr: str
    cpu: float = 0.0  # user + system seconds of the reaped tree
    rss_max: float = 0.0  # MB, the largest single process
    rss_sum: float = 0.0  # MB, peak of the sum over the tree
    pss: Optional[float] = None  # MB, peak of the sum of PSS over the tree (pss=True)
    procs: int = 0  # most processes of the tree seen at once
    note: str = ""  # why the run does not count, if it does not


def tree(root: int) -> List[int]:
    """``root`` and its descendants, found through the main threads' children."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                todo += [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            pass
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _Sampler:
    def __init__(self, root: int, pss: bool) -> None:
        self.root, self.with_pss = root, pss
        self.rss_sum, self.pss, self.procs = 0, 0, 0
        self.seen: Dict[int, None] = {}

    def sample(self) -> None:
        pids = tree(self.root)
        self.seen.update(dict.fromkeys(pids))
        self.procs = max(self.procs, len(pids))
        self.rss_sum = max(self.rss_sum, sum(_rss(p) for p in pids))
        if self.with_pss:
            self.pss = max(self.pss, sum(_pss(p) for p in pids))

    def kill_left(self) -> None:
        """SIGKILL what is left of the tree (still in the command's session)."""
        for pid in list(self.seen) + tree(self.root):
            try:
                if os.getsid(pid) == self.root:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def run_tree(cmd: Sequence[str], cwd, env: Optional[Mapping[str, str]] = None,
             timeout: float = 180.0, mem_limit: Optional[int] = None, pss: bool = False,
             interval: float = 0.02) -> TreeRun:
    """Run ``cmd``; its wall time, exit code, output and the tree's memory."""

    def limit() -> None:
        if mem_limit:
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=None if env is None else dict(env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                preexec_fn=limit, start_new_session=True)
        sampler = _Sampler(proc.pid, pss)
        fd = os.pidfd_open(proc.pid)
        deadline = start + timeout
        timed_out = False
        try:
            while True:
                sampler.sample()
                left = deadline - time.perf_counter()
                if left <= 0:
                    timed_out = True
                    sampler.kill_left()
                    break
                if select.select([fd], [], [], min(interval * (4 if pss else 1), left))[0]:
                    break
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            os.close(fd)
            sampler.kill_left()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return TreeRun(wall, None if timed_out else proc.returncode, stdout, stderr,
                   cpu=usage.ru_utime + usage.ru_stime, rss_max=usage.ru_maxrss * 1024 / 1e6,
                   rss_sum=sampler.rss_sum / 1e6, pss=sampler.pss / 1e6 if pss else None,
                   procs=sampler.procs,
                   note=f"timed out after {timeout:g} s (killed)" if timed_out else "")


__all__ = ["TreeRun", "run_tree", "tree"]
