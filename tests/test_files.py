"""Nothing lost: encodings, BOM, newlines, modes, links; atomic, verified writes."""

import os
import stat

import pytest

from dimfix.errors import WriteFailed
from conftest import ROOT
from dimfix.source import read_source, write_atomic, write_files

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
    assert run.stderr.splitlines()[-1] == (
        "dimfix: error: net.py: cannot write: Permission denied; nothing written: "
        "net.py is unchanged")
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
    assert run.stderr.splitlines()[-1] == (
        "dimfix: error: net.py: the file is read-only; nothing written: net.py is unchanged")
    assert path.read_bytes() == data
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444


# -- a full disk: the old text is never lost ---------------------------------------------------


def _linked(tmp_path):
    """net.py with a second hard link: it is rewritten in place."""
    path, data = _write(tmp_path)
    os.link(path, tmp_path / "twin.py")
    return path, data, read_source(str(path))


def _grown(data):
    # Longer than the old text: the write needs blocks the file does not have yet.
    return _fixed(data).replace(b"# plain", b"# plain" + b" " * 5000)


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_disk_full_half_way_through_an_in_place_write_restores_both_links(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, data, source = _linked(tmp_path)
    mtime = os.stat(path).st_mtime_ns
    real_pwrite = os.pwrite
    calls = []

    def full(fd, chunk, offset):  # half the text lands, then the disk is full
        calls.append(offset)
        if len(calls) == 1:
            real_pwrite(fd, bytes(chunk[:len(chunk) // 2]), offset)
            raise OSError(28, "No space left on device")
        return real_pwrite(fd, chunk, offset)

    monkeypatch.setattr(os, "pwrite", full)
    monkeypatch.setattr(os, "posix_fallocate", lambda *a: None)  # as if it had room
    with pytest.raises(WriteFailed) as failed:
        write_atomic(source, _grown(data))
    assert str(failed.value) == ("net.py: cannot write: No space left on device; nothing written: "
                                 "net.py restored")
    assert path.read_bytes() == data and (tmp_path / "twin.py").read_bytes() == data
    assert os.stat(path).st_mtime_ns == mtime
    assert _names(tmp_path) == ["net.py", "twin.py"]  # the backup is gone too


def test_no_room_for_a_longer_text_is_found_before_a_byte_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, data, source = _linked(tmp_path)

    def full(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(WriteFailed) as failed:
        write_atomic(source, _grown(data))
    assert str(failed.value).endswith("; nothing written: net.py is unchanged")
    assert path.read_bytes() == data and _names(tmp_path) == ["net.py", "twin.py"]


def test_no_room_for_the_backup_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, data, source = _linked(tmp_path)
    real_fsync = os.fsync

    def full(fd):
        real_fsync(fd)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteFailed) as failed:
        write_atomic(source, _fixed(data))
    assert str(failed.value) == ("net.py: cannot write: No space left on device; nothing written: "
                                 "net.py is unchanged")
    assert path.read_bytes() == data and _names(tmp_path) == ["net.py", "twin.py"]


def test_a_restore_that_fails_too_says_where_the_old_text_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, data, source = _linked(tmp_path)

    def broken(fd, chunk, offset):
        os.ftruncate(fd, 10)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "pwrite", broken)
    with pytest.raises(WriteFailed) as failed:
        write_atomic(source, _fixed(data))
    message = str(failed.value)
    assert message.startswith("net.py: cannot write: Input/output error; net.py may be cut short "
                              "(Input/output error): its old text is in .net.py."), message
    backup = tmp_path / message.rsplit(" ", 1)[1]
    assert backup.read_bytes() == data


def test_a_failed_second_file_puts_the_first_back_as_it_was(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, data = _write(tmp_path)
    second = tmp_path / "layers.py"
    second.write_bytes(b"WIDTH = 3\n")
    inode, mtime = os.stat(first).st_ino, os.stat(first).st_mtime_ns
    changes = [(read_source(str(first)), _fixed(data)), (read_source(str(second)), b"WIDTH = 4\n")]
    real_replace = os.replace

    def second_fails(src, dst):
        if str(dst).endswith("layers.py"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(WriteFailed) as failed:
        write_files(changes)
    assert str(failed.value) == ("layers.py: cannot write: No space left on device; nothing "
                                 "written: net.py restored, layers.py is unchanged")
    st = os.stat(first)
    assert (first.read_bytes(), st.st_ino, st.st_mtime_ns) == (data, inode, mtime)
    assert _names(tmp_path) == ["layers.py", "net.py"]


FULL_DISK = r"""
import os, subprocess, sys
folder = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", folder], check=True)
text = open(os.path.join(sys.argv[2], "net.py"), "rb").read()
path = os.path.join(folder, "net.py")
with open(path, "wb") as f:
    f.write(text + b"#" * (8192 - len(text) - 1) + b"\n")  # two whole pages
os.link(path, os.path.join(folder, "twin.py"))
with open(os.path.join(folder, "filler"), "wb", buffering=0) as f:  # the rest of the disk
    try:
        while True:
            f.write(b"x" * 4096)
    except OSError:
        pass
before = open(path, "rb").read()
run = subprocess.run([sys.executable, "-m", "dimfix", "net.py::Net", "--input", "2x10",
                      "--init", "wide=True"], cwd=folder, capture_output=True, text=True)
after = [open(os.path.join(folder, n), "rb").read() == before for n in ("net.py", "twin.py")]
print(run.returncode, after, sorted(os.listdir(folder)), repr(run.stderr.splitlines()[-1]))
"""


def test_a_really_full_disk_keeps_a_hard_linked_file(tmp_path):
    """A real tmpfs, full but for the file: the fix needs one more page."""
    import shutil
    import subprocess
    import sys

    if not shutil.which("unshare"):
        pytest.skip("no unshare to mount a small tmpfs")
    (tmp_path / "src").mkdir()
    # The fix makes the file longer: Linear(30 if not wide ...) -> a longer literal.
    (tmp_path / "src" / "net.py").write_text(BROKEN.format(cookie="", comment="plain").replace(
        "class Net(nn.Module):\n    def __init__(self):",
        "class Net(nn.Module):\n    def __init__(self, wide=False):").replace(
        "nn.Linear(10, 20)", "nn.Linear(10, 2000 if wide else 20)"))
    (tmp_path / "disk").mkdir()
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode:
        pytest.skip("cannot mount a tmpfs here (no user namespaces)")
    run = subprocess.run(["unshare", "-rm", sys.executable, "-c", FULL_DISK,
                          str(tmp_path / "disk"), str(tmp_path / "src")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if "mount" in run.stderr and run.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
    assert run.stdout.strip() == (
        "2 [True, True] ['filler', 'net.py', 'twin.py'] 'dimfix: error: net.py: cannot write: "
        "No space left on device; nothing written: net.py is unchanged'"), run
