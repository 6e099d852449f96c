#!/usr/bin/env python
"""Huge-model benchmark for the dimfix CLI (prints figures; not a test).

GPT-style decoders of about 1, 5 and 13 billion parameters, written by this
script into a temporary folder (config only: nothing is ever materialized),
each with ONE wrong layer: ``lm_head`` is ``nn.Linear(<literal>, vocab_size)``
with a literal left over from a narrower config. For each, the real command

    dimfix gpt.py::GPT --input long:1x16 -v

runs end to end and writes the fix; afterwards the file must be the original
with exactly that literal changed to d_model, the exit code 0, and stderr must
say the model was traced on ``meta``. A depth sweep at fixed width
(d_model 1024, 12/24/48/96 layers) gives the cost of one more block.

Everything is measured side by side in one run, interleaved round by round
with ``python -c "import torch"`` (the latency floor), after one untimed
warm-up round. Every child runs in its own process group under RLIMIT_AS
(--mem-limit-gib, default 6) and a timeout, so a dimfix that materialized one
of these models on CPU (20-52 GB as float32) would fail or be killed instead
of taking the machine down.

Usage:  python bench/huge.py [--runs N | --quick] [--no-sweep]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import (  # noqa: E402  (the runner, guards, RSS method and GPT are shared)
    HEAD_DIM, MAX_LEN, VOCAB, Case, Gpt, Run, dimfix_command, mark,
    measure, parse_options, print_cases, print_figures, print_setup,
)

TARGET_RATIO = 2.0  # wall time of a huge-model fix vs `import torch`
TARGET_RSS_MB = 400.0  # peak RSS of the whole dimfix process
TARGET_13B_VS_1B = 1.10  # 13B wall within 10 % of 1B wall: cost must not grow with width

INPUT = "long:1x16"



MODELS = [
    Gpt("1B", 2048, 20, 1024),
    Gpt("5B", 4096, 24, 2048),
    Gpt("13B", 5120, 40, 4096),
]
SWEEP_WIDTH = 1024
SWEEP = [Gpt(f"L{n}", SWEEP_WIDTH, n, 512) for n in (12, 24, 48, 96)]


def check_fix(gpt: Gpt, path: Path) -> Optional[str]:
    """None if the file is the original with exactly the one literal fixed."""
    text = path.read_text(encoding="utf-8")
    if text == gpt.expected():
        return None
    if text == gpt.source():
        return "file unchanged"
    want, got = gpt.expected().splitlines(), text.splitlines()
    diff = [f"line {i + 1}: {g!r}" for i, (w, g) in enumerate(zip(want, got)) if w != g]
    return "wrong fix: " + ("; ".join(diff[:3]) or f"{len(got)} lines, expected {len(want)}")


def gpt_case(gpt: Gpt, tmp: Path, dimfix: List[str], timeout: float) -> Case:
    folder = tmp / gpt.name
    folder.mkdir()
    model = folder / "gpt.py"

    def prepare() -> None:
        model.write_text(gpt.source(), encoding="utf-8")

    def verify(run: Run) -> Optional[str]:
        if run.rc != 0:
            return f"exit {run.rc}, expected 0"
        problem = check_fix(gpt, model)
        if problem:
            return problem
        if "traced on meta" not in run.stderr:
            return "not traced on the meta device"
        return None

    return Case(gpt.name, f"dimfix GPT {gpt.name} (d={gpt.d_model}, L={gpt.n_layers})",
                [*dimfix, "gpt.py::GPT", "--input", INPUT, "-v"], folder, timeout,
                prepare=prepare, verify=verify)


def slope(xs: Sequence[float], ys: Sequence[float]):
    """Least-squares line y = a + b x: (a, b)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-sweep", action="store_true", help="skip the depth sweep")
    opts, runs, runner = parse_options(ap, argv)
    sweep = [] if opts.no_sweep else SWEEP

    print("dimfix huge-model benchmark")
    print(f"  python   {sys.executable} ({sys.version.split()[0]})")
    print(f"  dimfix   {shlex.join(dimfix_command())} gpt.py::GPT --input {INPUT} -v")
    print_setup(opts, runs, runner)
    print(f"  models   vocab {VOCAB}, max_len {MAX_LEN}, head dim {HEAD_DIM}")
    for gpt in MODELS + sweep:
        print(f"    {gpt.name:4s} {gpt.describe()}")
    print(flush=True)

    with tempfile.TemporaryDirectory(prefix="dimfix-huge-") as tmp_s:
        tmp = Path(tmp_s)
        dimfix = dimfix_command()
        cases = [Case("import", 'python -c "import torch"', [sys.executable, "-c", "import torch"],
                      tmp, opts.timeout)]
        cases += [gpt_case(gpt, tmp, dimfix, opts.timeout) for gpt in MODELS + sweep]
        measure(runner, cases, runs, warmup=not opts.no_warmup)

    by = {c.name: c for c in cases}
    base = by["import"].median_wall()
    print_cases(cases, base, 34)

    if sweep:
        points = [(g.n_layers, by[g.name].median_wall(), by[g.name].peak_rss_mb()) for g in sweep]
        points = [p for p in points if p[1] is not None]
        print()
        print(f"depth sweep at d_model {SWEEP_WIDTH}:")
        print(f"  {'layers':>6s} {'median':>9s} {'- import':>9s} {'peak RSS':>9s}")
        for n, wall, rss in points:
            print(f"  {n:6d} {wall:8.3f}s {(wall - base) if base else float('nan'):8.3f}s "
                  f"{(f'{rss:.0f} MB' if rss is not None else 'n/a'):>9s}")
        if len(points) >= 2:
            a, b = slope([p[0] for p in points], [p[1] for p in points])
            print(f"  wall = {a:.3f} s + {b * 1000:.1f} ms/layer (least squares over the medians)")
            rss_points = [p for p in points if p[2] is not None]
            if len(rss_points) >= 2:
                ra, rb = slope([p[0] for p in rss_points], [p[2] for p in rss_points])
                print(f"  peak RSS = {ra:.0f} MB + {rb:.2f} MB/layer")

    rows = []
    for gpt in MODELS:
        c = by[gpt.name]
        med, rss = c.median_wall(), c.peak_rss_mb()
        if med is not None and base:
            r = med / base
            rows.append((f"{gpt.name}: wall / import", f"{r:.3f}x ({med:.3f} / {base:.3f} s)",
                         f"<= {TARGET_RATIO:g}x", mark(r <= TARGET_RATIO)))
        else:
            rows.append((f"{gpt.name}: wall / import", "no valid run", f"<= {TARGET_RATIO:g}x", "MISS"))
        rows.append((f"{gpt.name}: peak RSS", f"{rss:.0f} MB" if rss is not None else "no valid run",
                     f"<= {TARGET_RSS_MB:g} MB", mark(rss is not None and rss <= TARGET_RSS_MB)))
    first, last = by[MODELS[0].name].median_wall(), by[MODELS[-1].name].median_wall()
    if first and last:
        r = last / first
        rows.append((f"{MODELS[-1].name} wall / {MODELS[0].name} wall",
                     f"{r:.3f}x ({last:.3f} / {first:.3f} s)", f"<= {TARGET_13B_VS_1B:g}x",
                     mark(r <= TARGET_13B_VS_1B)))
    else:
        rows.append((f"{MODELS[-1].name} wall / {MODELS[0].name} wall", "no valid run",
                     f"<= {TARGET_13B_VS_1B:g}x", "MISS"))
    for gpt in MODELS + sweep:
        c = by[gpt.name]
        good = len(c.good())
        rows.append((f"{gpt.name}: fixed correctly (exit 0, {gpt.wrong}->{gpt.d_model}, meta)",
                     f"{good}/{len(c.runs)} runs", "all", mark(good == len(c.runs) and good > 0)))

    print_figures(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
