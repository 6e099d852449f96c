#!/usr/bin/env python
"""dimfix-lsp from start: time to the answer to ``initialize`` (an editor waits for it
before it shows the file as served) and to the first diagnostics of an open file (the
three_wrong_layers SmallConvNet with a pragma). Prints figures; not a test.

Interleaved with ``--base PATH`` (a checkout whose ``dimfix`` package is run instead,
through PYTHONPATH), each run a fresh server, so two versions are compared under the
same load.

Usage:  python bench/lsp_start.py [--runs N] [--base PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from lsp_session import Session  # noqa: E402
from lsprotocol import types  # noqa: E402
from pygls.uris import from_fs_path  # noqa: E402

FIXTURE = HERE.parent / "fixtures" / "three_wrong_layers" / "broken.py"
PRAGMA = "# dimfix: input=2x3x32x32\nclass SmallConvNet"


async def once(root: Path, base: str = ""):
    """(seconds to the initialize answer, seconds to the first diagnostics)."""
    session = Session(root)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if base:
        env["PYTHONPATH"] = base
    start = time.perf_counter()
    await session.client.start_io(sys.executable, "-m", "dimfix.lsp", cwd=str(root), env=env)
    await session.client.initialize_async(types.InitializeParams(
        capabilities=types.ClientCapabilities(), root_uri=from_fs_path(str(root)),
        process_id=os.getpid()))
    initialized = time.perf_counter() - start
    session.client.initialized(types.InitializedParams())
    uri = session.open(root / "net.py")
    diags = await session.diagnostics(uri, timeout=300)
    first = time.perf_counter() - start
    await session.stop()
    assert len(diags) == 3, diags
    return initialized, first


async def bench(root: Path, runs: int, base: str) -> None:
    (root / ".git").mkdir()
    (root / "net.py").write_text(FIXTURE.read_text().replace("class SmallConvNet", PRAGMA))
    found = {"this checkout": []} | ({f"base ({base})": []} if base else {})
    for _ in range(runs):
        for label in found:
            found[label].append(await once(root, base if label != "this checkout" else ""))
    print(f"{'':<28} {'initialize answered':>22} {'first diagnostics':>20}")
    for label, values in found.items():
        inits, firsts = zip(*values)
        print(f"{label:<28} {statistics.median(inits):18.2f} s {statistics.median(firsts):17.2f} s"
              f"   (medians of {runs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--base", default="", help="a checkout to compare (its folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dimfix-lsp-start-") as tmp:
        asyncio.run(bench(Path(tmp), args.runs, os.path.abspath(args.base) if args.base else ""))


if __name__ == "__main__":
    main()
