"""Run black on the changed lines only, with the project's [tool.black] settings."""

from __future__ import annotations

import difflib
import os
import sys
from typing import List, Optional, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def format_edit(old: str, new: str, path: str) -> Tuple[str, str]:
    """``new`` (``old`` with dimfix's edits) with black run on the edited lines,
    and a note when they were left as dimfix wrote them.

    Formatting is confined to the edit: black runs only where the edited
    statements were black-formatted before (or the project declares
    [tool.black]), and its result is kept only if no line outside the edited
    ones changed: black formats whole statements, and re-indenting a
    tab-indented block or reflowing a 13-line call the user laid out by hand is
    not dimfix's to do.
    """
    if "\r" in old:
        return new, "mixed line endings: changed lines left unformatted"
    changes = _changes(old, new)
    ranges = [(j1 + 1, j2) for _, _, j1, j2 in changes if j2 > j1]
    if not ranges:
        return new, ""
    # Black parses the whole file each time (~0.25 s for 2300 lines): an edit
    # black leaves as it is needs no second run to learn whether the old
    # statements were formatted (the answer is ``new`` either way).
    formatted, note = format_ranges(new, ranges, path)
    if not note and formatted == new:
        return new, ""
    if _black_config(path) is None and not _was_formatted(
            old, [(i1 + 1, i2) for i1, i2, _, _ in changes if i2 > i1], path):
        return new, ""
    if note or formatted == new:
        return new, note
    if not _confined(new, formatted, ranges):
        return new, "black would change lines outside the edit; the edit is left as written"
    return formatted, ""


def changed_lines(old: str, new: str) -> List[Tuple[int, int]]:
    """1-based inclusive line ranges of ``new`` that differ from ``old``."""
    return [(j1 + 1, j2) for _, _, j1, j2 in _changes(old, new) if j2 > j1]


def _changes(old: str, new: str):
    # The file's own newline only: str.splitlines() would also split on \x0c,
    # \x1c-\x1e, \x85 and U+2028, which Python's tokenizer does not.
    matcher = difflib.SequenceMatcher(None, old.split("\n"), new.split("\n"), autojunk=False)
    return [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _was_formatted(old: str, ranges: List[Tuple[int, int]], path: str) -> bool:
    """Were the statements holding ``ranges`` black-stable before the edit?"""
    formatted, note = format_ranges(old, ranges, path)
    return not note and formatted == old


def _confined(new: str, formatted: str, ranges: List[Tuple[int, int]]) -> bool:
    """Did black change only lines inside ``ranges`` (1-based, inclusive)?"""
    edited = {line - 1 for a, b in ranges for line in range(a, b + 1)}
    for i1, i2, _, _ in _changes(new, formatted):
        touched = range(i1, i2) if i2 > i1 else (i1 - 1, i1)
        if i2 > i1 and not all(i in edited for i in touched):
            return False
        if i2 == i1 and not any(i in edited for i in touched):
            return False
    return True


def format_ranges(text: str, ranges: List[Tuple[int, int]], path: str) -> Tuple[str, str]:
    """``text`` with black applied to ``ranges``; and a note if black declined."""
    if not ranges:
        return text, ""
    try:
        import black
    except ImportError:  # pragma: no cover - black is a dependency
        return text, "black is not installed; changed lines left unformatted"
    mode = _black_mode(black, path)
    try:
        formatted = black.format_str(text, mode=mode, lines=ranges)
    except Exception as e:  # black's own errors: keep our edit as written
        return text, f"black could not format the changed lines: {type(e).__name__}: {e}"
    return _without_blank_line_changes(text, formatted), ""


def _without_blank_line_changes(before: str, after: str) -> str:
    """``after``, minus the blank lines black added or removed around a range.

    With ``lines=``, black also adjusts the empty lines before a formatted
    statement (e.g. adds one between ``class X:`` and its first ``def``); those
    are not the user's changed lines, so they are kept as they were.
    """
    old, new = before.split("\n"), after.split("\n")
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    out = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal" and all(not line.strip() for line in old[i1:i2] + new[j1:j2]):
            out.extend(old[i1:i2])
        else:
            out.extend(new[j1:j2])
    return "\n".join(out)


def _black_mode(black, path: str):
    config = _black_config(path) or {}
    kwargs = {}
    if "line-length" in config or "line_length" in config:
        kwargs["line_length"] = int(config.get("line-length", config.get("line_length")))
    if config.get("skip-string-normalization") or config.get("skip_string_normalization"):
        kwargs["string_normalization"] = False
    if config.get("skip-magic-trailing-comma") or config.get("skip_magic_trailing_comma"):
        kwargs["magic_trailing_comma"] = False
    if config.get("preview"):
        kwargs["preview"] = True
    versions = config.get("target-version", config.get("target_version"))
    if versions:
        known = {v.name.lower(): v for v in black.TargetVersion}
        kwargs["target_versions"] = {known[v.lower()] for v in versions if v.lower() in known}
    return black.Mode(**kwargs)


def _black_config(path: str) -> Optional[dict]:
    """[tool.black] of the nearest pyproject.toml above ``path``, as black finds it."""
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        candidate = os.path.join(folder, "pyproject.toml")
        if os.path.isfile(candidate):
            try:
                with open(candidate, "rb") as f:
                    data = tomllib.load(f)
            except (OSError, tomllib.TOMLDecodeError):
                return None
            return data.get("tool", {}).get("black")
        if os.path.isdir(os.path.join(folder, ".git")) or os.path.dirname(folder) == folder:
            return None
        folder = os.path.dirname(folder)
