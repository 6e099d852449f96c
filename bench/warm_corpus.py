"""The corpus side of bench/warm.py: run with the corpus venv (torch 2.14.1 + torchvision +
timm, see bench/zoo_corpus.py), never on its own. Nothing of timm or torchvision is stored:
it copies the installed packages into temporary projects at run time.

    python bench/warm_corpus.py prepare OUT [--sample N] [--seed S] [--lsp-model NAME]
    python bench/warm_corpus.py lsp ROOT FILE [--saves K]

``prepare`` writes, under OUT:

* ``fix/``: torchvision and timm copied, as bench/zoo_corpus.py copies them; ``cases/``:
  for a seeded sample of N corpus models, the model file as it is and with one classic
  mutation (literal, product, name or num-classes, drawn as zoo_corpus.py draws them:
  it breaks the model), and ``cases.json`` (target, arguments, files);
* ``batch/``: timm copied, and a pyproject.toml whose ``[[tool.dimfix.models]]`` names
  every model file of ``timm/models`` (its smallest model, at its pretrained_cfg input
  size, as zoo_corpus.py picks it);
* ``lsp/``: timm copied, with a ``# dimfix: input=...`` pragma above one model's
  ``@register_model`` (``--lsp-model``, default resnet18).

``lsp`` starts the real ``dimfix-lsp`` (tests/lsp_session.py), opens FILE (untimed: the
server's first check), saves it K times, each with a new comment line at its end (an
edit: the model file's text changed, as after a user's edit), and prints JSON: the
seconds from each didSave to the diagnostics published for it, and how many
diagnostics each save had.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))


def _copy(package: str, dest: Path) -> None:
    """The installed ``package`` into ``dest``, found without importing it (the
    copies are what gets imported here)."""
    src = Path(importlib.util.find_spec(package).submodule_search_locations[0])
    shutil.copytree(src, dest / src.name, symlinks=True)  # copy2 keeps mtimes: .pyc stay valid


def prepare(out: Path, sample: int, seed: int, lsp_model: str) -> None:
    for name in ("fix", "batch", "lsp", "cases"):
        (out / name).mkdir(parents=True)
    for package in ("torchvision", "timm"):
        _copy(package, out / "fix")
    for name in ("batch", "lsp"):
        _copy("timm", out / name)
    specs = _load_copy(out / "fix")
    _batch_project(out / "batch", [s for s in specs if s[0] == "timm"])
    _lsp_project(out / "lsp", [s for s in specs if s[0] == "timm"], lsp_model)
    cases = _mutations(out, specs, sample, seed)
    (out / "cases.json").write_text(json.dumps(cases, indent=1))


def _load_copy(root: Path):
    """Import torchvision and timm from the copy at ``root`` (zoo_corpus's worker set-up);
    the model list of zoo_corpus.py."""
    import zoo_corpus as zc

    zc.W.update(root=root, python=sys.executable, timeout_model=600, timeout_build=60,
                mtime=int(time.time()) + 10_000_000)
    sys.path.insert(0, str(root))
    warnings.filterwarnings("ignore")
    import timm
    import torch
    import torchvision

    torch.set_num_threads(1)
    for package in (torchvision, timm):
        if not Path(package.__file__).resolve().is_relative_to(root.resolve()):
            raise SystemExit(f"{package.__name__} imported from {package.__file__}, not the copy")
    signal.signal(signal.SIGALRM, zc._alarm)
    return zc.list_models(None, 1)


def _batch_project(root: Path, specs) -> None:
    lines = ["[tool.dimfix]", "timeout = 600", ""]
    for source, entry, module, rel, shape in specs:
        lines += ["[[tool.dimfix.models]]", f'target = "{rel}::{entry}"', f'input = ["{shape}"]', ""]
    (root / "pyproject.toml").write_text("\n".join(lines))
    (root / ".git").mkdir()  # the project's top: no pyproject.toml above it is read


def _lsp_project(root: Path, specs, model: str) -> None:
    spec = next((s for s in specs if s[1] == model), None)
    if spec is None:
        raise SystemExit(f"--lsp-model {model}: not one of the timm models zoo_corpus.py lists")
    path = root / spec[3]
    text = path.read_text()
    found = re.search(rf"^@register_model\s*\ndef {re.escape(model)}\(", text, re.M)
    if found is None:
        raise SystemExit(f"{spec[3]}: no `@register_model` above `def {model}(`")
    pragma = f"# dimfix: input={spec[4]}\n"
    path.write_text(text[:found.start()] + pragma + text[found.start():])
    (root / "pyproject.toml").write_text("[tool.dimfix]\ntimeout = 600\n")
    (root / ".git").mkdir()
    (root / "lsp.json").write_text(json.dumps({"file": spec[3], "model": model, "input": spec[4]}))


def _mutations(out: Path, specs, sample: int, seed: int):
    """One classic mutation (as zoo_corpus.py draws it) for each of ``sample`` models."""
    import zoo_corpus as zc
    from zoo_mutations import CLASSIC_KINDS, candidates, watched_names

    rng = random.Random(f"warm:{seed}")
    order = rng.sample(specs, len(specs))
    cases = []
    for spec in order:
        if len(cases) >= sample:
            break
        source, entry, modname, rel, shape_s = spec
        path = zc.W["root"] / rel
        orig = path.read_bytes()
        try:
            fn = getattr(importlib.import_module(modname), entry)
            shape = zc._shape(shape_s)
            for device in ("meta", "cpu"):
                try:
                    base_out, executed = zc.covered_lines(fn, shape, device, str(path),
                                                          watched_names(orig))
                    break
                except Exception:  # noqa: BLE001 - try the next device
                    base_out = None
            if base_out is None:
                continue
            cands = [c for c in candidates(orig, executed, shape[1]) if c[0] in CLASSIC_KINDS]
            row = zc._pick(orig, cands, random.Random(f"{seed}:{source}:{entry}"), spec, device,
                           base_out)
        except Exception as e:  # noqa: BLE001 - a model the sample skips
            print(f"skipped {entry}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        if row["status"] != "mutated":
            continue
        kind = row["mutation"]["kind"]
        args = ["--input", shape_s] + (["--num-classes", str(base_out[-1])]
                                       if kind == "num-classes" else [])
        name = f"{len(cases):02d}-{entry}"
        (out / "cases" / f"{name}.orig").write_bytes(orig)
        (out / "cases" / f"{name}.mutated").write_bytes(zc.apply(orig, row["chosen"]))
        cases.append({"name": name, "source": source, "model": entry, "file": rel,
                      "target": f"{rel}::{entry}", "args": args, "kind": kind,
                      "mutation": row["mutation"]})
        print(f"case {name}: {kind} at {rel}:{row['mutation']['line']}", file=sys.stderr)
    return cases


async def _lsp(root: Path, file: str, saves: int) -> dict:
    from lsp_session import Session

    session = Session(root)
    start = time.perf_counter()
    await session.start()
    started = time.perf_counter() - start
    path = root / file
    uri = session.open(path)
    first = await session.diagnostics(uri, timeout=600)
    opened = time.perf_counter() - start - started
    times, counts = [], []
    text = path.read_text()
    try:
        for i in range(saves):
            # An edit, as a user saves one (a comment at the end): the new
            # version tells this save's diagnostics from the open's, which
            # come twice (drafted, then final) and may land after the mark.
            mark = session.mark()
            t = time.perf_counter()
            session.save(path, f"{text}\n# save {i + 1}\n")
            diags = await session.diagnostics(uri, mark, timeout=600)
            times.append(time.perf_counter() - t)
            counts.append(len(diags))
    finally:
        await session.stop()
    return {"start": started, "open": opened, "open_diagnostics": len(first),
            "saves": times, "counts": counts,
            "messages": [d.message for d in first][:3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out", type=Path)
    p.add_argument("--sample", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lsp-model", default="resnet18")
    q = sub.add_parser("lsp")
    q.add_argument("root", type=Path)
    q.add_argument("file")
    q.add_argument("--saves", type=int, default=5)
    args = ap.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.sample, args.seed, args.lsp_model)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        print(json.dumps(asyncio.run(_lsp(args.root, args.file, args.saves))))


if __name__ == "__main__":
    main()
