#!/usr/bin/env python
"""Deferring torch's heavy submodules in the warm worker: what it would buy, and why
dimfix does not do it (prints figures and evidence; not a test).

The idea (issue 24, small `--check` <= 0.6x): the warm worker's own `import torch` is
the floor of a small run, and 0.3-0.45 s of it is torch._meta_registrations, torch.export
and torch.nested, which `torch/__init__.py` binds with `from torch import ...` without
reading their attributes. A finder on sys.meta_path can leave them unexecuted until
first attribute access (`install`, `complete` below). Subcommands, each in fresh
interpreters:

  imports [--runs N]   `import torch` with each set deferred, interleaved; what
                       completing the set costs afterwards (the same process)
  kernels [PATH::NAME] the aten ops a model's build on meta (as dimfix builds it)
                       dispatches, and which of their Meta kernels change when the
                       deferred modules complete (default: fixtures/clean_model LeNet5)
  dynamo               `import torch._dynamo` with the set deferred (torch's own
                       import order changes)
  variant DIR [--rev R] writes main's dimfix (git archive R) to DIR with the deferral
                       in its warm worker, for `bench/warm.py --dimfix DIR`; each
                       child completes the set before the user's code unless
                       DIMFIX_LAZY_CHILD=skip (unsafe: the upper bound)

This file is also the variant's dimfix/lazytorch.py (copied there), so it imports
nothing of dimfix at module level.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types

DEFERRED = ("torch._meta_registrations", "torch.export", "torch.nested")
SETS = {"none": (), "export,nested": ("torch.export", "torch.nested"), "all": DEFERRED}
# Read without executing the module: the import system (__spec__), inspect.getmodule
# walking sys.modules (__file__; torch.library's register_fake calls it at import).
_OWN = frozenset({"__name__", "__spec__", "__file__", "__class__", "__loader__",
                  "__package__", "__cached__"})


class _Deferred(types.ModuleType):
    """A module not executed yet: any other attribute executes it in place."""

    def __getattribute__(self, name):
        if name in _OWN:
            return super().__getattribute__(name)
        _execute(self)
        return getattr(self, name)


def _execute(module) -> None:
    if type(module) is not _Deferred:
        return
    types.ModuleType.__setattr__(module, "__class__", types.ModuleType)
    spec = module.__spec__
    spec.loader = spec.loader.real
    module.__loader__ = spec.loader
    spec.loader.exec_module(module)


class _Later(importlib.abc.Loader):
    def __init__(self, real) -> None:
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module) -> None:
        module.__class__ = _Deferred


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, names) -> None:
        self.names = frozenset(names)

    def find_spec(self, name, path, target=None):
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Later(spec.loader)
        return spec


def install(names=DEFERRED) -> bool:
    """Before `import torch`: leave ``names`` unexecuted until first use."""
    if os.environ.get("DIMFIX_LAZY_TORCH", "1") == "0" or "torch" in sys.modules:
        return False
    sys.meta_path.insert(0, _Finder(names))
    return True


def complete() -> None:
    """Execute every module still deferred, and defer nothing from now on."""
    for finder in [f for f in sys.meta_path if isinstance(f, _Finder)]:
        sys.meta_path.remove(finder)
    for name in DEFERRED:
        if name in sys.modules:
            _execute(sys.modules[name])


def deferred():
    return [n for n in DEFERRED if type(sys.modules.get(n)) is _Deferred]


# -- the probes (each in a fresh interpreter) ----------------------------------------------


def _probe_import(which: str) -> None:
    import time

    install(SETS[which])
    start = time.perf_counter()
    import torch  # noqa: F401

    took, still = time.perf_counter() - start, deferred()
    start = time.perf_counter()
    complete()
    print(f"{took:.3f} {time.perf_counter() - start:.3f} {len(still)}")


def _probe_kernels(target: str) -> None:
    import runpy

    install()
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from dimfix.build import no_init
    from dimfix.nodynamo import install as stand_in

    stand_in()  # as in every child
    ops = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
            ops.append(func.name())
            return func(*args, **(kwargs or {}))

    path, _, name = target.partition("::")
    before = set(torch._C._dispatch_get_registrations_for_dispatch_key("Meta"))
    with Log(), no_init(), torch.device("meta"):
        runpy.run_path(path)[name]()
    still = deferred()
    used = sorted(set(ops))
    tables = {op: torch._C._dispatch_dump_table(op) for op in used}
    complete()
    after = set(torch._C._dispatch_get_registrations_for_dispatch_key("Meta"))
    print(f"still deferred after the build: {still}")
    print(f"Meta kernels registered: {len(before)} deferred, {len(after)} complete "
          f"(+{len(after - before)})")
    print(f"ops of the build on meta: {used}")
    print("of those, Meta kernel changed by completing: "
          f"{[op for op in used if torch._C._dispatch_dump_table(op) != tables[op]]}")


def _probe_dynamo() -> None:
    install()
    import torch  # noqa: F401

    try:
        import torch._dynamo  # noqa: F401

        print("import torch._dynamo: ok")
    except Exception as e:
        print(f"import torch._dynamo: {type(e).__name__}: {str(e)[:150]}")


def _fresh(*args: str) -> str:
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    run = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env,
                         capture_output=True, text=True, check=True, cwd=root)
    return run.stdout.strip()


def _imports(runs: int) -> None:
    import statistics

    times = {which: [] for which in SETS}
    for _ in range(runs):
        for which in SETS:
            took, done, _ = _fresh("_probe-import", which).split()
            times[which].append((float(took), float(done)))
    print(f"{'deferred':<16}{'import torch':>14}{'complete':>10}   runs")
    for which, pairs in times.items():
        imports = [t for t, _ in pairs]
        print(f"{which:<16}{statistics.median(imports):>13.3f}s"
              f"{statistics.median(d for _, d in pairs):>9.3f}s   "
              + " ".join(f"{t:.2f}" for t in imports))


_PATCHES = {  # file -> [(anchor, replacement)]: the variant's three hooks
    "worker.py": [
        ("        warm()\n        _hide_gpus()",
         "        from dimfix import lazytorch\n\n        lazytorch.install()\n"
         "        warm()\n        _hide_gpus()"),
        ("        if package:\n            preload(root, package)",
         "        if package:\n            lazytorch.complete()  # user code next\n"
         "            preload(root, package)"),
        ("_WARM_STEPS = (_warm_tracing,",
         "def _complete():\n    from dimfix.lazytorch import complete\n\n    complete()\n\n\n"
         "_WARM_STEPS = (_complete, _warm_tracing,"),
    ],
    "isolate.py": [
        ("        install()  # a meta trace",
         "        if os.environ.get('DIMFIX_LAZY_CHILD') != 'skip':\n"
         "            from dimfix.lazytorch import complete\n\n"
         "            complete()  # before the user's code\n"
         "        install()  # a meta trace"),
    ],
}


def _variant(folder: str, rev: str) -> None:
    import shutil
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(folder, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev, "dimfix"], cwd=root, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    for name, patches in _PATCHES.items():
        path = os.path.join(folder, "dimfix", name)
        with open(path) as f:
            text = f.read()
        for anchor, replacement in patches:
            if text.count(anchor) != 1:
                sys.exit(f"lazy_torch: {name} at {rev} has no single {anchor!r}")
            text = text.replace(anchor, replacement)
        with open(path, "w") as f:
            f.write(text)
    shutil.copy(os.path.abspath(__file__), os.path.join(folder, "dimfix", "lazytorch.py"))
    print(f"{folder}/dimfix: {rev} with the deferral in its warm worker")


def main(argv) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("imports").add_argument("--runs", type=int, default=6)
    sub.add_parser("kernels").add_argument(
        "target", nargs="?", default="fixtures/clean_model/broken.py::LeNet5")
    sub.add_parser("dynamo")
    variant = sub.add_parser("variant")
    variant.add_argument("dir")
    variant.add_argument("--rev", default="HEAD")
    for probe in ("_probe-import", "_probe-kernels"):
        sub.add_parser(probe).add_argument("arg")
    sub.add_parser("_probe-dynamo")
    opts = ap.parse_args(argv)
    if opts.cmd == "imports":
        _imports(opts.runs)
    elif opts.cmd == "kernels":
        print(_fresh("_probe-kernels", opts.target))
    elif opts.cmd == "dynamo":
        print(_fresh("_probe-dynamo"))
    elif opts.cmd == "variant":
        _variant(opts.dir, opts.rev)
    elif opts.cmd == "_probe-import":
        _probe_import(opts.arg)
    elif opts.cmd == "_probe-kernels":
        _probe_kernels(opts.arg)
    else:
        _probe_dynamo()


if __name__ == "__main__":
    main(sys.argv[1:])
