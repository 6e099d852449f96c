"""What the user sees: diffs, one reason line per fix, errors, a summary, and
the exit code (text); or one JSON document; or ``path:line:col: DIM00N``
lines for editors. Only this module and cli.py print.

Records arrive typed (session.FileFix); every message line is written here,
from their fields: ``place`` turns a Position into what the user reads
(``nb.ipynb:cell 4:2:9`` in a notebook), ``fix_line``/``cannot_fix_line``/
``problem_line`` the lines the text, lines and JSON formats share (the
language server and the shape table use them too).
"""

from __future__ import annotations

import difflib
import enum
import json
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Mapping, Optional, Tuple

import click

from dimfix.errors import ErrorKind, Position, Problem, where_text
from dimfix.records import Edit, Note, Unfixable
from dimfix.session import FileFix, ModelFix, Status
from dimfix.source import NotebookFile, SourceFile, display_path

# Codes for --format lines (and the "code" field of JSON entries).
FIXABLE, CANNOT_FIX, FAILED = "DIM001", "DIM002", "DIM003"
JSON_VERSION = 1


class Mode(enum.Enum):
    WRITE = "write"
    CHECK = "check"
    DRY_RUN = "dry-run"


class Format(enum.Enum):
    TEXT = "text"
    JSON = "json"
    LINES = "lines"


# -- places and lines, shared by every renderer --------------------------------------------


def place(where: Position, sources: Mapping[str, SourceFile] = ()) -> Tuple[str, int, int]:
    """(file as shown, line, col) of ``where``: a notebook's script line becomes
    the cell (``nb.ipynb:cell 4``) and the line in it."""
    shown = display_path(where.path)
    source = dict(sources).get(where.path)
    if isinstance(source, NotebookFile) and where.line:
        try:
            cell, line = source.notebook.locate(where.line)
        except ValueError:
            return shown, where.line, where.col
        return f"{shown}:cell {cell}", line, where.col
    return shown, where.line, where.col


def place_text(where: Optional[Position], sources: Mapping[str, SourceFile] = ()) -> str:
    if where is None:
        return ""
    shown, line, col = place(where, sources)
    return where_text(Position(where.path, line, col), shown)


def fix_line(edit: Edit) -> str:
    """A fix's reason, after its place."""
    return edit.reason


def cannot_fix_line(item: Unfixable, more: int = 0) -> str:
    """Why a mismatch cannot be fixed, after its place and ``cannot fix: ``;
    ``more``: other layers built by the same call, refused alike."""
    m = item.mismatch
    built = f" (and {more} more built here)" if more else ""
    return (f"{m.layer_path} ({m.kind}){built} {m.arg} {m.declared} -> {m.observed} "
            f"({m.why}): {item.reason}")


def one_per_place(items) -> List[Tuple[Unfixable, int]]:
    """The refusals of the layers one call built (a comprehension, a loop), for
    the same argument and reason: the first of each, and how many more."""
    first: Dict[tuple, Unfixable] = {}
    counts: Dict[tuple, int] = {}
    for item in items:
        key = (item.position, item.mismatch.arg, item.reason) if item.line else (id(item),)
        first.setdefault(key, item)
        counts[key] = counts.get(key, 0) + 1
    return [(item, counts[key] - 1) for key, item in first.items()]


def problem_line(problem: Problem, sources: Mapping[str, SourceFile] = ()) -> str:
    """A failure: ``place: message``, or the message alone."""
    problem = _in_cells(problem, sources)
    where = place_text(problem.where, sources)
    return f"{where}: {problem.message}" if where else problem.message


# A line Python's parser names in its message: "after function definition on line
# 12", "(detected at line 14)", "opening parenthesis '(' on line 3".
_LINE_REF = re.compile(r"\b(on|at) line (\d+)")


def _in_cells(problem: Problem, sources: Mapping[str, SourceFile]) -> Problem:
    """A notebook that does not parse: the lines its message names are lines of
    the joined script; say them as the cell's. When the parser names the line a
    block is missing after ("on line 12", the def ending a cell) and found the
    gap in a later cell, the error is placed at that line, in its own cell."""
    where = problem.where
    source = dict(sources).get(where.path) if where is not None and where.line else None
    if not isinstance(source, NotebookFile) or problem.kind is not ErrorKind.BAD_SOURCE:
        return problem
    nb = source.notebook

    def cell_of(line: int):
        try:
            return nb.locate(line)
        except ValueError:
            return None

    found = cell_of(where.line)
    named = [int(m[2]) for m in _LINE_REF.finditer(problem.message) if m[1] == "on"]
    if found and named and cell_of(named[0]) and cell_of(named[0])[0] != found[0]:
        where = Position(where.path, named[0], 0)
        found = cell_of(named[0])

    def said(m: "re.Match") -> str:
        at = cell_of(int(m[2]))
        if at is None:
            return m[0]
        return f"{m[1]} line {at[1]}" if found and at[0] == found[0] \
            else f"{m[1]} line {at[1]} of cell {at[0]}"

    return replace(problem, message=_LINE_REF.sub(said, problem.message), where=where)


