"""What the user sees: the diff, one reason line per fix, a summary, and the
exit code. Only this module and cli.py print."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import List

import click

from dimfix.api import FixResult


def unified_diff(result: FixResult) -> str:
    old = result.source.text.splitlines(keepends=True)
    new = result.new_text.splitlines(keepends=True)
    lines = difflib.unified_diff(old, new, f"{result.path}", f"{result.path}  (fixed)")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


def colorize(diff: str) -> str:
    out = []
    for line in diff.splitlines(keepends=True):
        if line.startswith(("+++", "---")):
            out.append(click.style(line, bold=True))
        elif line.startswith("@@"):
            out.append(click.style(line, fg="cyan"))
        elif line.startswith("+"):
            out.append(click.style(line, fg="green"))
        elif line.startswith("-"):
            out.append(click.style(line, fg="red"))
        else:
            out.append(line)
    return "".join(out)


@dataclass
class Report:
    """Outcomes of a run, and the exit code they add up to (like black's Report)."""

    check: bool = False
    dry_run: bool = False
    fixed: int = 0
    pending: int = 0
    unfixable: int = 0
    failed: int = 0
    lines: List[str] = field(default_factory=list)

    def done(self, result: FixResult) -> None:
        if result.edits and result.changed:
            if self.check or self.dry_run:
                self.pending += len(result.edits)
            else:
                self.fixed += len(result.edits)
        self.unfixable += len(result.unfixable)

    @property
    def return_code(self) -> int:
        if self.failed:
            return 2
        if self.unfixable or (self.check and self.pending):
            return 1
        return 0

    def summary(self, path: str) -> str:
        parts = []
        if self.fixed:
            parts.append(f"{_n(self.fixed, 'fix')} written")
        if self.pending:
            how = "--check" if self.check else "--dry-run"
            parts.append(f"{_n(self.pending, 'fix')} pending, nothing written ({how})")
        if self.unfixable:
            parts.append(f"{_n(self.unfixable, 'mismatch', 'mismatches')} cannot be fixed")
        if not parts:
            parts.append("layer sizes are consistent, nothing to fix")
        return f"{path}: " + "; ".join(parts)


def _n(count: int, word: str, plural: str = "") -> str:
    return f"{count} {word if count == 1 else (plural or word + 'es')}"
