"""``dimfix --shapes``: the layer table, its JSON, and torchinfo's columns."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import copy_case

ROOT = Path(__file__).resolve().parent.parent


def test_table_goes_through_every_mismatch(cli, tmp_path):
    case = copy_case("three_wrong_layers", tmp_path)
    before = (case / "broken.py").read_bytes()
    run = cli(["--shapes", "broken.py::SmallConvNet", "--input", "2x3x32x32"], case)
    assert run.code == 1, run
    lines = run.stdout.splitlines()
    assert lines[1].split() == ["layer", "kind", "declared", "input", "output", "params", "status"]
    rows = {line.split()[0]: line for line in lines[2:10]}
    assert "fixed: in_channels 16 -> 32" in rows["conv2"]
    assert "fixed: num_features 32 -> 64" in rows["bn2"]
    assert "3136, 128" in rows["fc1"] and "2x4096" in rows["fc1"]
    assert "fixed: in_features 3136 -> 4096" in rows["fc1"]
    assert rows["fc2"].rstrip().endswith("ok*")  # after a resized layer
    assert "output 2x10; 545,290 params as fixed; 3 fixes" in run.stdout
    assert all(len(line) <= 100 for line in lines)
    assert "\x1b[" not in run.stdout  # no colour off a tty
    assert (case / "broken.py").read_bytes() == before


def test_a_producers_fix_marks_it_fixed_and_the_layers_it_feeds_right_once_made(cli, tmp_path):
    case = copy_case("producer_tutorial_pasted_block", tmp_path)
    run = cli(["--shapes", "--format", "json", *(case / "args").read_text().split()], case)
    assert run.code == 1, run
    rows = {r["layer"]: r for r in json.loads(run.stdout)["models"][0]["rows"]}
    assert rows["conv2"]["status"] == "fixed"
    assert rows["conv2"]["changes"] == [{"argument": "out_channels", "old": 32, "new": 64}]
    for layer in ("bn2", "conv3"):
        assert (rows[layer]["status"], rows[layer]["reason"]) == (
            "follows", "conv2 out_channels 32 -> 64")
    run = cli(["--shapes", *(case / "args").read_text().split()], case)
    assert run.stdout.count("= right once conv2 out_channels 32 -> 64") == 2, run


def test_cannot_fix_status_and_clean_exit(cli, tmp_path):
    case = copy_case("origin_config_dict_unfixable", tmp_path)
    run = cli(["--shapes", *(case / "args").read_text().split()], case)
    assert run.code == 1
    assert "cannot fix: in_features 128 -> 64" in run.stdout
    assert all(len(line) <= 100 for line in run.stdout.splitlines())
    clean = copy_case("clean_model", tmp_path)
    run = cli(["--shapes", *(clean / "args").read_text().split()], clean)
    assert run.code == 0, run
    assert "every layer fits" in run.stdout


def test_json_matches_its_schema(cli, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    case = copy_case("three_wrong_layers", tmp_path)
    run = cli(["--shapes", "broken.py::SmallConvNet", "--input", "2x3x32x32",
               "--format", "json"], case)
    doc = json.loads(run.stdout)
    schema = json.loads((ROOT / "dimfix" / "shapes.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["exit_code"] == run.code == 1
    fc1 = next(r for r in doc["models"][0]["rows"] if r["layer"] == "fc1")
    assert fc1["declared"] == {"in_features": 3136, "out_features": 128}
    assert fc1["changes"] == [{"argument": "in_features", "old": 3136, "new": 4096}]
    assert fc1["input"] == [[2, 4096]] and fc1["line"] == 15


def test_zoo_folder_prints_a_table_per_model(cli, tmp_path):
    zoo = copy_case("zoo", tmp_path)
    run = cli(["--shapes", "models"], zoo)
    assert run.code == 0, run
    assert run.stdout.count("every layer fits") >= 20
    assert all(len(line) <= 100 for line in run.stdout.splitlines())


def test_bad_usage_is_one_line(cli, tmp_path):
    case = copy_case("three_wrong_layers", tmp_path)
    run = cli(["--shapes", "broken.py::SmallConvNet", "--input", "2x3x32x32",
               "--format", "lines"], case)
    assert run.code == 2
    assert run.stderr.count("\n") == 1 and "--shapes" in run.stderr


def test_huge_model_on_meta(cli, tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from latency import Gpt

    (tmp_path / "gpt.py").write_text(Gpt("1B", 2048, 4, 1024).source())
    run = cli(["--shapes", "gpt.py::GPT", "--input", "long:1x16"], tmp_path)
    assert run.code == 1, run
    assert "traced on meta" in run.stdout
    assert "fixed: in_features 1024 -> 2048" in run.stdout


def test_columns_match_torchinfo(cli, tmp_path):
    torchinfo = pytest.importorskip("torchinfo")
    case = copy_case("clean_model", tmp_path)
    args = (case / "args").read_text().split()
    run = cli(["--shapes", *args, "--format", "json"], case)
    rows = [r for r in json.loads(run.stdout)["models"][0]["rows"] if r["leaf"]]

    path, name = args[0].split("::")
    shape = tuple(int(d) for d in args[args.index("--input") + 1].split("x"))
    spec = importlib.util.spec_from_file_location("clean_model_for_torchinfo", case / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stats = torchinfo.summary(getattr(module, name)(), input_size=shape, verbose=0, depth=99)
    leaves = [layer for layer in stats.summary_list if layer.is_leaf_layer]
    theirs = [(layer.var_name, type(layer.module).__name__, list(layer.input_size),
               list(layer.output_size), layer.num_params) for layer in leaves]
    ours = [(r["layer"].rpartition(".")[2], r["kind"], r["input"][0], r["output"][0], r["params"])
            for r in rows]
    assert ours == theirs
    assert json.loads(run.stdout)["models"][0]["params"] == stats.total_params


def test_shapes_through_a_crash_it_cannot_fix(cli, tmp_path):
    """torchinfo stops with "Executed layers up to: [...]"; the table prints every
    row that ran, marks the innermost call that raised and says where it stopped."""
    case = copy_case("shapes_unfixable_crash", tmp_path)
    before = (case / "broken.py").read_bytes()
    run = cli(["--shapes", *(case / "args").read_text().split()], case)
    assert run.code == 2, run
    lines = run.stdout.splitlines()
    layers = [line.split()[0] for line in lines[2:] if not line.startswith((" ", "stopped"))]
    assert layers[:3] == ["inc", "inc.double_conv", "inc.double_conv.0"]
    assert layers[-2:] == ["up1", "up1.up"]  # up1.conv never ran
    assert "raised here" in run.stdout and run.stdout.count("raised") == 2
    assert lines[-1] == "stopped at up1 (Up), where the model raised; the error follows"
    assert "torch.cat" not in run.stderr and "Sizes of tensors must match" in run.stderr
    assert all(len(line) <= 100 for line in lines)
    assert (case / "broken.py").read_bytes() == before
    doc = json.loads(cli(["--shapes", "--format", "json",
                          *(case / "args").read_text().split()], case).stdout)
    rows = doc["models"][0]["rows"]
    assert [r["status"] for r in rows if r["status"] != "ok"] == ["raised"]
    assert doc["models"][0]["error"]["kind"] == "ModelRaised" and doc["exit_code"] == 2


OWN_FORWARD = """\
import torch
from torch import nn


def sinusoids(length, channels):
    log_timescale = torch.log(torch.tensor(10000.0)) / (channels // 2 - 1)
    scaled = torch.arange(length)[:, None] * torch.exp(-log_timescale * torch.arange(channels // 2))
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class Encoder(nn.Module):
    def __init__(self, n_ctx=16, n_state=32):
        super().__init__()
        self.proj = nn.Linear(8, n_state)
        self.register_buffer("positional_embedding", sinusoids(n_ctx, n_state))

    def forward(self, x):
        x = self.proj(x)
        return x + self.positional_embedding
"""


def test_a_crash_in_the_models_own_forward_says_after_which_layer(cli, tmp_path):
    (tmp_path / "enc.py").write_text(OWN_FORWARD)
    run = cli(["--shapes", "enc.py::Encoder", "--input", "2x20x8"], tmp_path)
    assert run.code == 2, run
    assert run.stdout.splitlines()[-1] == (
        "stopped in the model's own forward, after proj (Linear); the error follows")
    assert "proj" in run.stdout and "raised" not in run.stdout
