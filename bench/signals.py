#!/usr/bin/env python
"""Interrupt dimfix at random moments and count what it leaves behind.

Each round copies fixtures/three_wrong_layers to a fresh folder, starts
``dimfix broken.py::SmallConvNet --input 2x3x32x32`` (which writes a fix),
sends SIGINT or SIGTERM after a random delay, and then checks:

  partial   the file is neither the original nor the expected fix
  temp      a ``.*.dimfix`` file beside it, or a ``dimfix-*`` entry in the temp folder
  orphans   a dimfix process (a forked child) still running afterwards
  message   the last stderr line is wrong for what happened: "interrupted;
            nothing written" when the file was fixed, or a traceback from dimfix
            (a SIGINT in the first milliseconds, while Python itself starts and
            before any dimfix code runs, prints Python's traceback: counted
            apart, as "startup")

Delays are drawn from 0-80 ms (before torch is even imported) and from the
whole length of an uninterrupted run (measured first), half the rounds each.

Usage:  python bench/signals.py [--rounds N]   (default 110 per signal)
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "fixtures" / "three_wrong_layers"
ARGS = ["broken.py::SmallConvNet", "--input", "2x3x32x32"]


def _run(folder: Path, tmp: str, delay: float, sig: int):
    env = {**os.environ, "TMPDIR": tmp}
    proc = subprocess.Popen([sys.executable, "-m", "dimfix", *ARGS], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    if delay is not None:
        time.sleep(delay)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _orphans(marker: str) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if marker.encode() in args:
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=110, help="rounds per signal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true", help="show each bad message")
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    original = (CASE / "broken.py").read_bytes()
    expected = (CASE / "expected.py").read_bytes()

    with tempfile.TemporaryDirectory(prefix="signals-") as base:
        base = Path(base)
        tmp = base / "tmp"
        tmp.mkdir()
        folder = base / "case"
        shutil.copytree(CASE, folder)
        start = time.monotonic()
        code, err = _run(folder, str(tmp), None, 0)
        length = time.monotonic() - start
        assert code == 0 and (folder / "broken.py").read_bytes() == expected, err
        print(f"an uninterrupted run takes {length:.2f} s; load average {os.getloadavg()[0]:.2f}")

        totals = dict(rounds=0, fixed=0, untouched=0, partial=0, temp=0, orphans=0, message=0,
                      startup=0)
        for sig in (signal.SIGINT, signal.SIGTERM):
            for i in range(opts.rounds):
                shutil.rmtree(folder)
                shutil.copytree(CASE, folder)
                delay = rng.uniform(0, 0.08) if i % 2 == 0 else rng.uniform(0, length)
                code, err = _run(folder, str(tmp), delay, sig)
                data = (folder / "broken.py").read_bytes()
                totals["rounds"] += 1
                last = err.strip().splitlines()[-1] if err.strip() else ""
                if data == expected:
                    totals["fixed"] += 1
                    bad = "nothing written" in last
                elif data == original:
                    totals["untouched"] += 1
                    bad = code == 0
                else:
                    totals["partial"] += 1
                    bad = True
                if "Traceback" in err and "/dimfix/" not in err and data == original:
                    # Python itself was still starting (site, encodings): no
                    # dimfix code had run to install a handler.
                    totals["startup"] += 1
                    bad = False
                elif "Traceback" in err:
                    bad = True
                totals["message"] += bad
                if bad and opts.verbose:
                    print(f"  {signal.Signals(sig).name} after {delay * 1000:.0f} ms: exit {code}, "
                          f"{'fixed' if data == expected else 'untouched'}: {err.strip()[-300:]!r}")
                totals["temp"] += len(glob.glob(str(folder / ".*.dimfix"))) + len(os.listdir(tmp))
                for leftover in os.listdir(tmp):
                    shutil.rmtree(tmp / leftover, ignore_errors=True)
                time.sleep(0.1)
                totals["orphans"] += _orphans("broken.py::SmallConvNet")

    print(f"rounds: {totals['rounds']} ({opts.rounds} SIGINT, {opts.rounds} SIGTERM)")
    print(f"  file fixed: {totals['fixed']}, untouched: {totals['untouched']}; interrupted while "
          f"Python itself started (its own traceback, nothing touched): {totals['startup']}")
    for key in ("partial", "temp", "orphans", "message"):
        verdict = "PASS" if totals[key] == 0 else "MISS"
        print(f"  {key:9s}: {totals[key]:4d}   target 0  {verdict}")


if __name__ == "__main__":
    main()
