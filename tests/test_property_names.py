"""Property: when a size written as a name is broken, the chosen edit is the
one its author would make.

Generated models pass widths by name (``def __init__(self, d0=24, d1=40, ...)``,
``nn.Linear(d1, d2)``), in varied layouts (tabs, odd spacing, comments). One
layer's input is broken: another width's name written in its place, a
literal, or the right name scaled (``d1 * 2``, ``d1 // 2``). dimfix must then
change only that line, never scale a name by a literal the original line did
not hold (no invented ``num_classes * 4``), and -- since the right name is in
scope and no other name holds its value -- restore the line exactly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import ROOT
from test_properties import SETTINGS, _example

WIDTHS = (8, 12, 20, 24, 40, 48, 56, 72)


@st.composite
def named_mlps(draw):
    n = draw(st.integers(min_value=3, max_value=5))
    widths = draw(st.lists(st.sampled_from(WIDTHS), min_size=n + 1, max_size=n + 1, unique=True))
    indent = draw(st.sampled_from(["    ", "\t", "  "]))
    space = draw(st.sampled_from(["", " "]))
    params = f",{space}".join(f"d{i}={w}" for i, w in enumerate(widths))
    lines = ["import torch.nn as nn", "", "", "class Net(nn.Module):",
             f"{indent}def __init__(self, {params}):", f"{indent * 2}super().__init__()"]
    for i in range(n):
        comment = draw(st.sampled_from(["", "  # layer", "   # keep"]))
        lines.append(f"{indent * 2}self.fc{i} = nn.Linear(d{i},{space or ' '}d{i + 1}){comment}")
    lines += ["", f"{indent}def forward(self, x):"]
    lines += [f"{indent * 2}x = self.fc{i}(x)" for i in range(n)]
    lines += [f"{indent * 2}return x", ""]
    layer = draw(st.integers(min_value=1, max_value=n - 1))
    kind = draw(st.sampled_from(["other name", "literal", "times", "floordiv"]))
    others = [j for j in range(n + 1) if j != layer]
    if kind == "other name":
        wrong = f"d{draw(st.sampled_from(others))}"
    elif kind == "literal":
        wrong = str(draw(st.sampled_from([w for w in WIDTHS if w != widths[layer]])))
    else:
        wrong = f"d{layer} * 2" if kind == "times" else f"d{layer} // 2"
    row = 6 + layer
    broken = list(lines)
    broken[row] = broken[row].replace(f"nn.Linear(d{layer},", f"nn.Linear({wrong},", 1)
    return "\n".join(lines), "\n".join(broken), row, widths[0]


def _scaled_names(line: str):
    return set(re.findall(r"\b([A-Za-z_]\w*)\s*(\*|//)\s*(\d+)", line))


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """One folder for every example, emptied before each: one project, one
    warm worker (as in test_properties), not a worker forked per example."""
    return tmp_path_factory.mktemp("examples")


@SETTINGS
@given(case=named_mlps())
def test_a_broken_name_gets_the_edit_its_author_would_make(case, cli, examples):
    original, broken, row, width = case
    with _example(examples) as tmp:
        path = Path(tmp) / "net.py"
        path.write_text(broken)
        try:
            run = cli(["net.py::Net", "--input", f"2x{width}"], Path(tmp))
        finally:
            os.chdir(ROOT)
        fixed = path.read_text()
    assert run.code == 0, run
    before, after = broken.split("\n"), fixed.split("\n")
    assert len(before) == len(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed == [row], (changed, run)
    invented = _scaled_names(after[row]) - _scaled_names(original.split("\n")[row])
    assert not invented, after[row]
    assert fixed == original, run
