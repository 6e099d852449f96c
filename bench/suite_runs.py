#!/usr/bin/env python
"""CPU, page faults and processes of the fixture tests' runs (prints figures; not a test).

Makes every run tests/test_fixtures.py makes of each case (its ``Runs``:
write, dry-run JSON, check, check of the fixed copy, --shapes, the API, the
language server's check), in this process as the tests do, after the same
warm-up as tests/conftest.py, and prints per case and in total the wall time,
this process's CPU, its children's CPU (user + sys) and page faults, and how
many processes were started. Compare two versions on one machine, one after
the other; on a shared machine compare CPU and faults, not wall.

Usage:  python bench/suite_runs.py [--every N] [CASE...]
        no CASE: every N-th case of fixtures/ (N = 5 by default)
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _last_pid() -> int:
    with open("/proc/loadavg") as f:
        return int(f.read().split()[-1])


def _usage():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (time.monotonic(), s.ru_utime + s.ru_stime, c.ru_utime, c.ru_stime, c.ru_minflt,
            s.ru_minflt, _last_pid())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("cases", nargs="*")
    opts = parser.parse_args()

    from conftest import cases
    from test_fixtures import Runs, _invoke

    from dimfix.driver import WORKERS
    from dimfix.isolate import warm

    warm(plan=True, meta=True)
    chosen = opts.cases or cases()[::opts.every]
    total = [0.0] * 7
    print(f"{'case':34s} {'wall':>6s} {'self':>6s} {'ch.usr':>6s} {'ch.sys':>6s} "
          f"{'ch.flt':>8s} {'self.flt':>8s} {'procs':>5s}")
    with tempfile.TemporaryDirectory() as tmp:
        for case in chosen:
            runs = Runs(case, Path(tmp) / case, _invoke)
            before = _usage()
            for mode in ("write", "check_json", "check_fixed", "shapes", "api", "lsp"):
                getattr(runs, mode)
            WORKERS.close()  # a worker's children count once it is reaped
            after = _usage()
            d = [a - b for a, b in zip(after, before)]
            d[6] -= 1  # the read of /proc/loadavg is no process
            total = [t + x for t, x in zip(total, d)]
            print(f"{case:34s} {d[0]:6.2f} {d[1]:6.2f} {d[2]:6.2f} {d[3]:6.2f} {d[4]:8d} "
                  f"{d[5]:8d} {d[6]:5d}", flush=True)
    t = total
    print(f"{'TOTAL ' + str(len(chosen)) + ' cases':34s} {t[0]:6.1f} {t[1]:6.1f} {t[2]:6.1f} "
          f"{t[3]:6.1f} {int(t[4]):8d} {int(t[5]):8d} {int(t[6]):5d}")


if __name__ == "__main__":
    main()
