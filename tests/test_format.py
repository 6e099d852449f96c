"""black touches only the changed lines, with the project's [tool.black] settings."""

SOURCE = """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 20)
        self.b = nn.Linear(30, 5)
        self.unrelated   =   1  # black would change this line; dimfix must not

    def forward(self, x):
        return self.b(self.a(x))
"""


def test_project_line_length_is_honoured(tmp_path, cli):
    (tmp_path / "pyproject.toml").write_text("[tool.black]\nline-length = 20\n")
    (tmp_path / "net.py").write_text(SOURCE)
    run = cli(["net.py::Net", "--input", "2x10"], tmp_path)
    assert run.code == 0, run
    assert (tmp_path / "net.py").read_text() == SOURCE.replace(
        "        self.b = nn.Linear(30, 5)\n",
        "        self.b = nn.Linear(\n            20, 5\n        )\n",
    )


def test_no_format_keeps_the_edit_as_written(tmp_path, cli):
    (tmp_path / "net.py").write_text(SOURCE.replace("nn.Linear(30, 5)", "nn.Linear(30,5)"))
    run = cli(["net.py::Net", "--input", "2x10", "--no-format"], tmp_path)
    assert run.code == 0, run
    assert "nn.Linear(20,5)" in (tmp_path / "net.py").read_text()
