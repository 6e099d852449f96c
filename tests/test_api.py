"""Issue 13, item 9: the library API, called directly (not through the CLI), and
the README's example executed as written."""

import os
import re
import shutil

import pytest

from conftest import FIXTURES, ROOT, copy_case


def readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker}:.*?-->\n```\w+\n(.*?)```", text, re.S)
    assert match, f"README has no block marked {marker}"
    return match.group(1)


def test_fix_file_takes_the_cli_strings_and_returns_typed_edits(tmp_path):
    from dimfix.api import fix_file, write_result

    case = copy_case("pooling_product", tmp_path)
    result = fix_file(str(case / "broken.py"), inputs=["1x3x32x32"], name="PoolingClassifier",
                      init=["num_channels=3", "num_classes=10"])
    assert result.changed and (case / "broken.py").read_text() != result.new_text
    edit = result.edits[0]
    assert edit.file.endswith("broken.py") and edit.line > 0 and edit.column > 0
    assert isinstance(edit.old, int) and isinstance(edit.new, int) and edit.old != edit.new
    assert edit.reason
    written = write_result(result)
    assert len(written) == 1 and written[0].endswith("broken.py")
    assert (case / "broken.py").read_bytes() == (FIXTURES / "pooling_product" / "expected.py").read_bytes()


def test_options_accept_cli_strings():
    from dimfix.api import Options

    options = Options("Net", ["long:2x12", "image=1x3x8x8"])
    assert [str(i) for i in options.inputs] == ["int64:2x12", "1x3x8x8"]
    assert options.inputs[1].name == "image"


def test_the_cli_writes_through_write_changes(tmp_path, cli, monkeypatch):
    import dimfix.api

    seen = []
    real = dimfix.api.write_changes
    monkeypatch.setattr(dimfix.api, "write_changes", lambda changes: seen.append(changes) or real(changes))
    case = copy_case("three_wrong_layers", tmp_path)
    run = cli(["broken.py::SmallConvNet", "--input", "2x3x32x32"], case)
    assert run.code == 0, run
    assert len(seen) == 1
    assert (case / "broken.py").read_text() == (case / "expected.py").read_text()


def test_the_readme_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    code = readme_block("api-example")
    shutil.copytree(FIXTURES / "three_wrong_layers", tmp_path / "fixtures" / "three_wrong_layers")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "fixtures/three_wrong_layers/broken.py:12:32: 16 -> 32",
        "fixtures/three_wrong_layers/broken.py:13:35: 32 -> 64",
        "fixtures/three_wrong_layers/broken.py:15:30: 3136 -> 4096",
    ]
    fixed = tmp_path / "fixtures" / "three_wrong_layers"
    assert (fixed / "broken.py").read_text() == (fixed / "expected.py").read_text()


# -- issue 22: the API as documented ----------------------------------------------------------

ONE_MODEL = '''import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 4)

    def forward(self, x):
        return self.fc(x)
'''


def test_fix_file_takes_options(tmp_path):
    from dimfix.api import Options, fix_file

    (tmp_path / "net.py").write_text(ONE_MODEL)
    result = fix_file(str(tmp_path / "net.py"), Options("Net", ["2x20"]))
    assert [(e.old, e.new) for e in result.edits] == [(10, 20)]
    assert result.new_text == ONE_MODEL.replace("nn.Linear(10, 4)", "nn.Linear(20, 4)")


def test_fix_file_finds_the_one_model_as_the_cli_does(tmp_path):
    from dimfix.api import fix_file

    (tmp_path / "net.py").write_text(ONE_MODEL)
    result = fix_file(str(tmp_path / "net.py"), inputs=["2x20"])
    assert [m.name for m in result.models] == ["Net"]
    assert [(e.old, e.new) for e in result.edits] == [(10, 20)]


@pytest.mark.parametrize("kwargs, kind, says", [
    (dict(name="Nett", inputs=["2x20"]), "TargetNotFound", "no model named 'Nett'"),
    (dict(name="Net", inputs=["2x3"], init=["width=3"]), "BadUsage", "takes no keyword 'width'"),
    (dict(name="Net"), "BadUsage", "no sample input: give inputs=['SHAPE']"),
])
def test_fix_file_raises_what_the_cli_reports_without_naming_flags(tmp_path, kwargs, kind, says):
    from dimfix.api import fix_file
    from dimfix.errors import DimfixError

    (tmp_path / "net.py").write_text(ONE_MODEL)
    with pytest.raises(DimfixError) as raised:
        fix_file(str(tmp_path / "net.py"), **kwargs)
    assert raised.value.kind.value == kind
    assert says in raised.value.message
    assert "--" not in raised.value.message


def test_an_unbatched_input_raises_and_names_the_keyword(tmp_path):
    from dimfix.api import fix_file
    from dimfix.errors import DimfixError

    (tmp_path / "conv.py").write_text('''import torch.nn as nn


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x)
''')
    with pytest.raises(DimfixError) as raised:
        fix_file(str(tmp_path / "conv.py::Conv"), inputs=["3x8x8"])
    assert "did you mean 1x3x8x8? (pass unbatched=True if not)" in raised.value.message
    assert "--" not in raised.value.message
    assert fix_file(str(tmp_path / "conv.py::Conv"), inputs=["3x8x8"], unbatched=True).edits == ()


def test_the_callers_environment_is_left_alone(tmp_path, monkeypatch):
    """A notebook that calls the API keeps its GPUs: only the child hides them."""
    from dimfix.api import fix_file

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    (tmp_path / "net.py").write_text(ONE_MODEL)
    fix_file(str(tmp_path / "net.py::Net"), inputs=["2x10"])
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_the_child_sees_no_gpu_whatever_the_caller_has(tmp_path, monkeypatch):
    from dimfix.api import fix_file

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    (tmp_path / "net.py").write_text(ONE_MODEL.replace(
        "        return self.fc(x)",
        "        assert not torch.cuda.is_available() and torch.cuda.device_count() == 0\n"
        "        assert os.environ['CUDA_VISIBLE_DEVICES'] == ''\n"
        "        return self.fc(x)").replace("import torch.nn as nn",
                                            "import os\n\nimport torch\nimport torch.nn as nn"))
    assert fix_file(str(tmp_path / "net.py::Net"), inputs=["2x10"]).edits == ()
