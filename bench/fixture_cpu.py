#!/usr/bin/env python
"""CPU of fixture runs, and of the stages inside their children (prints figures; not a test).

Runs dimfix's click command in-process on a copy of each fixture, as
tests/test_fixtures.py does, and sums the CPU (rusage, user + sys) of this
process and of the children it forked. Inside each child (forked from this
process: ``DIMFIX_WORKER=0`` unless set) the CPU of the main stages is summed
with ``time.process_time``, no profiler: cProfile's per-call cost makes
libcst's walks look about three times dearer than they are.

Usage:  python bench/fixture_cpu.py MODE[,MODE...] CASE...
        MODE: write, dry, check, shapes, or all
"""

from __future__ import annotations

import collections
import functools
import importlib
import json
import os
import resource
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DIMFIX_WORKER", "0")

ROOT = Path(__file__).resolve().parent.parent
MODES = {"write": [], "dry": ["--dry-run", "--format", "json"], "check": ["--check"],
         "shapes": ["--shapes", "--format", "json"]}
# (module, function or Class.method) whose CPU is summed in the children;
# nested calls of one stage count once.
STAGES = [("dimfix.locate", "CallIndex.__init__"), ("dimfix.follow.resolver", "_File.__init__"),
          ("dimfix.search.world", "World.__init__"), ("dimfix.formatting", "format_edit"),
          ("dimfix.trace", "trace_model"), ("dimfix.draft", "_import"),
          ("dimfix.draft", "draft_fix"), ("dimfix.draft", "verify_fix"),
          ("dimfix.draft", "_check_doubled_batch"), ("dimfix.plan", "plan_edits"),
          ("dimfix.definitions", "plan_loading"), ("dimfix.draft", "_alternatives"),
          ("dimfix.shapes", "Recorder.table")]


def _timed(spent: collections.Counter, name: str, fn):
    depth = [0]

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        start = time.process_time()
        depth[0] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                spent[name] += time.process_time() - start
    return timed


def _instrument(spent: collections.Counter, report_fd: int) -> None:
    """Wrap the stages, and make every child write what it spent to ``report_fd``."""
    from dimfix import isolate

    for module_name, qualname in STAGES:
        module = importlib.import_module(module_name)
        owner, _, name = qualname.rpartition(".")
        holder = getattr(module, owner) if owner else module
        setattr(holder, name, _timed(spent, qualname, getattr(holder, name)))
    child_main = isolate._child_main

    def reporting_child_main(fn, args, *rest):
        def step(*a):
            start = time.process_time()
            try:
                return fn(*a)
            finally:
                spent["step:" + getattr(fn, "__name__", "fn")] += time.process_time() - start
                os.write(report_fd, (json.dumps(spent) + "\n").encode())
        return child_main(step, args, *rest)

    isolate._child_main = reporting_child_main


def _cpu() -> tuple:
    own, children = (resource.getrusage(who) for who in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    modes = list(MODES) if sys.argv[1] == "all" else sys.argv[1].split(",")
    from dimfix import isolate

    isolate.warm(plan=True, meta=True)
    read_fd, write_fd = os.pipe()
    spent: collections.Counter = collections.Counter()
    _instrument(spent, write_fd)
    from click.testing import CliRunner

    from dimfix.cli import main as dimfix

    tmp = Path(tempfile.mkdtemp())
    parent = children = 0.0
    for case in sys.argv[2:]:
        args = shlex.split((ROOT / "fixtures" / case / "args").read_text())
        for mode in modes:
            folder = tmp / mode / case
            shutil.copytree(ROOT / "fixtures" / case, folder)
            os.chdir(folder)
            before = _cpu()
            argv = MODES[mode] + args if mode == "shapes" else args + MODES[mode]
            result = CliRunner().invoke(dimfix, argv)
            after = _cpu()
            parent += after[0] - before[0]
            children += after[1] - before[1]
            print(f"{case:40s} {mode:6s} exit {result.exit_code} parent {after[0] - before[0]:.2f}s "
                  f"children {after[1] - before[1]:.2f}s", flush=True)
    os.close(write_fd)
    total: collections.Counter = collections.Counter()
    with os.fdopen(read_fd) as reports:
        for line in reports:
            total.update(json.loads(line))
    print(f"TOTAL parent {parent:.2f}s children {children:.2f}s")
    for stage, seconds in total.most_common():
        print(f"  {stage:30s} {seconds:6.2f}s")


if __name__ == "__main__":
    main()
