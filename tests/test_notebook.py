"""dimfix.notebook: code cells as one script, and byte-exact write-back."""

from __future__ import annotations

import copy
import json

import pytest

from dimfix.notebook import read_notebook, write_notebook
from dimfix.script import definitions_only


def code(source, outputs=(), count=None, as_string=False):
    text = "\n".join(source) if isinstance(source, (list, tuple)) else source
    return {
        "cell_type": "code",
        "execution_count": count,
        "id": f"c{abs(hash(text)) % 10**8:08d}",
        "metadata": {},
        "outputs": list(outputs),
        "source": text if as_string else text.splitlines(True),
    }


def markdown(text):
    return {"cell_type": "markdown", "id": f"m{abs(hash(text)) % 10**8:08d}",
            "metadata": {}, "source": text.splitlines(True)}


def notebook(*cells):
    return {
        "cells": list(cells),
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "version": "3.11.7"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def jupyter_bytes(nb) -> bytes:
    """What nbformat.write produces."""
    return (json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


STREAM = {"name": "stdout", "output_type": "stream", "text": ["Epoch 1, loss 2.30 — ok\n"]}
IMAGE = {
    "data": {"image/png": "iVBORw0KGgo=\n", "text/plain": ["<Figure size 640x480>"]},
    "metadata": {"needs_background": "light"},
    "output_type": "display_data",
}
ERROR = {
    "ename": "RuntimeError",
    "evalue": "mat1 and mat2 shapes cannot be multiplied (64x16384 and 12544x10)",
    "output_type": "error",
    "traceback": ["\u001b[0;31mRuntimeError\u001b[0m"],
}

TUTORIAL = notebook(
    markdown("# CIFAR-10 classifier\n\nA small ConvNet, trained for one epoch."),
    code(["%matplotlib inline", "!pip install -q torchvision", "import torch",
          "import torch.nn as nn", "import torch.nn.functional as F"], count=1),
    code(["%%capture", "!wget https://example.com/data.tgz", "!tar xf data.tgz"], count=2),
    markdown("## Hyper-parameters"),
    code(["num_classes = 10", "batch_size = 64", "files = !ls data", "torch.manual_seed?"],
         count=3),
    code([
        "class ConvNet(nn.Module):",
        "    def __init__(self):",
        "        super().__init__()",
        "        self.conv = nn.Conv2d(3, 64, 3, padding=1)",
        "        self.pool = nn.MaxPool2d(2)",
    ], count=4),
    code([
        "        self.fc = nn.Linear(64 * 14 * 14, num_classes)  # wrong: 12544",
        "",
        "    def forward(self, x):",
        "        x = self.pool(F.relu(self.conv(x)))",
        "        return self.fc(x.flatten(1))",
    ], count=5),
    code([
        "model = ConvNet()",
        "%time out = model(torch.randn(64, 3, 32, 32))",
        "for epoch in range(1):",
        "    print('Epoch 1, loss 2.30 — ok')",
        "torch.save(model.state_dict(), 'model.pth')",
    ], outputs=[STREAM, IMAGE, ERROR], count=6),
    {"cell_type": "raw", "id": "r1", "metadata": {}, "source": ["raw text"]},
)


def test_script_joins_code_cells_and_blanks_ipython_syntax():
    nb = read_notebook(jupyter_bytes(TUTORIAL))
    lines = nb.script.split("\n")
    assert nb.script.endswith("\n")
    assert lines[:5] == ["", "", "import torch", "import torch.nn as nn",
                         "import torch.nn.functional as F"]
    assert lines[5:8] == ["", "", ""]  # the %%capture cell, whole
    assert lines[8:12] == ["num_classes = 10", "batch_size = 64", "", ""]
    assert lines[12] == "class ConvNet(nn.Module):"
    assert lines[17].startswith("        self.fc = nn.Linear(")
    assert lines[23] == ""  # %time
    assert nb.line_count == len(lines) - 1 == 27
    compile(nb.script, "nb", "exec")


def test_locate_counts_all_cells_from_one():
    nb = read_notebook(jupyter_bytes(TUTORIAL))
    assert nb.locate(1) == (2, 1)
    assert nb.locate(6) == (3, 1)
    assert nb.locate(9) == (5, 1)
    assert nb.locate(13) == (6, 1)
    assert nb.locate(18) == (7, 1)  # the Linear, in the cell after the class header
    assert nb.locate(27) == (8, 5)
    assert nb.cell_count == 9
    for bad in (0, 28):
        with pytest.raises(ValueError):
            nb.locate(bad)


def test_model_split_across_cells_loads_definitions_only():
    torch = pytest.importorskip("torch")
    nb = read_notebook(jupyter_bytes(TUTORIAL))
    plan = definitions_only(nb.script)
    namespace = {"__name__": "nb"}
    saved = []
    real_save, torch.save = torch.save, lambda *a, **k: saved.append(a)
    try:
        exec(compile(plan.text, "nb.ipynb", "exec"), namespace)
    finally:
        torch.save = real_save
    assert saved == [] and "model" not in namespace
    assert namespace["ConvNet"]().fc.in_features == 64 * 14 * 14
    skipped_cells = {nb.locate(first)[0] for first, _, _ in plan.skipped}
    assert skipped_cells == {8}  # model, loop, save; the magics were blanked already


def fixed_copy(nb_dict, cell, line, new):
    fixed = copy.deepcopy(nb_dict)
    source = fixed["cells"][cell]["source"]
    if isinstance(source, list):
        source[line] = new + ("\n" if source[line].endswith("\n") else "")
    else:
        lines = source.split("\n")
        lines[line] = new
        fixed["cells"][cell]["source"] = "\n".join(lines)
    return fixed


def test_write_back_one_line_is_byte_identical_to_jupyter():
    raw = jupyter_bytes(TUTORIAL)
    nb = read_notebook(raw)
    lines = nb.script.split("\n")
    lines[17] = lines[17].replace("64 * 14 * 14", "64 * 16 * 16")
    out = write_notebook(nb, "\n".join(lines))
    new_line = "        self.fc = nn.Linear(64 * 16 * 16, num_classes)  # wrong: 12544"
    assert out == jupyter_bytes(fixed_copy(TUTORIAL, 6, 0, new_line))
    assert out.endswith(b"}\n")
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.reads(out.decode(), as_version=4))


def test_unchanged_script_writes_the_same_bytes():
    raw = jupyter_bytes(TUTORIAL)
    nb = read_notebook(raw)
    assert write_notebook(nb, nb.script) == raw


def test_other_writers_formatting_is_kept():
    # indent=2, keys unsorted, non-ASCII escaped, no trailing newline, a BOM
    raw = b"\xef\xbb\xbf" + json.dumps(TUTORIAL, indent=2).encode()
    nb = read_notebook(raw)
    assert nb.ensure_ascii
    lines = nb.script.split("\n")
    lines[8] = "num_classes = 100  # café"
    out = write_notebook(nb, "\n".join(lines))
    fixed = fixed_copy(TUTORIAL, 4, 0, "num_classes = 100  # café")
    assert out == b"\xef\xbb\xbf" + json.dumps(fixed, indent=2).encode()


def test_string_source_stays_a_string():
    nb_dict = notebook(code(["import torch.nn as nn", "layer = nn.Linear(3, 4)", ""],
                            as_string=True, count=1))
    raw = jupyter_bytes(nb_dict)
    nb = read_notebook(raw)
    assert nb.script == "import torch.nn as nn\nlayer = nn.Linear(3, 4)\n\n"
    out = write_notebook(nb, nb.script.replace("(3, 4)", "(5, 4)"))
    assert out == jupyter_bytes(fixed_copy(nb_dict, 0, 1, "layer = nn.Linear(5, 4)"))
    assert isinstance(json.loads(out)["cells"][0]["source"], str)


def test_trailing_newline_in_a_cell_is_an_empty_line_that_cannot_be_filled():
    nb_dict = notebook(code("x = 1\n", count=1), code("y = 2", count=2))
    nb = read_notebook(jupyter_bytes(nb_dict))
    assert nb.script == "x = 1\n\ny = 2\n"
    assert nb.locate(3) == (2, 1)
    out = write_notebook(nb, "x = 3\n\ny = 2\n")
    assert json.loads(out)["cells"][0]["source"] == ["x = 3\n"]
    with pytest.raises(ValueError, match="source list"):
        write_notebook(nb, "x = 1\nz = 0\ny = 2\n")


def test_line_count_changes_and_edits_to_blanked_lines_are_refused():
    nb = read_notebook(jupyter_bytes(TUTORIAL))
    with pytest.raises(ValueError, match="lines"):
        write_notebook(nb, nb.script + "extra = 1\n")
    lines = nb.script.split("\n")
    lines[0] = "import os"  # was %matplotlib inline
    with pytest.raises(ValueError, match="IPython"):
        write_notebook(nb, "\n".join(lines))


def test_magic_look_alikes_inside_strings_and_indented_magics():
    nb_dict = notebook(code([
        'doc = """',
        "%not a magic",
        '!still text"""',
        "if True:",
        "    %timeit f()",
        "ratio = 10 % 3  # what?",
        "x = 5 % 2",
    ]))
    nb = read_notebook(jupyter_bytes(nb_dict))
    assert nb.script.split("\n")[:6] == [
        'doc = """', "%not a magic", '!still text"""', "if True:", "    pass",
        "ratio = 10 % 3  # what?",
    ]
    compile(nb.script, "nb", "exec")


def test_empty_and_codeless_notebooks():
    nb = read_notebook(jupyter_bytes(notebook(markdown("only text"))))
    assert nb.script == "" and nb.line_count == 0
    assert write_notebook(nb, "") == jupyter_bytes(notebook(markdown("only text")))
    nb = read_notebook(jupyter_bytes(notebook(code(""))))
    assert nb.script == "\n" and nb.locate(1) == (1, 1)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"worksheets": []}', b"\xff\xfe"])
def test_not_a_notebook(raw):
    with pytest.raises(ValueError):
        read_notebook(raw)
