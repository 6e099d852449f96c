"""The library API: what the CLI, tests and editor integrations call.

``fix_file`` reads a file and returns a FixResult without writing anything;
``write_result`` writes a verified result atomically.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Tuple

from dimfix.errors import DimfixError
from dimfix.load import Location, check_init, display_path, exec_source, find_model
from dimfix.records import Edit, Options, Unfixable
from dimfix.source import SourceFile, read_source, write_atomic


@dataclass(frozen=True)
class FixResult:
    """The outcome for one model: its edits, what could not be fixed, new text."""

    path: str  # as shown to the user
    source: SourceFile
    new_text: str
    edits: Tuple[Edit, ...] = ()
    unfixable: Tuple[Unfixable, ...] = ()
    notes: Tuple[str, ...] = ()
    device: str = ""

    @property
    def changed(self) -> bool:
        return self.new_text != self.source.text

    @property
    def new_bytes(self) -> bytes:
        return self.source.encode(self.new_text) if self.changed else self.source.raw


def fix_file(path: str, options: Options) -> FixResult:
    """Trace the model ``options.name`` in ``path`` and plan, apply, format and
    verify the fixes. Nothing is written. Raises DimfixError on bad input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _fix(path, options)


def write_result(result: FixResult) -> None:
    """Write a changed, verified result back to its file, atomically."""
    if result.changed:
        write_atomic(result.source, result.new_bytes)


def _fix(path: str, options: Options) -> FixResult:
    display = display_path(path)
    source = read_source(path)
    loc = Location.of(path)
    is_user_file = loc.is_user_file()

    from dimfix.sites import recording_sites
    from dimfix.trace import trace_model

    with recording_sites(is_user_file) as book:
        module = exec_source(loc, source.text)
    spec = f"{display}::{options.name}"
    target = find_model(module, options.name, display)
    check_init(target, dict(options.init), spec)
    trace = trace_model(target, options, is_user_file, book)
    if not trace.mismatches:
        return FixResult(display, source, source.text, device=trace.device)

    from dimfix.formatting import changed_lines, format_ranges
    from dimfix.plan import plan_edits
    from dimfix.rewrite import apply_edits
    from dimfix.verify import verify_source

    plan = plan_edits(source.text, loc.path, display, trace, options.init)
    new_text = apply_edits(plan.index.module, plan.replacements)
    notes: Tuple[str, ...] = ()
    if new_text != source.text and options.format:
        if source.newline is None:
            notes = ("mixed line endings: changed lines left unformatted",)
        else:
            new_text, note = format_ranges(new_text, changed_lines(source.text, new_text), path)
            notes = (note,) if note else ()
    if new_text != source.text:
        allowed = [(u.mismatch.layer_path, u.mismatch.arg) for u in plan.unfixable]
        verify_source(loc, new_text, options, allowed)
    return FixResult(display, source, new_text, plan.edits, plan.unfixable, notes, trace.device)


__all__ = ["FixResult", "fix_file", "write_result", "DimfixError", "Options"]

