#!/usr/bin/env python
"""dimfix-lsp: time from didSave to publishDiagnostics, warm (prints figures; not a test).

One real ``dimfix-lsp`` process is started over stdio (the tests' pygls client,
tests/lsp_session.py) in a temporary project holding:

  small.py   the three_wrong_layers SmallConvNet (545 k parameters), traced on CPU
  gpt5b.py   the 5-billion-parameter GPT of bench/latency.py, traced on meta

each in two variants: clean (the common save: nothing to report) and broken
(one or more wrong sizes: the save also drafts, formats and verifies the fix
that the code action will offer). Each file is opened once (untimed warm-up),
then saved --runs times; each save is timed from didSave to the diagnostics
published for it. Interleaved with those rounds, ``python -c "import torch"``
is timed in the same run: what a save would cost a tool that starts afresh.

Targets: small clean save <= 0.1x import torch; 5B save <= 0.5x.

Usage:  python bench/lsp.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from latency import Gpt  # noqa: E402
from lsp_session import Session  # noqa: E402

PRAGMA = "# dimfix: input=2x3x32x32\nclass SmallConvNet"
FIXTURE = HERE.parent / "fixtures" / "three_wrong_layers"
GPT_5B = Gpt("5B", 4096, 24, 2048)


def write_project(root: Path) -> dict:
    (root / "pyproject.toml").write_text("[tool.dimfix]\ntimeout = 300\n")
    files = {
        "small clean": ("small_clean.py",
                        (FIXTURE / "expected.py").read_text().replace("class SmallConvNet", PRAGMA)),
        "small broken": ("small_broken.py",
                         (FIXTURE / "broken.py").read_text().replace("class SmallConvNet", PRAGMA)),
        "5B GPT clean": ("gpt5b_clean.py",
                         GPT_5B.expected().replace("class GPT", "# dimfix: input=long:1x16\nclass GPT")),
        "5B GPT broken": ("gpt5b_broken.py",
                          GPT_5B.source().replace("class GPT", "# dimfix: input=long:1x16\nclass GPT")),
    }
    for name, text in files.values():
        (root / name).write_text(text)
    return {label: root / name for label, (name, _) in files.items()}


def import_torch() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


async def bench(root: Path, runs: int) -> None:
    files = write_project(root)
    session = Session(root)
    t0 = time.perf_counter()
    await session.start()
    print(f"server start (imports torch, libcst, black, meta kernels): "
          f"{time.perf_counter() - t0:.2f} s")
    expected = {"small clean": 0, "small broken": 3, "5B GPT clean": 0, "5B GPT broken": 1}
    uris = {}
    for label, path in files.items():  # warm-up: the open
        uris[label] = session.open(path)
        diags = await session.diagnostics(uris[label], timeout=300)
        assert len(diags) == expected[label], (label, diags)
    times = {label: [] for label in files}
    torch_times = []
    try:
        for _ in range(runs):
            torch_times.append(import_torch())
            for label, path in files.items():
                mark = session.mark()
                start = time.perf_counter()
                session.save(path)
                diags = await session.diagnostics(uris[label], mark, timeout=300)
                times[label].append(time.perf_counter() - start)
                assert len(diags) == expected[label], (label, diags)
    finally:
        await session.stop()
    floor = statistics.median(torch_times)
    print(f'python -c "import torch": median {floor * 1000:7.1f} ms over {runs} runs')
    print(f"{'didSave -> diagnostics':<24} {'median':>9} {'min':>9} {'x import torch':>15}  target")
    targets = {"small clean": 0.1, "small broken": None, "5B GPT clean": 0.5, "5B GPT broken": 0.5}
    for label, values in times.items():
        med = statistics.median(values)
        target = targets[label]
        verdict = "" if target is None else f"<= {target}x {'met' if med / floor <= target else 'MISSED'}"
        print(f"{label:<24} {med * 1000:6.1f} ms {min(values) * 1000:6.1f} ms {med / floor:14.2f}x  "
              f"{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dimfix-lsp-bench-") as tmp:
        asyncio.run(bench(Path(tmp), args.runs))


if __name__ == "__main__":
    main()
