"""Bytes in, text out, and back: encoding, BOM, newlines and mode bits kept."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import stat
import tempfile
import threading
import tokenize
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

from dimfix.errors import BadSource, WriteFailed


@dataclass(frozen=True)
class SourceFile:
    """A Python file as dimfix works on it.

    ``text`` uses ``\\n`` newlines when the file's newlines were uniform (all
    ``\\n``, ``\\r\\n`` or ``\\r``), so that black and diffs see ordinary text;
    ``encode`` restores the original ones.
    A file with mixed newlines keeps them in ``text`` and has ``newline=None``.
    """

    path: str
    raw: bytes
    text: str
    encoding: str
    newline: Optional[str]

    def encode(self, text: str) -> bytes:
        if self.newline and self.newline != "\n":
            text = text.replace("\n", self.newline)
        return text.encode(self.encoding)

    def changed_parts(self, text: str) -> List[Tuple[str, str, str]]:
        """(where, old, new) for a diff: the whole file, named by its path alone."""
        return [("", self.text, text)]


@dataclass(frozen=True)
class NotebookFile(SourceFile):
    """A Jupyter notebook: ``text`` is the script of its code cells (notebook.py),
    and ``encode`` writes changed lines back into their cells, every other byte kept."""

    notebook: Any = None  # notebook.Notebook

    def encode(self, text: str) -> bytes:
        from dimfix.notebook import write_notebook

        try:
            return write_notebook(self.notebook, text)
        except ValueError as e:
            raise BadSource(f"{display_path(self.path)}: {e}; not written") from None

    def changed_parts(self, text: str) -> List[Tuple[str, str, str]]:
        new_lines = text.split("\n")
        parts = []
        for cell in self.notebook.cells:
            start = cell.first_line - 1
            new = [line if line != old else orig for line, old, orig in zip(
                new_lines[start:start + len(cell.lines)], cell.script_lines, cell.lines)]
            if new != list(cell.lines):
                parts.append((f":cell {cell.index + 1}", "\n".join(cell.lines) + "\n",
                              "\n".join(new) + "\n"))
        return parts


# Every file write_files replaced in this process, as shown: what a Ctrl-C
# arriving at any moment reports as written.
WRITTEN: List[str] = []
MAX_SOURCE_BYTES = 16 * 2**20  # no Python model file is larger; /dev/zero is


def read_source(path: str) -> SourceFile:
    """Read and decode ``path`` the way Python itself would (PEP 263 cookie, BOM).

    Regular files only: a FIFO would block forever and a device never ends."""
    shown = display_path(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise BadSource(f"{shown}: is a directory, not a Python file")
        if not stat.S_ISREG(st.st_mode):
            raise BadSource(f"{shown}: not a regular file (a FIFO, socket or device); not read")
        if st.st_size > MAX_SOURCE_BYTES:
            raise BadSource(f"{shown}: {st.st_size} bytes is too large for a Python model file")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_SOURCE_BYTES + 1)
    except FileNotFoundError:
        raise BadSource(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise BadSource(f"{shown}: is a directory, not a Python file") from None
    except OSError as e:
        raise BadSource(f"{shown}: cannot read: {e.strerror}") from None
    if b"\x00" in raw:
        line = raw[:raw.index(b"\x00")].count(b"\n") + 1
        raise BadSource(f"{shown}:{line}: cannot parse: the file contains a NUL byte")
    return decode_source(path, raw)


def decode_source(path: str, raw: bytes) -> SourceFile:
    if path.endswith(".ipynb"):
        return _decode_notebook(path, raw)
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        text = raw.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError) as e:
        reason = e.msg if isinstance(e, SyntaxError) else str(e)
        raise BadSource(f"{display_path(path)}: cannot decode: {reason}") from None
    if encoding == "utf-8-sig" and text.startswith("\ufeff"):
        text = text[1:]
    newline = _newline_style(text)
    if newline in ("\r\n", "\r"):
        text = text.replace(newline, "\n")
    return SourceFile(path, raw, text, encoding, newline)


def _decode_notebook(path: str, raw: bytes) -> NotebookFile:
    from dimfix.notebook import read_notebook

    try:
        notebook = read_notebook(raw)
    except ValueError as e:
        raise BadSource(f"{display_path(path)}: cannot read the notebook: {e}") from None
    return NotebookFile(path, raw, notebook.script, "utf-8", "\n", notebook)


def _newline_style(text: str) -> Optional[str]:
    """The file's one newline convention (``\\n``, ``\\r\\n`` or ``\\r``), or None if mixed."""
    crlf = text.count("\r\n")
    lf = text.count("\n") - crlf
    cr = text.count("\r") - crlf
    if sum(1 for n in (crlf, lf, cr) if n) > 1:
        return None
    return "\r\n" if crlf else "\r" if cr else "\n"