def note_line(note: Note, sources: Mapping[str, SourceFile] = ()) -> str:
    where = place_text(note.where, sources)
    return f"{where}: {note.text}" if where else note.text


# -- diffs ---------------------------------------------------------------------------------


def unified_diff(display: str, old_text: str, new_text: str) -> str:
    old, new = _lines(old_text), _lines(new_text)
    lines = difflib.unified_diff(old, new, display, f"{display}  (fixed)")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


def file_diff(source, new_text: str) -> str:
    """The diff of one file: a notebook's names each changed cell (``nb.ipynb:cell 4``)."""
    display = display_path(source.path)
    return "".join(unified_diff(f"{display}{where}", old, new)
                   for where, old, new in source.changed_parts(new_text))


def _lines(text: str) -> List[str]:
    """Lines by ``\\n`` alone: str.splitlines() also splits on \\x0c and U+2028."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    return lines + [parts[-1]] if parts[-1] else lines


def colorize(diff: str) -> str:
    styles = (("+++", dict(bold=True)), ("---", dict(bold=True)), ("@@", dict(fg="cyan")),
              ("+", dict(fg="green")), ("-", dict(fg="red")))
    out = []
    for line in diff.splitlines(keepends=True):
        style = next((s for prefix, s in styles if line.startswith(prefix)), None)
        out.append(click.style(line, **style) if style else line)
    return "".join(out)


# -- the report ----------------------------------------------------------------------------


@dataclass
class Report:
    """Collects outcomes, prints as they come, and owns the exit code."""

    mode: Mode = Mode.WRITE
    fmt: Format = Format.TEXT
    color: bool = False
    verbose: bool = False
    single: bool = False  # one model named on the command line: terse, as in v1
    quiet: bool = False  # -q: errors, cannot-fix lines and asked-for diffs only
    # Editor mode: stdout carries the buffer alone, so the JSON document and
    # the DIM lines go to stderr.
    buffer_on_stdout: bool = False
    diff: bool = False  # --diff with --check: the diffs too, as black and ruff print them
    models: List[dict] = field(default_factory=list)  # JSON entries, in order
    counts: Dict[str, int] = field(default_factory=lambda: dict(fixed=0, pending=0, clean=0,
                                                                cannot_fix=0, failed=0))
    fixes: int = 0  # fixes reported (pending ones, when nothing is written)
    files: List[set] = field(default_factory=list)  # per model: the files its edits are in

    # -- collecting ------------------------------------------------------------------------

    def add(self, fix: FileFix, diff: Optional[str] = None) -> None:
        for model in fix.models:
            status = model.status
            key = {Status.FAILED: "failed", Status.CANNOT_FIX: "cannot_fix",
                   Status.CLEAN: "clean"}.get(status,
                                              "fixed" if self.mode is Mode.WRITE else "pending")
            self.counts[key] += 1
            self.fixes += len(model.edits)
            self.models.append(self._json_model(fix, model))
            self.files.append({e.path for e in model.edits})
        if self.fmt is Format.TEXT:
            self._text(fix, diff)
        elif self.fmt is Format.LINES:
            self._lines(fix)

    # -- the end -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self.fixes if self.mode is not Mode.WRITE else 0

    @property
    def return_code(self) -> int:
        if self.counts["failed"]:
            return 2
        if self.counts["cannot_fix"] or (self.mode is Mode.CHECK and self.pending):
            return 1
        return 0

    def finish(self) -> int:
        code = self.return_code
        if self.fmt is Format.JSON:
            summary = dict(self.counts, models=len(self.models))
            doc = {"version": JSON_VERSION, "models": self.models, "summary": summary,
                   "exit_code": code}
            click.echo(json.dumps(doc, indent=2), err=self.buffer_on_stdout)
        elif self.fmt is Format.TEXT and not (self.single and self.counts["failed"]) \
                and not self._one_failure() and not self.quiet:
            click.echo(self._summary(), err=True)
        return code

    def _one_failure(self) -> bool:
        """A run of one model that failed (a folder's, a file's, stdin's): its
        error line is the one line an error gets; "1 model failed." adds nothing."""
        return len(self.models) == 1 and self.counts["failed"] == 1

    def _summary(self) -> str:
        c = self.counts
        if self.single and self.models:
            return self._single_summary()
        if not self.models:
            return "no models found (mark one with a '# dimfix:' pragma or [tool.dimfix])"
        parts = []
        how = "fixed" if self.mode is Mode.WRITE else "would be fixed"
        for key, label in (("fixed", how), ("pending", how), ("clean", "clean"),
                           ("cannot_fix", "cannot fix"), ("failed", "failed")):
            if c[key]:
                noun = "model" if c[key] == 1 else "models"
                parts.append(f"{c[key]} {noun} {label}" if not parts else f"{c[key]} {label}")
        return ", ".join(parts) + ("." if parts else "")

    def _single_summary(self) -> str:
        model = dict(self.models[0], files=self.files[0])
        fixes, cannot = len(model["fixes"]), len(model["cannot_fix"])
        parts = []
        if fixes:
            word = "fix" if fixes == 1 else "fixes"
            # A value written in another project file is fixed there: say where.
            files = {display_path(f) for f in model["files"]}
            others = ", ".join(sorted(files - {model["file"]}))
            where = "" if not others else f" (in {others})" if model["file"] not in files \
                else f" (also in {others})"
            if self.mode is Mode.WRITE:
                parts.append(f"{fixes} {word} written{where}")
            else:
                parts.append(f"{fixes} {word} pending{where}, nothing written "
                             f"(--{self.mode.value})")
        if cannot:
            parts.append(f"{cannot} mismatch{'es' if cannot > 1 else ''} cannot be fixed")
        if not parts:
            parts.append("layer sizes are consistent, nothing to fix")
        return f"{model['file']}: " + "; ".join(parts)

    # -- formats ------------------------------------------------------------------------------

    def _text(self, fix: FileFix, diff: Optional[str]) -> None:
        display = display_path(fix.path)
        if diff and (self.mode is not Mode.CHECK or self.diff) \
                and not (self.quiet and self.mode is Mode.WRITE):
            # color= forces escapes into a pipe when --color was given
            click.echo(colorize(diff) if self.color else diff, nl=False, color=self.color)
        for model in fix.models:
            if self.verbose and model.device:
                click.echo(f"{display}::{model.name}: traced on {model.device}", err=True)
            for note in model.notes if self.verbose else ():
                click.echo(f"{display}: note: {note_line(note, fix.sources)}", err=True)
            printed = model.printed or (model.problem.printed if model.problem else "")
            if self.verbose and printed:
                click.echo(f"{display}::{model.name}: the model's code printed:", err=True)
                click.echo(printed.rstrip("\n"), err=True)
            for edit in model.edits if not self.quiet else ():
                click.echo(f"{place_text(edit.position, fix.sources)}: {fix_line(edit)}",
                           err=True)
            for item, more in one_per_place(model.unfixable):
                where = place_text(item.position, fix.sources)
                click.echo(f"{where}: cannot fix: {cannot_fix_line(item, more)}", err=True)
            if model.problem is not None:
                if self.verbose and model.problem.detail:
                    click.echo(model.problem.detail.rstrip(), err=True)
                prefix = "dimfix: error: " if self.single else f"{display}::{model.name}: error: "
                click.echo(prefix + problem_line(model.problem, fix.sources), err=True)

    def _lines(self, fix: FileFix) -> None:
        err = self.buffer_on_stdout
        for model in fix.models:
            for edit in model.edits:
                click.echo(f"{_at(edit.position, fix)}: {FIXABLE} {fix_line(edit)}", err=err)
            for item, more in one_per_place(model.unfixable):
                click.echo(f"{_at(item.position, fix)}: {CANNOT_FIX} cannot fix: "
                           f"{cannot_fix_line(item, more)}", err=err)
            if model.problem is not None:
                where = model.problem.where
                where = where if where is not None and where.line else Position(fix.path)
                click.echo(f"{_at(where, fix)}: {FAILED} {model.name}: "
                           f"{problem_line(model.problem, fix.sources)}", err=err)

    def _json_model(self, fix: FileFix, model: ModelFix) -> dict:
        status = model.status.value
        if model.status is Status.FIXED and self.mode is not Mode.WRITE:
            status = "would-fix"
        error = None
        if model.problem is not None:
            error = {"kind": model.problem.kind.value,
                     "message": problem_line(model.problem, fix.sources)}
        return {
            "file": display_path(fix.path),
            "name": model.name,
            "status": status,
            "device": model.device or None,
            "fixes": [dict(_entry(e, fix, e.new_code), code=FIXABLE) for e in model.edits],
            "cannot_fix": [dict(_entry(u, fix, None), code=CANNOT_FIX) for u in model.unfixable],
            "error": error,
        }


def _at(where: Position, fix: FileFix) -> str:
    """``file:line:col`` for problem matchers: line and column at least 1."""
    shown, line, col = place(where, fix.sources)
    return f"{shown}:{line or 1}:{col or 1}"


def _entry(item, fix: FileFix, code: Optional[str]) -> dict:
    def plain(v):
        return list(v) if isinstance(v, tuple) else v

    m = item.mismatch
    shown, line, col = place(item.position, fix.sources)
    if isinstance(item, Edit):
        reason = f"{place_text(item.position, fix.sources)}: {fix_line(item)}"
    else:
        reason = cannot_fix_line(item)
    entry = {"file": shown, "line": line, "col": col, "layer": m.layer_path, "kind": m.kind,
             "argument": m.arg, "old": plain(m.declared), "new": plain(m.observed),
             "reason": reason}
    if code is not None:
        entry["replacement"] = code
    return entry


__all__ = ["CANNOT_FIX", "FAILED", "FIXABLE", "Format", "Mode", "Report", "cannot_fix_line",
           "file_diff", "fix_line", "note_line", "place", "place_text", "problem_line",
           "unified_diff"]
