"""What the user sees: diffs, one reason line per fix, errors, a summary, and
the exit code (text); or one JSON document; or ``path:line:col: DIM00N``
lines for editors. Only this module and cli.py print."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import List, Optional

import click

from dimfix.batch import ModelOutcome, Outcome
from dimfix.source import display_path

# Codes for --format lines (and the "code" field of JSON entries).
FIXABLE, CANNOT_FIX, FAILED = "DIM001", "DIM002", "DIM003"
JSON_VERSION = 1


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


def status(model: ModelOutcome) -> str:
    if model.error:
        return "failed"
    if model.cannot_fix:
        return "cannot-fix"
    return "fixed" if model.fixes else "clean"


@dataclass
class Report:
    """Collects outcomes, prints as they come, and owns the exit code."""

    mode: str = "write"  # write, check, dry-run
    fmt: str = "text"  # text, json, lines
    color: bool = False
    verbose: bool = False
    single: bool = False  # one model named on the command line: terse, as in v1
    quiet: bool = False  # -q: errors, cannot-fix lines and asked-for diffs only
    models: List[dict] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: dict(fixed=0, pending=0, clean=0,
                                                      cannot_fix=0, failed=0))

    # -- collecting ------------------------------------------------------------------------

    def add(self, outcome: Outcome, diff: Optional[str] = None) -> None:
        for model in outcome.models:
            state = status(model)
            key = {"failed": "failed", "cannot-fix": "cannot_fix", "clean": "clean"}.get(
                state, "fixed" if self.mode == "write" else "pending")
            self.counts[key] += 1
            self.models.append(self._json_model(outcome, model, state))
        if self.fmt == "text":
            self._text(outcome, diff)
        elif self.fmt == "lines":
            self._lines(outcome)

    def fail_file(self, outcome: Outcome, error: dict) -> Outcome:
        """A write that failed: every model of the file is reported failed."""
        models = tuple(ModelOutcome(m.name, error=error) for m in outcome.models)
        return Outcome(outcome.path, outcome.display, models)

    # -- the end -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return sum(len(m["fixes"]) for m in self.models) if self.mode != "write" else 0

    @property
    def return_code(self) -> int:
        if self.counts["failed"]:
            return 2
        if self.counts["cannot_fix"] or (self.mode == "check" and self.pending):
            return 1
        return 0

    def finish(self) -> int:
        code = self.return_code
        if self.fmt == "json":
            summary = dict(self.counts, models=len(self.models))
            doc = {"version": JSON_VERSION, "models": self.models, "summary": summary,
                   "exit_code": code}
            click.echo(json.dumps(doc, indent=2))
        elif self.fmt == "text" and not (self.single and self.counts["failed"]) and not self.quiet:
            click.echo(self._summary(), err=True)
        return code

    def _summary(self) -> str:
        c = self.counts
        if self.single and self.models:
            return self._single_summary()
        if not self.models:
            return "no models found (mark one with a '# dimfix:' pragma or [tool.dimfix])"
        parts = []
        how = {"write": "fixed", "check": "would be fixed", "dry-run": "would be fixed"}[self.mode]
        for key, label in (("fixed", how), ("pending", how), ("clean", "clean"),
                           ("cannot_fix", "cannot fix"), ("failed", "failed")):
            if c[key]:
                noun = "model" if c[key] == 1 else "models"
                parts.append(f"{c[key]} {noun} {label}" if not parts else f"{c[key]} {label}")
        return ", ".join(parts) + ("." if parts else "")

    def _single_summary(self) -> str:
        model = self.models[0]
        fixes, cannot = len(model["fixes"]), len(model["cannot_fix"])
        parts = []
        if fixes:
            word = "fix" if fixes == 1 else "fixes"
            # A value written in another project file is fixed there: say where.
            files = {f["file"] for f in model["fixes"]}
            others = ", ".join(sorted(files - {model["file"]}))
            where = "" if not others else f" (in {others})" if model["file"] not in files \
                else f" (also in {others})"
            if self.mode == "write":
                parts.append(f"{fixes} {word} written{where}")
            else:
                parts.append(f"{fixes} {word} pending{where}, nothing written (--{self.mode})")
        if cannot:
            parts.append(f"{cannot} mismatch{'es' if cannot > 1 else ''} cannot be fixed")
        if not parts:
            parts.append("layer sizes are consistent, nothing to fix")
        return f"{model['file']}: " + "; ".join(parts)

    # -- formats ------------------------------------------------------------------------------

    def _text(self, outcome: Outcome, diff: Optional[str]) -> None:
        if diff and self.mode != "check" and not (self.quiet and self.mode == "write"):
            # color= forces escapes into a pipe when --color was given
            click.echo(colorize(diff) if self.color else diff, nl=False, color=self.color)
        for model in outcome.models:
            if self.verbose and model.device:
                click.echo(f"{outcome.display}::{model.name}: traced on {model.device}", err=True)
            for note in model.notes if self.verbose else ():
                click.echo(f"{outcome.display}: note: {note}", err=True)
            printed = model.printed or (model.error or {}).get("printed", "")
            if self.verbose and printed:
                click.echo(f"{outcome.display}::{model.name}: the model's code printed:", err=True)
                click.echo(printed.rstrip("\n"), err=True)
            for fix in model.fixes if not self.quiet else ():
                click.echo(fix["reason"], err=True)
            for item in model.cannot_fix:
                where = f"{item['file']}:{item['line']}:{item['col']}" if item["line"] else item["file"]
                click.echo(f"{where}: cannot fix: {item['reason']}", err=True)
            if model.error:
                if self.verbose and model.error.get("traceback"):
                    click.echo(model.error["traceback"].rstrip(), err=True)
                prefix = "dimfix: error: " if self.single else f"{outcome.display}::{model.name}: error: "
                click.echo(prefix + model.error["message"], err=True)

    def _lines(self, outcome: Outcome) -> None:
        for model in outcome.models:
            for fix in model.fixes:
                click.echo(f"{fix['file']}:{fix['line']}:{fix['col']}: {FIXABLE} {_message(fix)}")
            for item in model.cannot_fix:
                click.echo(f"{item['file']}:{item['line'] or 1}:{item['col'] or 1}: {CANNOT_FIX} "
                           f"cannot fix: {item['reason']}")
            if model.error:
                where = _error_location(model.error["message"]) or f"{outcome.display}:1:1"
                click.echo(f"{where}: {FAILED} {model.name}: {model.error['message']}")

    def _json_model(self, outcome: Outcome, model: ModelOutcome, state: str) -> dict:
        if state == "fixed" and self.mode != "write":
            state = "would-fix"
        error = {k: model.error[k] for k in ("kind", "message")} if model.error else None
        return {
            "file": outcome.display,
            "name": model.name,
            "status": state,
            "device": model.device or None,
            "fixes": [dict(f, code=FIXABLE) for f in model.fixes],
            "cannot_fix": [dict(c, code=CANNOT_FIX) for c in model.cannot_fix],
            "error": error,
        }


_WHERE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?: |$)")


def _error_location(message: str) -> Optional[str]:
    """``path:line:1`` when a failure's message starts with the place in user
    code it names (``m.py:21: in forward: ...``), for problem matchers."""
    match = _WHERE.match(message)
    return f"{match['file']}:{match['line']}:1" if match else None


def _message(entry: dict) -> str:
    """The reason without its leading ``path:line:col: ``."""
    reason = entry["reason"]
    prefix = f"{entry['file']}:{entry['line']}:{entry['col']}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason
