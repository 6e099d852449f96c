#!/usr/bin/env python
"""What one child costs a warm process that forks many (the language server, a test
session): fork + exit of an idle child, and one fixture case's step children, with and
without ``isolate.settle()`` (gc.freeze + huge pages), side by side. Prints figures;
not a test.

Each variant runs in its own fresh process (settle cannot be undone), interleaved
round by round; CPU is rusage (user + sys) of the forking process and its children.

Usage:  python bench/fork_cost.py [--rounds N] [--forks N] [--case NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cpu(who) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def measure(settled: bool, forks: int, case: str) -> dict:
    """In this process: warm as the language server does, settle or not, then time
    ``forks`` idle children and the runs of ``case`` (write and --check)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from dimfix.isolate import settle, warm

    warm(plan=True, meta=True)
    if settled:
        settle()
    self0, kids0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    for _ in range(forks):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    idle = (_cpu(resource.RUSAGE_SELF) - self0 + _cpu(resource.RUSAGE_CHILDREN) - kids0) / forks

    from test_fixtures import Runs, _invoke

    from dimfix.driver import WORKERS

    self0, kids0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        runs = Runs(case, Path(tmp), _invoke)
        for mode in ("write", "check_json", "check_fixed"):
            getattr(runs, mode)
            WORKERS.close()
    case_cpu = _cpu(resource.RUSAGE_SELF) - self0 + _cpu(resource.RUSAGE_CHILDREN) - kids0
    return {"idle_fork_ms": idle * 1e3, "case_s": case_cpu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--forks", type=int, default=50)
    ap.add_argument("--case", default="literal_se_reduction")
    ap.add_argument("--one", choices=["plain", "settled"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one == "settled", args.forks, args.case)))
        return
    got = {"plain": [], "settled": []}
    for _ in range(args.rounds):
        for variant in got:
            out = subprocess.run([sys.executable, __file__, "--one", variant, "--forks",
                                  str(args.forks), "--case", args.case], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            got[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"medians of {args.rounds} interleaved rounds; load {os.getloadavg()[0]:.2f}")
    print(f"{'':10s} {'idle child (fork+exit)':>24s} {args.case + ' (write, check x2)':>40s}")
    for variant, rows in got.items():
        idle = statistics.median(r["idle_fork_ms"] for r in rows)
        case = statistics.median(r["case_s"] for r in rows)
        print(f"{variant:10s} {idle:21.1f} ms {case:37.2f} s")
    plain, settled = ({k: statistics.median(r[k] for r in rows) for k in rows[0]}
                      for rows in got.values())
    print(f"settled / plain: idle child {settled['idle_fork_ms'] / plain['idle_fork_ms']:.2f}x, "
          f"case {settled['case_s'] / plain['case_s']:.2f}x")


if __name__ == "__main__":
    main()
