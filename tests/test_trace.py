"""Devices, fallbacks and the verify gate."""


import pytest

import dimfix.trace
from conftest import FIXTURES, copy_case

DATA_DEPENDENT = """\
import torch
from torch import nn


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(12, 4)

    def forward(self, x):
        h = self.a(x)
        if h.sum().item() >= 0:  # needs real values: fails on the meta device
            h = torch.relu(h)
        return self.b(h)
"""


@pytest.fixture
def meta_first(monkeypatch):
    """Trace every model as if it were too big for a CPU trace."""
    monkeypatch.setattr(dimfix.trace, "CPU_TRACE_BYTES", 0)


def _case(tmp_path, name="pooling_product"):
    return copy_case(name, tmp_path)


def _fixed_on_meta(folder, cli):
    """The case in ``folder`` gets its expected fix, from a trace on meta."""
    args = (folder / "args").read_text().split()
    run = cli(args + ["--verbose"], folder)
    assert run.code == 0, run
    assert "traced on meta" in run.stderr
    assert (folder / "broken.py").read_bytes() == (folder / "expected.py").read_bytes()


def test_meta_trace_gives_the_same_fix(tmp_path, cli, meta_first):
    _fixed_on_meta(_case(tmp_path), cli)


def test_data_dependent_model_falls_back_to_cpu(tmp_path, cli, meta_first):
    (tmp_path / "gated.py").write_text(DATA_DEPENDENT)
    run = cli(["gated.py::Gated", "--input", "2x8", "--verbose"], tmp_path)
    assert run.code == 0, run
    assert "traced on cpu" in run.stderr
    assert "nn.Linear(16, 4)" in (tmp_path / "gated.py").read_text()


def test_memory_guard_refuses_a_cpu_fallback(tmp_path, cli, meta_first):
    (tmp_path / "gated.py").write_text(DATA_DEPENDENT)
    run = cli(["gated.py::Gated", "--input", "2x8", "--max-memory", "100B"], tmp_path)
    assert run.code == 2, run
    assert "over the 100 bytes limit (--max-memory)" in run.stderr
    assert (tmp_path / "gated.py").read_text() == DATA_DEPENDENT


def test_an_edit_that_does_not_verify_is_not_written(tmp_path, cli, monkeypatch):
    import dimfix.rewrite

    folder = _case(tmp_path)
    before = (folder / "broken.py").read_bytes()
    real = dimfix.rewrite.splice_edits
    monkeypatch.setattr(
        dimfix.rewrite, "splice_edits",
        lambda index, repl: real(index, repl).replace("16 * 16", "16 * 15"),
    )
    run = cli((folder / "args").read_text().split(), folder)
    assert run.code == 2, run
    assert "fix did not verify" in run.stderr
    assert (folder / "broken.py").read_bytes() == before


def test_model_instance_target(tmp_path, cli):
    source = (FIXTURES / "linear_chain" / "broken.py").read_text() + "\nmodel = MyModel()\n"
    (tmp_path / "inst.py").write_text(source)
    run = cli(["inst.py::model", "--input", "2x10"], tmp_path)
    assert run.code == 0, run
    assert "nn.Linear(20, 5)" in (tmp_path / "inst.py").read_text()


def test_an_internal_error_is_one_line_and_writes_nothing(tmp_path, cli, monkeypatch):
    import dimfix.plan

    folder = _case(tmp_path)
    before = (folder / "broken.py").read_bytes()

    def broken_planner(*args, **kwargs):
        raise RuntimeError("a bug in the planner")

    monkeypatch.setattr(dimfix.plan, "plan_edits", broken_planner)
    run = cli((folder / "args").read_text().split(), folder)
    assert run.code == 2, run
    assert run.stderr.splitlines() == [
        "dimfix: error: internal error (RuntimeError: a bug in the planner); nothing written "
        "for this model. Please report it; --verbose shows the traceback"
    ]
    assert (folder / "broken.py").read_bytes() == before


TWO_VIEWS = """\
import torch.nn as nn
import torch.nn.functional as F


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.a = nn.Linear(8 * 5 * 5, 4)
        self.b = nn.Linear(8 * 2 * 2, 4)

    def forward(self, x):
        x = F.relu(self.conv(x))
        a = self.a(x.view(-1, 8 * 5 * 5))
        b = self.b(F.max_pool2d(x, 3).view(-1, 8 * 2 * 2))
        return a + b
"""


def test_two_views_in_one_forward_are_fixed_apart(tmp_path, cli):
    (tmp_path / "heads.py").write_text(TWO_VIEWS)
    run = cli(["heads.py::TwoHeads", "--input", "2x1x12x12"], tmp_path)
    assert run.code == 0, run
    assert (tmp_path / "heads.py").read_text() == TWO_VIEWS.replace(
        "8 * 5 * 5", "8 * 10 * 10").replace("8 * 2 * 2", "8 * 3 * 3")


SCRIPTED = """\
import torch
from torch import nn


@torch.jit.script
def zeros_like_rows(x: torch.Tensor, n: int):
    return torch.zeros(n, x.shape[1]) + x[:1]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(1, 8))
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(x + self.table)
"""


def test_a_script_compiled_while_sites_are_recorded_still_compiles(tmp_path, cli):
    """Tensor factories are wrapped while the model is imported and built
    (sites.py); TorchScript must still see torch's own ops in them."""
    import torch

    own = torch.zeros
    (tmp_path / "scripted.py").write_text(SCRIPTED)
    run = cli(["scripted.py::Net", "--input", "2x8"], tmp_path)
    assert run.code == 0, run
    assert "nn.Linear(8, 4)" in (tmp_path / "scripted.py").read_text()
    assert torch.zeros is own


