"""Bytes in, text out, and back: encoding, BOM, newlines and mode bits kept."""

from __future__ import annotations

import io
import os
import stat
import tempfile
import tokenize
from dataclasses import dataclass
from typing import Optional

from dimfix.errors import BadSource, WriteFailed


@dataclass(frozen=True)
class SourceFile:
    """A Python file as dimfix works on it.

    ``text`` uses ``\\n`` newlines when the file's newlines were uniform, so that
    black and diffs see ordinary text; ``encode`` restores the original ones.
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


def read_source(path: str) -> SourceFile:
    """Read and decode ``path`` the way Python itself would (PEP 263 cookie, BOM)."""
    shown = display_path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise BadSource(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise BadSource(f"{shown}: is a directory, not a Python file") from None
    except OSError as e:
        raise BadSource(f"{shown}: cannot read: {e.strerror}") from None
    return decode_source(path, raw)


def decode_source(path: str, raw: bytes) -> SourceFile:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        text = raw.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError) as e:
        reason = e.msg if isinstance(e, SyntaxError) else str(e)
        raise BadSource(f"{display_path(path)}: cannot decode: {reason}") from None
    if encoding == "utf-8-sig" and text.startswith("\ufeff"):
        text = text[1:]
    newline = _newline_style(text)
    if newline == "\r\n":
        text = text.replace("\r\n", "\n")
    return SourceFile(path, raw, text, encoding, newline)


def _newline_style(text: str) -> Optional[str]:
    crlf = text.count("\r\n")
    lf = text.count("\n") - crlf
    cr = text.count("\r") - crlf
    if cr:
        return None
    if crlf and lf:
        return None
    return "\r\n" if crlf else "\n"


def write_atomic(source: SourceFile, data: bytes) -> None:
    """Replace ``source.path`` with ``data`` atomically, keeping its mode bits.

    Refuses if the file changed on disk since it was read. A symlink is
    followed: its target is replaced and the link stays a link.
    """
    path = os.path.realpath(source.path)
    folder = os.path.dirname(path)
    shown = display_path(source.path)
    try:
        st = os.stat(path)
        if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            # Replacing the file would succeed in a writable folder; a read-only
            # file says "do not edit", so dimfix does not.
            raise WriteFailed(f"{shown}: the file is read-only; not written")
        with open(path, "rb") as f:
            if f.read() != source.raw:
                raise WriteFailed(
                    f"{shown}: changed on disk while dimfix ran; not written"
                )
        fd, tmp = tempfile.mkstemp(
            dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".dimfix"
        )
    except OSError as e:
        raise WriteFailed(f"{shown}: cannot write: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        if hasattr(os, "chown"):
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass  # not ours to give away; the mode bits are what matter
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise WriteFailed(f"{shown}: cannot write: {e.strerror}") from None
        raise


def display_path(path: str) -> str:
    """``path`` relative to the working folder when it is below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith(os.pardir) else rel

