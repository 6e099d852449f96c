#!/usr/bin/env python
"""What the process boundary around the user's code costs (prints figures; not a test).

dimfix runs each trace in a child forked from a parent that has imported torch
(dimfix/isolate.py). This measures, side by side in one run:

  import   python -c "import torch"                           the latency floor
  step     one isolated step in a warm parent: fork, run a function that
           returns a small record, send it back, reap the child

A fix takes two steps (draft, verify), so the boundary costs about 2 x step.
Target (issue "A hard boundary around the user's code"): <= 0.1 x import torch.

Usage:  python bench/boundary.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.1


def _import_torch() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _record():
    from dimfix.draft import Draft

    return Draft({"/x/net.py": "x" * 2000}, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    opts = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from dimfix.isolate import Limits, run_isolated, warm

    warm()
    limits = Limits(timeout=60)
    run_isolated(_record, (), limits)  # first fork pays page-table setup once
    imports, steps = [], []
    for _ in range(opts.runs):
        imports.append(_import_torch())
        start = time.perf_counter()
        run_isolated(_record, (), limits)
        steps.append(time.perf_counter() - start)
    imp, step = statistics.median(imports), statistics.median(steps)
    ratio = 2 * step / imp
    print(f"load average {os.getloadavg()[0]:.2f}; median of {opts.runs} interleaved runs")
    print(f"import torch            : {imp * 1000:7.1f} ms")
    print(f"one isolated step       : {step * 1000:7.1f} ms")
    print(f"boundary per fix (2 steps) / import torch: {ratio:.3f}x  target <= {TARGET}x  "
          f"{'PASS' if ratio <= TARGET else 'MISS'}")


if __name__ == "__main__":
    main()
