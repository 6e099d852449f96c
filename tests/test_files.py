"""Nothing lost: encodings, BOM, newlines, modes, links; atomic, verified writes."""

import os
import stat

import pytest

from dimfix.errors import WriteFailed
from dimfix.source import read_source, write_atomic

BROKEN = """\
{cookie}import torch.nn as nn

# {comment}
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 20)
        self.b = nn.Linear(30, 5)

    def forward(self, x):
        return self.b(self.a(x))
"""
ARGS = ["net.py::Net", "--input", "2x10"]


def _write(folder, encoding="utf-8", newline="\n", bom=False, cookie="", comment="plain"):
    text = BROKEN.format(cookie=cookie, comment=comment).replace("\n", newline)
    data = text.encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    path = folder / "net.py"
    path.write_bytes(data)
    return path, data


def _fixed(data: bytes, encoding="utf-8") -> bytes:
    return data.replace("nn.Linear(30, 5)".encode(encoding), "nn.Linear(20, 5)".encode(encoding))


@pytest.mark.parametrize(
    "kind",
    [
        dict(),
        dict(newline="\r\n"),
        dict(bom=True),
        dict(bom=True, newline="\r\n", comment="größe"),
        dict(encoding="latin-1", cookie="# -*- coding: latin-1 -*-\n", comment="café"),
    ],
    ids=["utf8", "crlf", "bom", "bom-crlf-nonascii", "latin1-cookie"],
)
def test_encoding_bom_and_newlines_are_kept(kind, tmp_path, cli):
    path, data = _write(tmp_path, **kind)
    run = cli(ARGS, tmp_path)
    assert run.code == 0, run
    assert path.read_bytes() == _fixed(data, kind.get("encoding", "utf-8"))


def test_mixed_newlines_are_kept(tmp_path, cli):
    path, data = _write(tmp_path)
    data = data.replace(b"nn.Linear(10, 20)\n", b"nn.Linear(10, 20)\r\n")
    path.write_bytes(data)
    assert cli(ARGS, tmp_path).code == 0
    assert path.read_bytes() == _fixed(data)


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o755])
def test_mode_bits_are_kept(mode, tmp_path, cli):
    path, _ = _write(tmp_path)
    os.chmod(path, mode)
    assert cli(ARGS, tmp_path).code == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


def test_symlink_edits_the_target_and_stays_a_link(tmp_path, cli):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target, data = _write(real_dir)
    (tmp_path / "net.py").symlink_to(target)
    assert cli(ARGS, tmp_path).code == 0
    assert (tmp_path / "net.py").is_symlink()
    assert target.read_bytes() == _fixed(data)


def test_no_temp_file_is_left(tmp_path, cli):
    _write(tmp_path)
    assert cli(ARGS, tmp_path).code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("__")) == ["net.py"]


def test_file_changed_on_disk_is_not_overwritten(tmp_path):
    path, data = _write(tmp_path)
    source = read_source(str(path))
    path.write_bytes(data + b"# edited meanwhile\n")
    with pytest.raises(WriteFailed, match="changed on disk"):
        write_atomic(source, b"new")
    assert path.read_bytes() == data + b"# edited meanwhile\n"


def test_failed_replace_keeps_original_and_leaves_no_temp(tmp_path, monkeypatch):
    path, data = _write(tmp_path)
    source = read_source(str(path))

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(WriteFailed, match="No space left"):
        write_atomic(source, b"new")
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["net.py"]


def test_unwritable_folder_is_a_clear_error(tmp_path, cli, monkeypatch):
    # Simulated: the tests may run as root, which ignores folder permissions.
    import tempfile

    path, data = _write(tmp_path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    run = cli(ARGS, tmp_path)
    assert run.code == 2, run
    assert run.stderr.splitlines()[-1] == "dimfix: error: net.py: cannot write: Permission denied"
    assert path.read_bytes() == data


def test_interrupt_during_write_keeps_original(tmp_path, monkeypatch):
    path, data = _write(tmp_path)
    source = read_source(str(path))
    real_fsync = os.fsync

    def interrupted(fd):
        real_fsync(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(source, b"new")
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["net.py"]


def test_read_only_file_is_not_edited(tmp_path, cli):
    path, data = _write(tmp_path)
    os.chmod(path, 0o444)
    run = cli(ARGS, tmp_path)
    assert run.code == 2, run
    assert run.stderr.splitlines()[-1] == "dimfix: error: net.py: the file is read-only; not written"
    assert path.read_bytes() == data
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
