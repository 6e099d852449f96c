"""Batch run over fixtures/zoo versus one dimfix process per model, side by side.

    python bench/batch.py [--runs N]

Prints wall times (median of N) of:
  * one `dimfix models --check` over the whole zoo (--jobs 1 and --jobs 2),
  * one `dimfix PATH::NAME --check` process per model, run one after another,
and the ratio, with the target from the batch issue (batch >= 5x faster on 2
cores for >= 24 models), plus models per second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "fixtures" / "zoo"
DIMFIX = [sys.executable, "-m", "dimfix"]


def models(root: Path):
    """(target, args) for every model the zoo declares, in config or pragma."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["dimfix"]
    default_input = config.get("input", [])
    found = []
    for entry in config.get("models", []):
        args = []
        for shape in entry.get("input", default_input):
            args += ["--input", shape]
        for key, value in entry.get("init", {}).items():
            args += ["--init", f"{key}={value!r}"]
        if "num-classes" in entry:
            args += ["--num-classes", str(entry["num-classes"])]
        found.append((entry["target"], args))
    for path in sorted((root / "models").glob("*.py")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("# dimfix:"):
                continue
            name = next(l for l in lines[i + 1:] if not l.startswith("@")).split()[1]
            name = name.split("(")[0].rstrip(":")
            args = []
            for item in line.split(":", 1)[1].split():
                key, _, value = item.partition("=")
                if key == "input":
                    for shape in value.split(","):
                        args += ["--input", shape]
                elif key == "num-classes":
                    args += ["--num-classes", value]
                elif key == "output":
                    args += ["--output", value]
                elif key.startswith("init."):
                    args += ["--init", f"{key[5:]}={value}"]
            found.append((f"{path.relative_to(root)}::{name}", args))
    return found


def timed(cmd, cwd) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "zoo"
        shutil.copytree(ZOO, root, ignore=shutil.ignore_patterns("__pycache__"))
        (root / ".git").mkdir()
        todo = models(root)
        batch1, batch2, single = [], [], []
        for _ in range(runs):  # interleaved, so drift hits all three alike
            batch2.append(timed(DIMFIX + ["models", "--check", "--jobs", "2"], root))
            batch1.append(timed(DIMFIX + ["models", "--check", "--jobs", "1"], root))
            single.append(sum(timed(DIMFIX + [t, *a, "--check"], root) for t, a in todo))
    n = len(todo)
    b1, b2, s = (statistics.median(x) for x in (batch1, batch2, single))
    ratio = s / b2
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; {n} models; "
          f"median of {runs} runs")
    print(f"one process per model : {s:7.2f} s  ({n / s:5.2f} models/s)")
    print(f"batch, --jobs 1       : {b1:7.2f} s  ({n / b1:5.2f} models/s)")
    print(f"batch, --jobs 2       : {b2:7.2f} s  ({n / b2:5.2f} models/s)")
    target = 5.0
    mark = "PASS" if ratio >= target and n >= 24 else "MISS"
    print(f"speed-up, batch (--jobs 2) vs one process per model: {ratio:.1f}x "
          f"(target >= {target:.0f}x with >= 24 models) {mark}")


if __name__ == "__main__":
    main()
