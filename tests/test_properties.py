"""Property tests: random, valid model programs, randomly broken, must be
repaired exactly, and nothing else may change.

The generator writes a conv stack or an MLP, as a class or a Sequential
factory, with each size written one of several ways (literal, keyword,
product, module constant, default argument, helper call site), odd spacing,
comments, CRLF, a BOM and various mode bits. A mutation changes one or more
written input sizes. DIMFIX_EXAMPLES sets how many programs to try (default
25 in CI; set it to thousands for a long run).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, Run

EXAMPLES = int(os.environ.get("DIMFIX_EXAMPLES", "25"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("DIMFIX_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
STYLES = ("literal", "keyword", "constant", "default", "helper")


@dataclass
class Program:
    """A generated model file: its text before and after a mutation."""

    lines: List[str] = field(default_factory=list)
    constants: List[str] = field(default_factory=list)
    params: List[str] = field(default_factory=list)
    sites: List[tuple] = field(default_factory=list)  # (placeholder, correct text, style)
    input: str = ""
    name: str = "Net"
    newline: str = "\n"
    bom: bool = False
    mode: int = 0o644

    def render(self, values: dict) -> bytes:
        text = "\n".join(self.lines)
        for key, correct, _ in self.sites:
            text = text.replace(key, values.get(key, correct))
        text = text.replace("\n", self.newline)
        data = text.encode("utf-8")
        return (b"\xef\xbb\xbf" + data) if self.bom else data


def _space(draw) -> str:
    return draw(st.sampled_from(["", "", " "]))


@st.composite
def programs(draw) -> Program:
    p = Program()
    p.newline = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    p.bom = draw(st.booleans())
    p.mode = draw(st.sampled_from([0o644, 0o600, 0o755]))
    image = draw(st.booleans())
    sequential = draw(st.booleans())
    layers = []  # (kind, in_value, text_template_of_other_args)
    if image:
        channels = draw(st.integers(1, 4))
        side = draw(st.sampled_from([8, 12, 16]))
        p.input = f"2x{channels}x{side}x{side}"
        c = channels
        for _ in range(draw(st.integers(1, 3))):
            out = draw(st.integers(2, 12))
            layers.append(("Conv2d", c, f"{out}, 3, padding=1", "in_channels"))
            if draw(st.booleans()):
                layers.append(("BatchNorm2d", out, "", "num_features"))
            if side >= 4 and draw(st.booleans()):
                layers.append(("MaxPool2d", None, "2", None))
                side //= 2
            c = out
        layers.append(("Flatten", None, "", None))
        flat = (c, side, side)
    else:
        width = draw(st.integers(2, 40))
        p.input = f"2x{width}"
        flat = (width,)
    features = flat
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(2, 30))
        layers.append(("Linear", features, str(out), "in_features"))
        if draw(st.booleans()):
            layers.append(("ReLU", None, "", None))
        features = (out,)

    helper = False
    calls = []
    for i, (kind, value, rest, arg) in enumerate(layers):
        if value is None:
            calls.append(f"nn.{kind}({rest})")
            continue
        key = f"@{i}@"
        product = isinstance(value, tuple) and len(value) > 1
        size = value if isinstance(value, int) else 1
        if isinstance(value, tuple):
            for v in value:
                size *= v
        style = draw(st.sampled_from(STYLES if not product else ("literal", "keyword")))
        if sequential and style == "default":
            style = "constant"
        written = " * ".join(map(str, value)) if product else str(size)
        comma = "," + _space(draw)
        if style == "keyword":
            call = f"nn.{kind}({arg}={key}{comma}{_kw(kind, rest)})"
            p.sites.append((key, written, style))
        elif style == "constant":
            name = f"SIZE_{i}"
            p.constants.append(f"{name} = {key}")
            p.sites.append((key, written, style))
            call = f"nn.{kind}({name}{comma}{rest})".replace(f"{comma})", ")")
        elif style == "default":
            name = f"size_{i}"
            p.params.append(f"{name}={key}")
            p.sites.append((key, written, style))
            call = f"nn.{kind}({name}{comma}{rest})".replace(f"{comma})", ")")
        elif style == "helper" and kind == "Linear":
            helper = True
            call = f"linear({key}, {rest})"
            p.sites.append((key, written, style))
        else:
            call = f"nn.{kind}({_space(draw)}{key}{comma}{rest})".replace(f"{comma})", ")")
            p.sites.append((key, written, "literal"))
        if draw(st.booleans()):
            call += "  # " + draw(st.sampled_from(["size", "größe", "TODO check"]))
        calls.append(call)

    p.lines += ["# generated model", "import torch", "import torch.nn as nn", ""]
    p.lines += p.constants + [""]
    if helper:
        p.lines += ["", "def linear(i, o):", "    return nn.Linear(i, o)", ""]
    if sequential:
        p.name = "make"
        p.lines += ["", f"def make({', '.join(p.params)}):", "    return nn.Sequential("]
        p.lines += [f"        {c.split('  #')[0]}," for c in calls]
        p.lines += ["    )", ""]
    else:
        params = "".join(f", {x}" for x in p.params)
        p.lines += ["", "class Net(nn.Module):", f"    def __init__(self{params}):",
                    "        super().__init__()"]
        p.lines += [f"        self.l{i} = {c}" for i, c in enumerate(calls)]
        p.lines += ["", "    def forward(self, x):"]
        p.lines += [f"        x = self.l{i}(x)" for i in range(len(calls))]
        p.lines += ["        return x", ""]
    return p


def _kw(kind: str, rest: str) -> str:
    """The remaining arguments as keywords, since a keyword came first."""
    if not rest:
        return ""
    first, _, tail = rest.partition(",")
    name = {"Linear": "out_features", "Conv2d": "out_channels"}[kind]
    kernel = {"Conv2d": "kernel_size="}.get(kind, "")
    parts = [f"{name}={first.strip()}"]
    if tail:
        size, _, pad = tail.strip().partition(",")
        parts.append(f"{kernel}{size.strip()}")
        if pad:
            parts.append(pad.strip())
    return ", ".join(parts)


@st.composite
def broken_programs(draw):
    p = draw(programs())
    keys = [k for k, _, _ in p.sites]
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=min(3, len(keys)),
                           unique=True))
    values = {}
    for key in chosen:
        correct = next(c for k, c, _ in p.sites if k == key)
        factors = [int(f) for f in correct.split(" * ")]
        i = draw(st.integers(0, len(factors) - 1))
        new = draw(st.integers(1, factors[i] * 2 + 5).filter(lambda v, f=factors[i]: v != f))
        factors[i] = new
        values[key] = " * ".join(map(str, factors))
    return p, values


def _restorations(p: Program, mutated: Dict[str, str]) -> List[bytes]:
    """The texts that put each mutated size back: its literal, or a name that
    holds the same value (``SIZE_3``, ``size_3``)."""
    holders = {}
    for key, written, style in p.sites:
        if style in ("constant", "default"):
            name = f"SIZE_{key.strip('@')}" if style == "constant" else f"size_{key.strip('@')}"
            holders.setdefault(written, []).append(name)
    choices = []
    for key in mutated:
        written, style = next((w, st_) for k, w, st_ in p.sites if k == key)
        literal = style in ("literal", "keyword", "helper") and " * " not in written
        choices.append([(key, written)] + [(key, n) for n in holders.get(written, []) if literal])
    return [p.render(dict(combo)) for combo in itertools.product(*choices)]


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """The one folder every example of the module runs in (``_example``): one
    project, whose warm worker they share. A folder per example forked a worker
    per example (75, ~2-3 s of CPU) that no assertion here is about."""
    return tmp_path_factory.mktemp("examples")


@contextlib.contextmanager
def _example(folder: Path):
    """``folder``, rid of what the previous example left there."""
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    yield str(folder)


def _run(cli, folder: Path, p: Program, *flags, fmt: bool = False) -> Run:
    args = [f"model.py::{p.name}", "--input", p.input, *flags]
    try:
        return cli(args if fmt else args + ["--no-format"], folder)
    finally:
        os.chdir(ROOT)


def _stamp(path: Path):
    st_ = os.stat(path)
    return path.read_bytes(), st_.st_mtime_ns, stat.S_IMODE(st_.st_mode)


@SETTINGS
@given(program=programs())
def test_a_correct_model_is_never_changed(program, cli, examples):
    with _example(examples) as tmp:
        path = Path(tmp) / "model.py"
        path.write_bytes(program.render({}))
        os.chmod(path, program.mode)
        before = _stamp(path)
        run = _run(cli, Path(tmp), program)
        assert run.code == 0, run
        assert _stamp(path) == before


@SETTINGS
@given(case=broken_programs())
def test_a_broken_model_is_restored_exactly(case, cli, examples):
    program, values = case
    with _example(examples) as tmp:
        folder = Path(tmp)
        path = folder / "model.py"
        path.write_bytes(program.render(values))
        os.chmod(path, program.mode)
        broken = _stamp(path)

        for flag in ("--dry-run", "--check"):  # never touch the file
            _run(cli, folder, program, flag)
            assert _stamp(path) == broken

        run = _run(cli, folder, program)
        assert run.code == 0, run
        # Every mutated size is put back where it was written, as its number or
        # as a constant or parameter of the program that holds it (a literal
        # becomes a name in scope that holds its value); all other bytes, the
        # BOM, the line endings and the mode bits are as they were.
        assert path.read_bytes() in _restorations(program, values), run
        assert stat.S_IMODE(os.stat(path).st_mode) == program.mode

        again = _run(cli, folder, program, "--check")
        assert again.code == 0, again


@SETTINGS
@given(case=broken_programs())
def test_black_formatted_fix_still_traces_clean_and_is_stable(case, cli, examples):
    program, values = case
    with _example(examples) as tmp:
        folder = Path(tmp)
        path = folder / "model.py"
        path.write_bytes(program.render(values))
        run = _run(cli, folder, program, fmt=True)
        assert run.code == 0, run
        fixed = path.read_bytes()
        assert fixed.startswith(b"\xef\xbb\xbf") == program.bom
        assert (b"\r\n" in fixed) == (program.newline == "\r\n")
        compile(fixed.decode("utf-8-sig"), "model.py", "exec")
        again = _run(cli, folder, program, fmt=True)
        assert again.code == 0 and path.read_bytes() == fixed, again


def test_generator_covers_every_style():
    seen = set()

    @settings(max_examples=200, derandomize=True, database=None)
    @given(programs())
    def collect(p):
        seen.update(style for _, _, style in p.sites)

    collect()
    assert seen == set(STYLES)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
