"""The model zoo: one batch over a copy with several models broken.

dimfix's click command runs in this process (the ``cli`` fixture): the batch
and its pool fork their children as ``python -m dimfix`` would; what a real
process adds (exit status, streams, signals) is tested in test_batch.py and
test_hostile.py.
"""

import shutil

import pytest

from conftest import FIXTURES

ZOO = FIXTURES / "zoo"

# Edits a person makes, in several files; two models of gan.py are broken at once.
BREAKS = [
    ("vgg.py", "nn.Linear(64 * 4 * 4, 128)", "nn.Linear(64 * 7 * 7, 128)"),
    ("lstm_text.py", "nn.Linear(hidden_size * 2,", "nn.Linear(hidden_size * 4,"),
    ("mlp.py", "dims = [784, 128, num_classes]", "dims = [748, 128, num_classes]"),
    ("gan.py", "nn.BatchNorm2d(ngf * 2)", "nn.BatchNorm2d(ngf * 3)"),
    ("gan.py", "nn.Linear(ndf * 4 * 4 * 4, 1)", "nn.Linear(ndf * 4 * 8 * 8, 1)"),
    ("resnet.py", "self.stem = conv_bn(3, 16)", "self.stem = conv_bn(1, 16)"),
    ("unet.py", "nn.ConvTranspose2d(64, 32,", "nn.ConvTranspose2d(128, 32,"),
    ("lenet.py", "x.view(-1, 16 * 5 * 5)", "x.view(-1, 16 * 4 * 4)"),
]


@pytest.fixture
def zoo(tmp_path):
    root = tmp_path / "zoo"
    shutil.copytree(ZOO, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".git").mkdir()
    return root


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.py"))}


def test_the_zoo_is_clean(zoo, cli):
    run = cli(["models", "--check"], zoo)
    assert run.code == 0, run
    assert run.stderr.splitlines()[-1] == "29 models clean.", run


def test_one_batch_restores_every_broken_model(zoo, cli):
    original = _files(zoo)
    for name, old, new in BREAKS:
        path = zoo / "models" / name
        text = path.read_text()
        assert text.count(old) == 1, (name, old)
        path.write_text(text.replace(old, new))
    broken = _files(zoo)

    check = cli(["models", "--check", "--jobs", "2"], zoo)
    assert check.code == 1, check
    assert _files(zoo) == broken

    run = cli(["models", "--jobs", "2"], zoo)
    assert run.code == 0, run
    assert _files(zoo) == original, run  # byte for byte the zoo test_the_zoo_is_clean checks
    assert "failed" not in run.stderr
