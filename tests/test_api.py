"""Issue 13, item 9: the library API, called directly (not through the CLI), and
the README's example executed as written."""

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