def test_a_position_table_is_fixed_on_meta_too(tmp_path, cli, meta_first):
    _fixed_on_meta(_case(tmp_path, "table_sincos_seq_len"), cli)


def test_layers_built_for_meta_while_sites_are_recorded_are_on_meta_the_first_time_too():
    """torch caches the factories ``torch.device("meta")`` places, on first use:
    cached while dimfix's recording wrappers stood in for them, every layer of
    the process was built on CPU after (torchvision's densenet161, too big for
    a CPU trace, failed: "Tensor on device cpu is not on the expected device")."""
    import torch
    from torch import nn
    from torch.utils._device import _device_constructors

    from dimfix.sites import recording_sites

    _device_constructors.cache_clear()  # as in a fresh process
    try:
        with recording_sites(lambda path: True), torch.device("meta"):
            first = nn.Conv2d(3, 8, 3)
        with torch.device("meta"):
            after = nn.Linear(4, 4)
        assert (first.weight.device.type, after.weight.device.type) == ("meta", "meta")
    finally:
        _device_constructors.cache_clear()


SELF_INITIALIZED = """\
import math

import torch
from torch import nn


def trunc_normal_(tensor, std=0.02):
    # timm's way: values written by in-place tensor ops, not nn.init
    with torch.no_grad():
        tensor.uniform_(-1.0, 1.0)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        tensor.add_(0.0)
        tensor.clamp_(min=-2 * std, max=2 * std)
    return tensor


class Tagger(nn.Module):
    def __init__(self, steps=16, width=32):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, steps, width))
        trunc_normal_(self.pos)
        self.proj = nn.Linear(24, width)
        self.proj.weight.data.normal_(mean=0.0, std=0.02)
        self.proj.bias.data.zero_()
        self.head = nn.Linear(width, 5)
        self.head.weight.data.fill_(0.01)

    def forward(self, x):
        return self.head(self.proj(x) + self.pos).mean(1)
"""


def test_weights_a_library_initializes_itself_build_on_meta_and_trace(tmp_path, cli, meta_first):
    """In-place value ops on meta weights do nothing (build._NoValues): the
    model builds, traces on meta and gets its fix."""
    (tmp_path / "tagger.py").write_text(SELF_INITIALIZED.replace("nn.Linear(24, width)",
                                                                 "nn.Linear(20, width)"))
    run = cli(["tagger.py::Tagger", "--input", "2x16x24", "--verbose"], tmp_path)
    assert run.code == 0, run
    assert "traced on meta" in run.stderr
    assert (tmp_path / "tagger.py").read_text() == SELF_INITIALIZED


def test_an_init_op_given_a_tensor_still_runs_on_meta(tmp_path, cli, meta_first):
    """Only value ops given numbers are skipped: one given a tensor of another
    shape raises while the model is built on meta, as it does on CPU."""
    (tmp_path / "added.py").write_text(SELF_INITIALIZED.replace(
        "        self.head.weight.data.fill_(0.01)\n",
        "        self.head.weight.data.fill_(0.01)\n"
        "        self.pos.data.add_(torch.ones(1, steps + 1, width))\n"))
    run = cli(["added.py::Tagger", "--input", "2x16x24"], tmp_path)
    assert run.code == 2, run
    assert "building Tagger raised RuntimeError" in run.stderr, run


def test_a_trace_over_its_cpu_budget_goes_to_meta_with_the_same_fix(tmp_path, cli, monkeypatch):
    """A CPU trace whose first pass passes CPU_TRACE_MACS multiply-adds stops
    and runs on meta (cost.py): the same fix, written the same way."""
    monkeypatch.setattr(dimfix.trace, "CPU_TRACE_MACS", 10_000)
    _fixed_on_meta(_case(tmp_path), cli)


def test_multiply_adds_are_counted_from_the_input_shape():
    import torch
    from torch import nn

    from dimfix.cost import macs

    x = torch.empty(2, 3, 32, 32, device="meta")
    assert macs(nn.Conv2d(3, 8, 3, device="meta"), (x,)) == 8 * 3 * 9 * 2 * 32 * 32
    assert macs(nn.Conv2d(3, 8, 3, stride=2, device="meta"), (x,)) == 8 * 3 * 9 * 2 * 16 * 16
    assert macs(nn.ConvTranspose2d(3, 8, 2, stride=2, device="meta"), (x,)) \
        == 3 * 8 * 4 * 2 * 32 * 32
    assert macs(nn.Conv1d(3, 4, 1, device="meta"), (torch.empty(3, 10, device="meta"),)) == 120
    assert macs(nn.Linear(32, 10, device="meta"), (x,)) == 320 * 2 * 3 * 32
    assert macs(nn.ReLU(), (x,)) == 0
    assert macs(nn.LazyLinear(10), (x,)) == 0  # no weight yet
    fc = nn.Linear(32, 10, device="meta")
    fc.weight = None  # a layer whose weight lives elsewhere (a parametrization, a tie)
    assert macs(fc, (x,)) == 0


def test_a_weight_written_in_place_outside_no_grad_still_stops_the_build(tmp_path, cli):
    """``self.head.weight.mul_(0.1)`` without ``torch.no_grad()`` raises in
    PyTorch (an in-place op on a leaf that requires grad): the build on meta
    raises it too, though value ops are otherwise skipped there."""
    (tmp_path / "leaf.py").write_text(SELF_INITIALIZED.replace(
        "        self.head.weight.data.fill_(0.01)\n",
        "        self.head.weight.mul_(0.1)\n").replace("nn.Linear(24, width)",
                                                      "nn.Linear(20, width)"))
    run = cli(["leaf.py::Tagger", "--input", "2x16x24"], tmp_path)
    assert run.code == 2, run
    assert "building Tagger raised RuntimeError: a leaf Variable that requires grad" \
        in run.stderr, run