def write_atomic(source: SourceFile, data: bytes) -> None:
    """Replace ``source.path`` with ``data``; see ``write_files``."""
    write_files([(source, data)])


def write_files(changes: Sequence[Tuple[SourceFile, bytes]]) -> None:
    """Write every file of one fix, or none, and never lose a file's old text.

    Each new text goes to a temporary file beside its target first, keeping
    the mode bits (setuid and setgid included) and owner; a file with several
    hard links is rewritten in place instead (so every link sees the fix), and
    gets a backup copy of its old bytes beside it first. Then, with SIGINT and
    SIGTERM held back, each target is checked once more (size, mtime and bytes
    as read) and replaced. If anything fails, the files already replaced get
    their old bytes (and mtime) back, and the ``WriteFailed`` message says the
    state of every file: unchanged, restored, or where its old text is kept if
    even the restore failed. A symlink is followed: its target is replaced and
    the link stays a link.
    """
    staged: List[_Staged] = []
    try:
        for source, data in changes:
            try:
                staged.append(_stage(source, data))
            except WriteFailed as e:
                shown = display_path(source.path)
                raise WriteFailed(f"{e}; {_state(staged, f'{shown} is unchanged')}") from None
        with _signals_held():
            done: List[_Staged] = []
            try:
                for item in staged:
                    item.check()
                    done.append(item)
                    item.commit()
            except BaseException as e:
                for item in reversed(done):
                    item.rollback()
                if isinstance(e, WriteFailed):
                    raise WriteFailed(f"{e}; {_state(staged)}") from None
                raise
            # Still with the signals held: an interrupt delivered as they are
            # released must know these files were written.
            WRITTEN.extend(item.shown for item in done)
    finally:
        for item in staged:
            item.discard()


def _state(staged: Sequence["_Staged"], failed: str = "") -> str:
    """What a failed write left: ``nothing written: a.py restored, b.py is unchanged``."""
    parts = [item.state for item in staged] + ([failed] if failed else [])
    if any(item.lost for item in staged):
        return "; ".join(parts)
    return "nothing written" + (": " + ", ".join(parts) if parts else "")


@dataclass
class _Staged:
    source: SourceFile
    path: str  # the real path (symlinks followed)
    stat: os.stat_result
    tmp: Optional[str]  # the new text, beside the target; None when written in place
    data: bytes
    # The old text kept beside the target until the write is over: a copy for
    # a file written in place, a second hard link to the old file for one replaced.
    backup: Optional[str] = None
    touched: bool = False  # the target's bytes or inode were changed
    restored: bool = False
    lost: str = ""  # what the target holds when its old text could not be put back
    moved: bool = False  # another program changed the target meanwhile

    @property
    def shown(self) -> str:
        return display_path(self.source.path)

    @property
    def in_place(self) -> bool:
        """A file with several hard links keeps its inode: every link sees the fix."""
        return self.stat.st_nlink > 1

    @property
    def state(self) -> str:
        if self.lost:
            return self.lost
        if self.restored:
            return f"{self.shown} restored"
        return f"{self.shown} left as it is" if self.moved else f"{self.shown} is unchanged"

    def check(self) -> None:
        """Refuse if the file changed on disk since dimfix read it."""
        try:
            st = os.stat(self.path)
            with open(self.path, "rb") as f:
                current = f.read()
        except OSError as e:
            raise WriteFailed(f"{self.shown}: cannot write: {e.strerror}") from None
        if (st.st_size, st.st_mtime_ns) != (self.stat.st_size, self.stat.st_mtime_ns) \
                or current != self.source.raw:
            self.moved = True
            raise WriteFailed(f"{self.shown}: changed on disk while dimfix ran")

    def commit(self) -> None:
        try:
            if self.in_place:
                self._overwrite(self.data)
            else:
                self.backup = _link_beside(self.path)
                os.replace(self.tmp, self.path)
                self.tmp = None
                self.touched = True
        except OSError as e:
            raise WriteFailed(f"{self.shown}: cannot write: {e.strerror}") from None

    def _overwrite(self, data: bytes) -> None:
        """Write ``data`` over the target's bytes, same inode: the blocks a
        longer text needs are reserved before a byte changes."""
        fd = os.open(self.path, os.O_RDWR)
        try:
            _reserve(fd, len(data))
            self.touched = True
            view, offset = memoryview(data), 0
            while offset < len(data):
                offset += os.pwrite(fd, view[offset:], offset)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)

    def rollback(self) -> None:
        """Put the old bytes (and mtime) back; if that fails, say where they are."""
        if not self.touched:
            return
        try:
            if self.in_place:
                self._overwrite(self.source.raw)
                os.utime(self.path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))
            elif self.backup is not None:
                os.replace(self.backup, self.path)  # the old file itself, inode and all
                self.backup = None
            else:
                self.lost = f"{self.shown} keeps the fix (no hard link to restore it from)"
                return
        except OSError as e:
            if self.in_place:
                self.lost = (f"{self.shown} may be cut short ({e.strerror}): its old text is "
                             f"in {display_path(self.backup or '?')}")
            else:
                self.lost = f"{self.shown} keeps the fix (cannot restore: {e.strerror})"
            return
        self.restored = True

    def discard(self) -> None:
        """Remove the temporary files; a backup stays only when it holds the
        only copy of the old text (its restore failed)."""
        for name in (self.tmp, None if self.lost and self.in_place else self.backup):
            if name is not None:
                try:
                    os.unlink(name)
                except OSError:
                    pass
        self.tmp = None


