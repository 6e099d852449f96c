#!/usr/bin/env python
"""What choosing the edit costs (prints figures; not a test).

For each fixture of issue "The edit its author would make" (names in scope,
structure, formatting confined, cross-file, probing, and one per example the
issue quotes), side by side in one run:

  fix     the API fixing fixtures/<case>/broken.py in a warm process: trace,
          candidate edits, rewrite, format, verify (children forked per step)
  check   the same model already fixed (expected.py): trace only, no search
  import  python -c "import torch"

"added" is fix - check: what planning, the ranked search and verifying the
alternatives (cheapest first, until one holds) add to a run that only traces,
with libcst and black already imported in the parent (as the language server
and a batch keep them; a one-shot CLI run pays ~0.25 s more to import them in
its child). "weighed" counts the candidates the search assessed per fix.
Target: median added <= 0.25 x import torch on these small models.

With --timm (run it with the corpus venv, which has timm: see zoo_corpus.py),
the same for timm's resnet18 with one name swapped (BasicBlock's bn1 given
``inplanes``, where ``first_planes`` belongs), on a copy of the installed
package. Target: added <= 1 x import torch. Each verification is a fresh
forked child today; the warm worker of issue 24 will make it cheaper.

Usage:  python bench/search.py [--runs N] [--timm]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ["scope_param_name", "scope_config_field", "scope_constant", "scope_name_swap",
         "cat_sum_names", "formatting_confined", "cross_file_edit", "probe_norm_subclass",
         "origin_shared_constant_one_wrong", "three_wrong_layers",
         # the quoted examples of the issue
         "head_shared_class_constant", "head_vit_user_call", "literal_not_name_divided",
         "scope_norm_layer_factory", "origin_dcgan_img_size", "origin_seq2seq_output_dim",
         "structure_textcnn_filter_sizes", "literal_se_reduction", "subscript_vae_hidden_dims",
         "structure_bidirectional_cat_sum", "knock_on_unet_up", "structure_cat_count_literal"]
TARGET = 0.25


def _args(case):
    """The target's name, its --input shapes, and --init, --num-classes, --output."""
    words = (ROOT / "fixtures" / case / "args").read_text().split()
    target, rest = words[0], words[1:]
    given = lambda flag: [rest[i + 1] for i, w in enumerate(rest) if w == flag]  # noqa: E731
    options = {"init": given("--init")}
    if given("--num-classes"):
        options["num_classes"] = int(given("--num-classes")[0])
    if given("--output"):
        options["output"] = given("--output")[0]
    return target.split("::")[1], given("--input"), options


def _timed_fix(folder: Path, name, inputs, options, which: str):
    from dimfix.api import fix_file

    start = time.perf_counter()
    result = fix_file(str(folder / which), inputs, name=name, **options)
    return time.perf_counter() - start, result


TIMM_MUTATION = ("        self.bn1 = norm_layer(first_planes, **dd)",
                 "        self.bn1 = norm_layer(inplanes, **dd)")


def _timm(runs: int) -> None:
    """fix vs check on timm's resnet18, one name swapped, on a copy of timm
    (found, not imported: the copy must be the only timm this process loads)."""
    import importlib.util

    timm_dir = Path(importlib.util.find_spec("timm").origin).parent
    imports, fixes, checks, weighed = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(timm_dir, Path(tmp) / "timm",
                        ignore=shutil.ignore_patterns("__pycache__"))
        path = Path(tmp) / "timm" / "models" / "resnet.py"
        original = path.read_text()
        old, new = TIMM_MUTATION
        # BasicBlock's comes first (Bottleneck's reads the same since timm 1.0)
        assert original.count(old) >= 1, "timm's resnet.py changed: update TIMM_MUTATION"
        for _ in range(runs):
            path.write_text(original.replace(old, new, 1))
            t, result = _timed_fix(path.parent, "resnet18", ["1x3x224x224"], {}, "resnet.py")
            assert result.changed and result.new_text == original, result
            fixes.append(t)
            weighed.append(sum(e.tried for e in result.edits))
            path.write_text(original)
            t, _ = _timed_fix(path.parent, "resnet18", ["1x3x224x224"], {}, "resnet.py")
            checks.append(t)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch"], check=True)
            imports.append(time.perf_counter() - start)
    imp, fix, check = (statistics.median(x) for x in (imports, fixes, checks))
    print(f"load average {os.getloadavg()[0]:.2f}; import torch {imp * 1000:.0f} ms; "
          f"timm resnet18, bn1 given inplanes: fix {fix * 1000:.0f} ms, check {check * 1000:.0f} ms, "
          f"weighed {statistics.median(weighed):.0f}; added {(fix - check) * 1000:.0f} ms = "
          f"{(fix - check) / imp:.3f}x import torch  target <= 1x  "
          f"{'PASS' if fix - check <= imp else 'MISS'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timm", action="store_true", help="timm's resnet18 (corpus venv)")
    opts = parser.parse_args()
    if opts.timm:
        sys.path.insert(0, str(ROOT))
        from dimfix.isolate import warm

        warm()
        return _timm(opts.runs)
    sys.path.insert(0, str(ROOT))
    from dimfix.isolate import warm

    warm()
    # libcst and black, as a language server or a batch keeps them: the one-time
    # cost of importing them (~0.25 s) is not the search's.
    import black  # noqa: F401
    import libcst  # noqa: F401
    from libcst.metadata import ScopeProvider  # noqa: F401

    imports = []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            name, inputs, options = _args(case)
            fixes, checks, tried = [], [], []
            for _ in range(opts.runs):
                folder = Path(tmp) / case
                shutil.rmtree(folder, ignore_errors=True)
                shutil.copytree(ROOT / "fixtures" / case, folder)
                t, result = _timed_fix(folder, name, inputs, options, "broken.py")
                fixes.append(t)
                tried.append(sum(e.tried for e in result.edits) or 0)
                shutil.copy(folder / "expected.py", folder / "broken.py")
                for other in folder.glob("*.expected"):
                    shutil.copy(other, folder / (other.stem + ".py"))
                t, _ = _timed_fix(folder, name, inputs, options, "broken.py")
                checks.append(t)
                start = time.perf_counter()
                subprocess.run([sys.executable, "-c", "import torch"], check=True)
                imports.append(time.perf_counter() - start)
            rows.append((case, statistics.median(fixes), statistics.median(checks),
                         statistics.median(tried), len(result.edits)))
    imp = statistics.median(imports)
    print(f"load average {os.getloadavg()[0]:.2f}; import torch {imp * 1000:.0f} ms "
          f"(median of {len(imports)}); medians of {opts.runs} runs per case")
    print(f"{'case':34s} {'fixes':>5s} {'weighed':>7s} {'fix ms':>7s} {'check ms':>8s} "
          f"{'added':>7s} {'x import':>8s}")
    added = []
    for case, fix, check, tried, n in rows:
        added.append(fix - check)
        print(f"{case:34s} {n:5d} {tried:7.0f} {fix * 1000:7.0f} {check * 1000:8.0f} "
              f"{(fix - check) * 1000:7.0f} {(fix - check) / imp:8.3f}")
    ratio = statistics.median(added) / imp
    print(f"median added / import torch: {ratio:.3f}x  target <= {TARGET}x  "
          f"{'PASS' if ratio <= TARGET else 'MISS'}")


if __name__ == "__main__":
    main()
