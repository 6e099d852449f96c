#!/usr/bin/env python
"""Issue 24's figures: the warm worker, side by side in one run (prints figures; not a test).

Every case runs once a round, rounds interleaved after one untimed warm-up round, so
drift and other load hit all alike; figures are ratios of medians. Whole process trees
are measured (bench/treerun.py): dimfix is the CLI or server, its warm worker and each
step's child; the CPU column (user + system seconds of the tree, median) moves less
with other load than the wall time.

With this venv (torch 2.13.0):
  import     python -c "import torch"                        the floor
  check      dimfix --check fixtures/clean_model             <= 0.6x import
  fix        dimfix fixtures/pooling_product (writes)        <= 0.8x import
  5B, 13B    dimfix --check of bench/latency.py's GPTs, clean, traced on meta
             <= 1.5x / <= 1.6x import; the 5B's process tree <= 400 MB
With the corpus venv (torch 2.14.1 + torchvision + timm; bench/warm_corpus.py prepares
copies of the installed packages at run time, nothing of them is stored here):
  timm       python -c "import torch, timm"
  fix:NAME   dimfix on one corpus model file with one mutation (zoo_corpus.py's classic
             kinds), for --sample models; the median over them <= 2x timm
  batch      dimfix timm/models --check --jobs 2: every model file of a copied
             timm/models (its [[tool.dimfix.models]]), >= 3 models/s
  lsp        a warm dimfix-lsp, didSave -> diagnostics on timm's resnet.py, each save an
             edit (a comment line), median of --saves saves a round, <= 0.3x the corpus
             venv's `import torch`

Usage:  python bench/warm.py [--runs N] [--only main,corpus] [--sample N] [--saves K]
            [--corpus-python PATH] [--lsp-deps DIR] [--no-batch] [--dimfix DIR]
            [--source-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from latency import FIXTURES, Gpt, dimfix_source, fixture_args  # noqa: E402
from treerun import TreeRun, run_tree  # noqa: E402

GPTS = {"5B": Gpt("5B", 4096, 24, 2048), "13B": Gpt("13B", 5120, 40, 4096)}


@dataclass
class Case:
    name: str
    cmd: List[str]
    cwd: Path
    env: Optional[Dict[str, str]] = None
    prepare: Optional[Callable[[], None]] = None
    verify: Optional[Callable[[TreeRun], str]] = None  # why the run does not count, or ""
    score: Optional[Callable[[TreeRun], float]] = None  # the figure of a run (default: wall)
    runs: List[TreeRun] = field(default_factory=list)
    values: List[float] = field(default_factory=list)

    def run(self, timeout: float, pss: bool = False) -> TreeRun:
        if self.prepare:
            self.prepare()
        run = run_tree(self.cmd, self.cwd, self.env, timeout=timeout, pss=pss)
        if not run.note and run.rc is None:
            run.note = "timed out"
        if not run.note and self.verify:
            run.note = self.verify(run)
        return run

    def median(self) -> Optional[float]:
        return statistics.median(self.values) if self.values else None


def _exit0(run: TreeRun) -> str:
    return "" if run.rc == 0 else f"exit {run.rc}: {run.stderr.strip()[-300:]}"


# -- the cases of this venv ----------------------------------------------------------------


def main_cases(opts, tmp: Path) -> List[Case]:
    py = sys.executable
    dimfix = [py, "-m", "dimfix"]
    env = dict(os.environ, PYTHONPATH=str(opts.dimfix))
    cases = [Case("import", [py, "-c", "import torch"], tmp, env)]
    clean = FIXTURES / "clean_model"
    before = (clean / "broken.py").read_bytes()

    def same_clean(run: TreeRun) -> str:
        return _exit0(run) or ("" if (clean / "broken.py").read_bytes() == before
                               else "--check changed the file")

    cases.append(Case("check", [*dimfix, *fixture_args("clean_model"), "--check"], clean, env,
                      verify=same_clean))
    pool = tmp / "pool"
    pool.mkdir()
    src = FIXTURES / "pooling_product"
    cases.append(Case("fix", [*dimfix, *fixture_args("pooling_product")], pool, env,
                      prepare=lambda: shutil.copyfile(src / "broken.py", pool / "broken.py"),
                      verify=lambda r: _exit0(r) or (
                          "" if (pool / "broken.py").read_bytes() == (src / "expected.py")
                          .read_bytes() else "not pooling_product/expected.py")))
    for name, gpt in GPTS.items():
        folder = tmp / name
        folder.mkdir()
        (folder / "gpt.py").write_text(gpt.expected())

        def on_meta(run: TreeRun, folder=folder, gpt=gpt) -> str:
            if run.rc != 0:
                return _exit0(run)
            if (folder / "gpt.py").read_text() != gpt.expected():
                return "--check changed the file"
            return "" if "traced on meta" in run.stderr else "not traced on meta"

        cases.append(Case(name, [*dimfix, "gpt.py::GPT", "--input", "long:1x16", "--check", "-v"],
                          folder, env, verify=on_meta))
    return cases


# -- the corpus cases ------------------------------------------------------------------------


def corpus_cases(opts, tmp: Path) -> List[Case]:
    py = opts.corpus_python
    path = [str(opts.dimfix)] + ([str(opts.lsp_deps)] if opts.lsp_deps else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    prep = tmp / "corpus"
    print(f"preparing the corpus copies in {prep} (untimed) ...", flush=True)
    subprocess.run([py, str(HERE / "warm_corpus.py"), "prepare", str(prep), "--sample",
                    str(opts.sample)], env=env, check=True, stdout=subprocess.DEVNULL)
    cases = [Case("timm", [py, "-c", "import torch, timm"], tmp, env),
             Case("torch'", [py, "-c", "import torch"], tmp, env)]
    for case in json.loads((prep / "cases.json").read_text()):
        file = prep / "fix" / case["file"]
        mutated = (prep / "cases" / f"{case['name']}.mutated").read_bytes()
        orig = (prep / "cases" / f"{case['name']}.orig").read_bytes()

        def verify(run: TreeRun, file=file, mutated=mutated, orig=orig) -> str:
            fixed = file.read_bytes()
            file.write_bytes(orig)  # the copy as installed, for the other cases
            if run.rc != 0:
                return _exit0(run)
            return "" if fixed != mutated else "exit 0 but nothing written"

        cases.append(Case(f"fix:{case['model']}", [py, "-m", "dimfix", case["target"],
                                                   *case["args"]],
                          prep / "fix", env, prepare=lambda f=file, m=mutated: f.write_bytes(m),
                          verify=verify))
    if not opts.no_batch:
        batch = prep / "batch"
        count = (batch / "pyproject.toml").read_text().count("[[tool.dimfix.models]]")
        cases.append(Case("batch", [py, "-m", "dimfix", "timm/models", "--check", "--jobs", "2",
                                    "-q"], batch, env, verify=_exit0,
                          score=lambda run, n=count: n / run.wall))
    lsp = json.loads((prep / "lsp" / "lsp.json").read_text())
    cases.append(Case("lsp", [py, str(HERE / "warm_corpus.py"), "lsp", str(prep / "lsp"),
                              lsp["file"], "--saves", str(opts.saves)], tmp, env,
                      verify=_lsp_clean, score=lambda run: statistics.median(
                          json.loads(run.stdout)["saves"])))
    return cases


def _lsp_clean(run: TreeRun) -> str:
    if run.rc != 0:
        return _exit0(run)
    found = json.loads(run.stdout)
    if found["open_diagnostics"] or any(found["counts"]):
        return f"diagnostics on a clean file: {found['messages']}"
    return ""


# -- measuring and the report ------------------------------------------------------------------


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(cases: List[Case], runs: int, timeout: float, warmup: bool) -> None:
    for i in range(runs + warmup):
        timed = i >= warmup
        print(f"{'round ' + str(i + 1 - warmup) if timed else 'warm-up'} (load {load()}):",
              end="", flush=True)
        for case in cases:
            run = case.run(timeout)
            value = case.score(run) if case.score and not run.note else run.wall
            print(f" {case.name} {value:.2f}{'!' if run.note else ''}", end="", flush=True)
            if run.note:
                print(f"\n  !! {case.name}: {run.note}", end="")
            elif timed:
                case.runs.append(run)
                case.values.append(value)
        print(flush=True)


def tree_memory(cases: List[Case], names, timeout: float) -> Dict[str, TreeRun]:
    """One more untimed run of each named case, sampling PSS (costly to read)."""
    return {c.name: c.run(timeout, pss=True) for c in cases if c.name in names}


def report(cases: List[Case], memory: Dict[str, TreeRun]) -> None:
    by = {c.name: c for c in cases}
    print(f"\n{'case':24s} {'median':>9s} {'min':>8s} {'max':>8s} {'CPU':>7s} {'tree RSS':>9s} "
          f"{'largest':>8s} {'ok':>5s}")
    for c in cases:
        if not c.values:
            print(f"{c.name:24s} {'no valid run':>9s}")
            continue
        unit = "/s" if c.name == "batch" else "s"
        print(f"{c.name:24s} {c.median():8.3f}{unit[-1]} {min(c.values):7.3f}{unit[-1]} "
              f"{max(c.values):7.3f}{unit[-1]} "
              f"{statistics.median(r.cpu for r in c.runs):6.2f}s "
              f"{max(r.rss_sum for r in c.runs):6.0f} MB "
              f"{max(r.rss_max for r in c.runs):5.0f} MB {len(c.values)}/{len(c.runs) or 0}")
    rows = []

    def ratio(figure: str, name: str, base: str, target: float) -> None:
        if name not in by or base not in by:
            return
        a, b = by[name].median(), by[base].median()
        if a is None or b is None:
            rows.append((figure, "no valid run", f"<= {target:g}x", "MISS"))
            return
        rows.append((figure, f"{a / b:.2f}x ({a:.2f} / {b:.2f} s)", f"<= {target:g}x",
                     "PASS" if a / b <= target else "MISS"))

    ratio("small --check / import torch", "check", "import", 0.6)
    ratio("small fix / import torch", "fix", "import", 0.8)
    ratio("5B GPT --check / import torch", "5B", "import", 1.5)
    ratio("13B GPT --check / import torch", "13B", "import", 1.6)
    for name, run in memory.items():
        if run.note:
            rows.append((f"{name} GPT process tree", run.note[:40], "", ""))
            continue
        target = "<= 400 MB" if name == "5B" else ""
        verdict = ("PASS" if run.pss <= 400 else "MISS") if name == "5B" else ""
        rows.append((f"{name} GPT process tree, peak PSS", f"{run.pss:.0f} MB (RSS sum "
                     f"{run.rss_sum:.0f}, largest {run.rss_max:.0f}, {run.procs} procs)",
                     target, verdict))
    fixes = [c for c in cases if c.name.startswith("fix:")]
    if fixes and "timm" in by and by["timm"].median():
        meds = [c.median() for c in fixes if c.median() is not None]
        if meds:
            med = statistics.median(meds)
            base = by["timm"].median()
            rows.append((f"corpus fix / import torch+timm ({len(meds)}/{len(fixes)} fixed)",
                         f"{med / base:.2f}x ({med:.2f} / {base:.2f} s)", "<= 2x",
                         "PASS" if med / base <= 2 else "MISS"))
    if "batch" in by and by["batch"].median():
        rate = by["batch"].median()
        rows.append(("batch --check timm/models, models/s", f"{rate:.2f}", ">= 3",
                     "PASS" if rate >= 3 else "MISS"))
    ratio("lsp save -> diagnostics / import torch", "lsp", "torch'", 0.3)
    w = max(len(r[0]) for r in rows)
    print(f"\n{'figure':{w}s}  {'value':44s} {'target':10s} result")
    for figure, value, target, result in rows:
        print(f"{figure:{w}s}  {value:44s} {target:10s} {result}")


def compile_dimfix(opts) -> str:
    """Compile dimfix's modules to bytecode, as ``pip install`` does: where
    PYTHONDONTWRITEBYTECODE is set (it is on the machines these figures come
    from) every process would otherwise compile them from source (~0.1 s of
    the worker's, the draft child's and each child's critical path)."""
    if opts.source_only:
        for cache in (opts.dimfix / "dimfix").rglob("__pycache__"):
            shutil.rmtree(cache)
        return "none: dimfix compiled from source in each process (--source-only)"
    pythons = [sys.executable] + ([opts.corpus_python] if "corpus" in opts.only else [])
    for py in dict.fromkeys(pythons):
        subprocess.run([py, "-m", "compileall", "-q", str(opts.dimfix / "dimfix")], check=True)
    return f"dimfix compiled first (compileall; PYTHONDONTWRITEBYTECODE=" \
           f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r} here)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed rounds (default 3)")
    ap.add_argument("--only", default="main,corpus", help="main, corpus or both")
    ap.add_argument("--sample", type=int, default=6, help="corpus models to fix (default 6)")
    ap.add_argument("--saves", type=int, default=5, help="LSP saves a round (default 5)")
    ap.add_argument("--corpus-python", default="/work/corpus-venv/bin/python")
    ap.add_argument("--lsp-deps", type=Path, help="a folder with pygls for the corpus venv "
                    "(pip install --target DIR 'pygls>=2,<3'), when that venv has none")
    ap.add_argument("--no-batch", action="store_true", help="skip the batch case")
    ap.add_argument("--dimfix", type=Path, default=ROOT, help="the folder that holds the dimfix "
                    "package to measure (default: this checkout; for a revision: "
                    "git archive REV dimfix | tar -x -C DIR)")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--source-only", action="store_true", help="leave dimfix without "
                    "bytecode (by default it is compiled first, as pip does on install)")
    ap.add_argument("--timeout", type=float, default=600.0)
    opts = ap.parse_args()
    parts = set(opts.only.split(","))
    print("dimfix warm-worker benchmark (issue 24)")
    print(f"  dimfix   {opts.dimfix / 'dimfix'}"
          + (f" ({dimfix_source()})" if opts.dimfix == ROOT else ""))
    print(f"  machine  {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(f"  load     {load()} (1/5/15 min)")
    print(f"  runs     {opts.runs} rounds, interleaved, medians")
    print(f"  bytecode {compile_dimfix(opts)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dimfix-warm-") as tmp_s:
        tmp = Path(tmp_s)
        cases = (main_cases(opts, tmp) if "main" in parts else []) + \
            (corpus_cases(opts, tmp) if "corpus" in parts else [])
        measure(cases, opts.runs, opts.timeout, not opts.no_warmup)
        memory = tree_memory(cases, ("5B", "13B"), opts.timeout)
    print(f"load after: {load()}")
    report(cases, memory)


if __name__ == "__main__":
    main()