def _reserve(fd: int, size: int) -> None:
    """Allocate the blocks for ``size`` bytes without changing the file's text:
    ENOSPC here leaves it as it was."""
    old = os.fstat(fd).st_size
    if size <= old or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, old, size - old)
    except OSError as e:
        if os.fstat(fd).st_size != old:
            os.ftruncate(fd, old)  # what it appended; the text before is untouched
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise


def _beside(path: str, kind: str) -> Tuple[int, str]:
    return tempfile.mkstemp(dir=os.path.dirname(path),
                            prefix=f".{os.path.basename(path)}.", suffix=f".dimfix-{kind}")


def _link_beside(path: str) -> Optional[str]:
    """A second name for the file at ``path`` (it takes no space), or None
    where the file system has no hard links."""
    fd, name = _beside(path, "backup")
    os.close(fd)
    os.unlink(name)
    try:
        os.link(path, name)
    except OSError:
        return None
    return name


def _stage(source: SourceFile, data: bytes) -> _Staged:
    path = os.path.realpath(source.path)
    shown = display_path(source.path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise WriteFailed(f"{shown}: cannot write: {e.strerror}") from None
    if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        # Replacing the file would succeed in a writable folder; a read-only
        # file says "do not edit", so dimfix does not.
        raise WriteFailed(f"{shown}: the file is read-only")
    if st.st_nlink > 1:
        if not os.access(path, os.W_OK):
            raise WriteFailed(f"{shown}: cannot write: Permission denied")
        # The old text on disk under a second name before a byte of it changes
        # (a private copy: no setuid bits on it).
        staged = _Staged(source, path, st, None, data)
        staged.backup = _write_beside(path, source.raw, None, "backup", shown)
        return staged
    return _Staged(source, path, st, _write_beside(path, data, st, "new", shown), data)


def _write_beside(path: str, data: bytes, st: Optional[os.stat_result], kind: str,
                  shown: str) -> str:
    """A temporary file beside ``path`` holding ``data`` on disk (fsynced), with
    the owner and mode bits of ``st`` if given."""
    try:
        fd, tmp = _beside(path, kind)
    except OSError as e:
        raise WriteFailed(f"{shown}: cannot write: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if st is not None and hasattr(os, "chown"):
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass  # not ours to give away; the mode bits are what matter
        if st is not None:  # after chown, which clears the setuid and setgid bits
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise WriteFailed(f"{shown}: cannot write: {e.strerror}") from None
        raise
    return tmp


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait until the files are replaced (or restored)."""
    held = {signal.SIGINT, signal.SIGTERM}
    main = threading.current_thread() is threading.main_thread()
    if main and hasattr(signal, "pthread_sigmask"):
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    else:
        yield


def display_path(path: str) -> str:
    """``path`` relative to the working folder when it is below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith(os.pardir) else rel
