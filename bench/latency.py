#!/usr/bin/env python
"""Latency and memory benchmark for the dimfix CLI (prints figures; not a test).

Measured side by side in one run, interleaved round by round so that drift
(page cache, CPU frequency, other load) hits every case alike:

  import   python -c "import torch"                     the latency floor
  check    dimfix --check on fixtures/clean_model        nothing to fix
  fix      dimfix on a temp copy of fixtures/pooling_product (writes the file;
           the copy is restored before every run and compared to expected.py)
  huge     dimfix on a GPT-style decoder of ~6.6e9 parameters with one wrong
           Linear (writes the file; checked afterwards). Its weights would take
           ~27 GB on CPU, so dimfix must trace it on the meta device.

Every child runs in its own process group under an address-space limit
(RLIMIT_AS, --mem-limit-gib) and a timeout, so a dimfix that materializes the
huge model fails fast instead of taking the machine down.

Usage:  python bench/latency.py [--runs N | --quick] [--no-huge]
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

TARGET_FLOOR_RATIO = 1.5  # issue #3: dimfix on a small model vs `import torch`
TARGET_HUGE_RATIO = 3.0  # the huge model, wall time vs `import torch`
TARGET_HUGE_RSS_MB = 600.0  # the huge model, peak RSS of the whole process

# -- the huge model ------------------------------------------------------------

VOCAB, MAX_LEN, HEAD_DIM = 32000, 2048, 128
HUGE_INPUT = "long:1x16"


@dataclass(frozen=True)
class Gpt:
    name: str
    d_model: int
    n_layers: int
    wrong: int  # lm_head's in_features as (wrongly) written

    @property
    def n_heads(self) -> int:
        return max(1, self.d_model // HEAD_DIM)

    def params(self) -> int:
        """Parameters as declared correctly (lm_head in_features = d_model)."""
        d, v = self.d_model, VOCAB
        linear = lambda i, o, bias=True: i * o + (o if bias else 0)  # noqa: E731
        block = 2 * (2 * d) + 4 * linear(d, d) + linear(d, 4 * d) + linear(4 * d, d)
        return v * d + MAX_LEN * d + self.n_layers * block + 2 * d + linear(d, v, bias=False)

    def describe(self) -> str:
        n = self.params()
        return (f"d_model {self.d_model:5d}, {self.n_layers:3d} layers, {self.n_heads:2d} heads: "
                f"{n:>14,d} params ({n / 1e9:5.2f}e9, {n * 4 / 1e9:5.1f} GB as float32); "
                f"lm_head in {self.wrong} -> {self.d_model}")

    def source(self) -> str:
        return GPT_SOURCE.format(d=self.d_model, layers=self.n_layers, heads=self.n_heads,
                             vocab=VOCAB, max_len=MAX_LEN, wrong=self.wrong, n=self.params())

    def expected(self) -> str:
        # d_model, the parameter that holds the width, is the edit its author would make.
        return self.source().replace(f"nn.Linear({self.wrong}, vocab_size",
                                     "nn.Linear(d_model, vocab_size")


GPT_SOURCE = '''\
"""A GPT-style decoder, {layers} layers, d_model {d}, {n} parameters: written by a dimfix benchmark."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, T, C = x.shape
        h = self.n_heads
        q = self.q_proj(x).view(B, T, h, C // h).transpose(1, 2)
        k = self.k_proj(x).view(B, T, h, C // h).transpose(1, 2)
        v = self.v_proj(x).view(B, T, h, C // h).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(C // h)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        att = torch.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, C)
        return self.out_proj(y)


class Block(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc_in = nn.Linear(d_model, 4 * d_model)
        self.fc_out = nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc_out(F.gelu(self.fc_in(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab_size={vocab}, d_model={d}, n_layers={layers}, n_heads={heads},
                 max_len={max_len}):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList([Block(d_model, n_heads) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)
        # The bug: a literal left over from a narrower config.
        self.lm_head = nn.Linear({wrong}, vocab_size, bias=False)

    def forward(self, idx):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))
'''


# 32 layers, d_model 4096: lm_head in_features left over from a 2048-wide config.
HUGE = Gpt("6.7B", 4096, 32, 2048)
D_MODEL, N_LAYERS, WRONG, RIGHT = HUGE.d_model, HUGE.n_layers, HUGE.wrong, HUGE.d_model
HUGE_SOURCE = HUGE.source()


def huge_param_count() -> int:
    """Parameters of the huge model as declared correctly (lm_head in = d_model)."""
    return HUGE.params()


def check_huge_fix(path: Path) -> Optional[str]:
    """None if the file is the original with exactly the one literal fixed."""
    text = path.read_text(encoding="utf-8")
    want = HUGE.expected()
    if text == want:
        return None
    if text == HUGE_SOURCE:
        return "file unchanged"
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        return f"fixed file does not parse: {e}"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute)
                and node.targets[0].attr == "lm_head" and isinstance(node.value, ast.Call)):
            first = node.value.args[0] if node.value.args else None
            got = ast.unparse(first) if first is not None else "?"
            if got != str(RIGHT):
                return f"lm_head in_features is `{got}`, expected {RIGHT}"
            return "lm_head fixed, but other text changed too"
    return "lm_head assignment not found"


# -- running a child -------------------------------------------------------------

# Fallback when /usr/bin/time is missing: a fresh wrapper per measurement, so
# RUSAGE_CHILDREN holds the peak of that one command only.
_WRAPPER = r"""
import resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - t
with open(sys.argv[1], "w") as f:
    f.write("%d %r %d" % (rc, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
"""


@dataclass
class Run:
    wall: float  # seconds
    rss_kb: Optional[int]  # peak RSS, KiB
    rc: Optional[int]  # None on timeout
    stdout: str
    stderr: str
    note: str = ""  # why a run is not valid, if it is not


@dataclass
class Case:
    name: str
    label: str
    cmd: List[str]
    cwd: Path
    timeout: float
    prepare: Optional[callable] = None  # before every run
    verify: Optional[callable] = None  # after every run: Run -> error or None
    runs: List[Run] = field(default_factory=list)

    def good(self) -> List[Run]:
        return [r for r in self.runs if not r.note]

    def median_wall(self) -> Optional[float]:
        good = self.good()
        return statistics.median(r.wall for r in good) if good else None

    def peak_rss_mb(self) -> Optional[float]:
        good = [r.rss_kb for r in self.good() if r.rss_kb is not None]
        return max(good) * 1024 / 1e6 if good else None


class Runner:
    def __init__(self, method: str, mem_limit: int):
        self.method = method
        self.mem_limit = mem_limit

    def _limit(self) -> None:
        resource.setrlimit(resource.RLIMIT_AS, (self.mem_limit, self.mem_limit))

    def run(self, cmd: Sequence[str], cwd: Path, timeout: float) -> Run:
        with tempfile.NamedTemporaryFile("r", prefix="dimfix-bench-", suffix=".out") as out:
            if self.method == "time":
                full = ["/usr/bin/time", "-o", out.name, "-f", "%M", *cmd]
            else:
                full = [sys.executable, "-c", _WRAPPER, out.name, *cmd]
            start = time.perf_counter()
            proc = subprocess.Popen(
                full, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                preexec_fn=self._limit, start_new_session=True,
            )
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # our child's own group only
                stdout, stderr = proc.communicate()
                return Run(time.perf_counter() - start, None, None, stdout, stderr,
                           f"timed out after {timeout:.0f} s (killed)")
            wall = time.perf_counter() - start
            report = out.read().strip()
        if self.method == "time":
            rc = proc.returncode
            numbers = re.findall(r"^\d+$", report, re.M)
            rss = int(numbers[-1]) if numbers else None
            if report.startswith("Command terminated by signal"):
                rc = -int(report.split()[4]) if report.split()[4].isdigit() else rc
        else:
            try:
                rc_s, wall_s, rss_s = report.split()
                rc, wall, rss = int(rc_s), float(wall_s), int(rss_s)
            except ValueError:
                rc, rss = proc.returncode, None
        return Run(wall, rss, rc, stdout, stderr)


# -- the cases --------------------------------------------------------------------

def dimfix_command() -> List[str]:
    script = Path(sys.executable).parent / "dimfix"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "dimfix"]


def dimfix_source() -> str:
    """Which dimfix the children import, and its git state when it is a checkout."""
    try:
        found = subprocess.run(
            [sys.executable, "-c", "import dimfix, os; print(os.path.dirname(dimfix.__file__))"],
            capture_output=True, text=True, timeout=60, check=True, cwd=tempfile.gettempdir(),
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return "not importable"
    try:
        git = ["git", "-C", found]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, timeout=10).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        state = f"uncommitted changes in {', '.join(dirty)}" if dirty else "clean"
        return f"{found} (git {head}, {state})"
    except (subprocess.SubprocessError, OSError):
        return found


def fixture_args(case: str) -> List[str]:
    return shlex.split((FIXTURES / case / "args").read_text(encoding="utf-8"))


def build_cases(tmp: Path, with_huge: bool, timeout: float) -> List[Case]:
    dimfix = dimfix_command()
    cases = [Case("import", 'python -c "import torch"', [sys.executable, "-c", "import torch"],
                  tmp, timeout)]

    clean = FIXTURES / "clean_model"
    clean_before = (clean / "broken.py").read_bytes()

    def verify_clean(run: Run) -> Optional[str]:
        if run.rc != 0:
            return f"exit {run.rc}, expected 0"
        if (clean / "broken.py").read_bytes() != clean_before:
            return "clean_model/broken.py changed under --check"
        return None

    cases.append(Case("check", "dimfix --check clean_model", [*dimfix, *fixture_args("clean_model"), "--check"],
                      clean, timeout, verify=verify_clean))

    pool_src = FIXTURES / "pooling_product"
    pool = tmp / "pooling_product"
    pool.mkdir()
    expected = (pool_src / "expected.py").read_bytes()

    def prepare_pool() -> None:
        shutil.copyfile(pool_src / "broken.py", pool / "broken.py")

    def verify_pool(run: Run) -> Optional[str]:
        if run.rc != 0:
            return f"exit {run.rc}, expected 0"
        if (pool / "broken.py").read_bytes() != expected:
            return "fixed file differs from pooling_product/expected.py"
        return None

    cases.append(Case("fix", "dimfix pooling_product (writes)", [*dimfix, *fixture_args("pooling_product")],
                      pool, timeout, prepare=prepare_pool, verify=verify_pool))

    if with_huge:
        huge = tmp / "huge"
        huge.mkdir()
        model = huge / "gpt.py"

        def prepare_huge() -> None:
            model.write_text(HUGE_SOURCE, encoding="utf-8")

        def verify_huge(run: Run) -> Optional[str]:
            if run.rc != 0:
                return f"exit {run.rc}, expected 0"
            problem = check_huge_fix(model)
            if problem:
                return problem
            if "traced on meta" not in run.stderr:
                return "not traced on the meta device"
            return None

        cases.append(Case("huge", f"dimfix GPT {huge_param_count() / 1e9:.2f}B (writes)",
                          [*dimfix, "gpt.py::GPT", "--input", HUGE_INPUT, "-v"],
                          huge, timeout, prepare=prepare_huge, verify=verify_huge))
    return cases


def run_once(runner: Runner, case: Case) -> Run:
    if case.prepare:
        case.prepare()
    run = runner.run(case.cmd, case.cwd, case.timeout)
    if not run.note and case.verify:
        run.note = case.verify(run) or ""
    return run


def show_failure(case: Case, run: Run) -> None:
    print(f"  !! {case.name}: {run.note}", flush=True)
    env = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " if os.environ.get("PYTHONPATH") else ""
    print(f"     command: (cd {shlex.quote(str(case.cwd))} && {env}{shlex.join(case.cmd)})")
    for line in (run.stderr.strip().splitlines() or ["(no stderr)"])[-12:]:
        print(f"     | {line}")


# -- report -------------------------------------------------------------------------

def fmt_s(x: Optional[float]) -> str:
    return f"{x:.3f} s" if x is not None else "n/a"


def mark(ok: Optional[bool]) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def parse_options(ap: argparse.ArgumentParser, argv) -> tuple:
    """Options every benchmark shares (runs, warm-up, guards, RSS method), added
    after a script's own: (options, runs, runner)."""
    ap.add_argument("--runs", type=int, default=7, help="timed runs of each case (default 7)")
    ap.add_argument("--quick", action="store_true", help="3 runs of each case")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up round")
    ap.add_argument("--mem-limit-gib", type=float, default=6.0,
                    help="address-space limit of every child, GiB (default 6)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per child (default 180)")
    ap.add_argument("--rss-method", choices=("auto", "time", "rusage"), default="auto",
                    help="peak RSS from /usr/bin/time -f %%M, or getrusage in a wrapper child")
    opts = ap.parse_args(argv)
    runs = 3 if opts.quick else opts.runs
    if runs < 1:
        ap.error("--runs must be at least 1")
    method = opts.rss_method
    if method == "auto":
        method = "time" if os.access("/usr/bin/time", os.X_OK) else "rusage"
    runner = Runner(method, int(opts.mem_limit_gib * 2**30))
    return opts, runs, runner


def print_figures(rows) -> None:
    """The closing table: figure, value, target, PASS/MISS."""
    print()
    w = max(len(r[0]) for r in rows)
    v = max(len(r[1]) for r in rows)
    print(f"{'figure':{w}s}  {'value':{v}s}  {'target':9s}  result")
    print("-" * (w + v + 24))
    for figure, value, target, result in rows:
        print(f"{figure:{w}s}  {value:{v}s}  {target:9s}  {result}")


def print_setup(opts, runs: int, runner: "Runner", width: int = 8) -> None:
    """The header lines every benchmark prints: package, machine, load, runs, guards."""
    rows = [
        ("package", dimfix_source()),
        ("machine", f"{os.cpu_count()} cores, "
                    f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB RAM"),
        ("load", f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} "
                 "(1/5/15 min; other work on the machine adds noise)"),
        ("runs", f"{runs} per case, interleaved"
                 f"{'' if opts.no_warmup else ' (after 1 untimed warm-up round)'}"),
        ("guard", f"RLIMIT_AS {opts.mem_limit_gib:g} GiB, timeout {opts.timeout:g} s per child"),
        ("rss", "/usr/bin/time -f %M" if runner.method == "time"
                else "getrusage(RUSAGE_CHILDREN) in a wrapper child"),
    ]
    for name, value in rows:
        print(f"  {name:{width}s} {value}")


def measure(runner: "Runner", cases: Sequence["Case"], runs: int, warmup: bool) -> None:
    """An untimed warm-up round, then ``runs`` rounds, every case once a round
    (interleaved, so drift hits all alike); results go to ``case.runs``."""
    if warmup:
        print("warm-up:", end="", flush=True)
        for case in cases:
            run = run_once(runner, case)
            print(f" {case.name} {run.wall:.2f}s", end="", flush=True)
            if run.note:
                print()
                show_failure(case, run)
        print()
    for i in range(runs):
        print(f"round {i + 1}/{runs}:", end="", flush=True)
        failures = []
        for case in cases:
            run = run_once(runner, case)
            case.runs.append(run)
            rss = f"/{run.rss_kb * 1024 / 1e6:.0f}MB" if run.rss_kb else ""
            print(f" {case.name} {run.wall:.2f}s{rss}{'!' if run.note else ''}", end="", flush=True)
            if run.note:
                failures.append((case, run))
        print()
        for case, run in failures:
            show_failure(case, run)
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def print_cases(cases: Sequence["Case"], base: Optional[float], width: int = 34) -> None:
    """The per-case table: median, min, max, ratio to ``base``, peak RSS, good runs."""
    print()
    print(f"{'case':{width}s} {'median':>9s} {'min':>9s} {'max':>9s} {'/import':>8s} "
          f"{'peak RSS':>10s} {'ok':>5s}")
    for c in cases:
        good = c.good()
        walls = [r.wall for r in good]
        med, rss = c.median_wall(), c.peak_rss_mb()
        ratio = f"{med / base:.2f}x" if med is not None and base else "n/a"
        print(f"{c.label:{width}s} {fmt_s(med):>9s} "
              f"{fmt_s(min(walls) if walls else None):>9s} {fmt_s(max(walls) if walls else None):>9s} "
              f"{ratio:>8s} {(f'{rss:.0f} MB' if rss is not None else 'n/a'):>10s} "
              f"{len(good)}/{len(c.runs)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-huge", action="store_true", help="skip the huge-model case")
    opts, runs, runner = parse_options(ap, argv)

    print("dimfix latency benchmark")
    print(f"  python   {sys.executable} ({sys.version.split()[0]})")
    print(f"  dimfix   {shlex.join(dimfix_command())}")
    print_setup(opts, runs, runner)
    if not opts.no_huge:
        n = huge_param_count()
        print(f"  huge     GPT {N_LAYERS} layers, d_model {D_MODEL}, vocab {VOCAB}: {n / 1e9:.2f}e9 params "
              f"({n * 4 / 1e9:.1f} GB as float32); lm_head in_features {WRONG} should be {RIGHT}")
    print(flush=True)

    with tempfile.TemporaryDirectory(prefix="dimfix-bench-") as tmp_s:
        tmp = Path(tmp_s)
        cases = build_cases(tmp, not opts.no_huge, opts.timeout)
        measure(runner, cases, runs, warmup=not opts.no_warmup)

    by = {c.name: c for c in cases}
    base = by["import"].median_wall()
    print_cases(cases, base, 34)

    rows = []

    def ratio_row(figure: str, name: str, target: float) -> None:
        med = by[name].median_wall() if name in by else None
        if name in by and med is not None and base:
            r = med / base
            rows.append((figure, f"{r:.2f}x ({med:.3f} / {base:.3f} s)", f"<= {target:g}x", mark(r <= target)))
        elif name in by:
            rows.append((figure, "no valid run", f"<= {target:g}x", "MISS"))

    ratio_row("floor: --check clean_model / import", "check", TARGET_FLOOR_RATIO)
    ratio_row("floor: fix pooling_product / import", "fix", TARGET_FLOOR_RATIO)
    if "huge" in by:
        ratio_row("huge: wall / import", "huge", TARGET_HUGE_RATIO)
        rss = by["huge"].peak_rss_mb()
        rows.append(("huge: peak RSS", f"{rss:.0f} MB" if rss is not None else "no valid run",
                     f"<= {TARGET_HUGE_RSS_MB:g} MB", mark(rss is not None and rss <= TARGET_HUGE_RSS_MB)))
        good = len(by["huge"].good())
        rows.append(("huge: fixed correctly (exit 0, 2048->4096, meta)",
                     f"{good}/{len(by['huge'].runs)} runs", "all", mark(good == len(by["huge"].runs))))
    for name in ("check", "fix"):
        c = by[name]
        if len(c.good()) != len(c.runs):
            rows.append((f"{name}: runs valid", f"{len(c.good())}/{len(c.runs)}", "all", "MISS"))

    print_figures(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
