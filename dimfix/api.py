"""The library API: what the CLI, tests and editor integrations call.

``fix_file`` reads a file and returns a FixResult without writing anything;
``write_result`` writes a verified result atomically.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from dimfix.errors import DimfixError
from dimfix.load import Location, check_init, display_path, exec_source, find_model
from dimfix.records import Edit, Options, Unfixable
from dimfix.source import SourceFile, read_source, write_atomic


class _Rewrite:
    """What a result with ``source`` and ``new_text`` writes back."""

    source: SourceFile
    new_text: str

    @property
    def changed(self) -> bool:
        return self.new_text != self.source.text

    @property
    def new_bytes(self) -> bytes:
        return self.source.encode(self.new_text) if self.changed else self.source.raw


@dataclass(frozen=True)
class FixResult(_Rewrite):
    """The outcome for one model: its edits, what could not be fixed, new text."""

    path: str  # as shown to the user
    source: SourceFile
    new_text: str
    edits: Tuple[Edit, ...] = ()
    unfixable: Tuple[Unfixable, ...] = ()
    notes: Tuple[str, ...] = ()
    device: str = ""
    options: Optional[Options] = None


def fix_file(path: str, options: Options) -> FixResult:
    """Trace the model ``options.name`` in ``path`` and plan, apply, format and
    verify the fixes. Nothing is written. Raises DimfixError on bad input."""
    return fix_source(read_source(path), options)


def fix_source(source: SourceFile, options: Options, text: Optional[str] = None) -> FixResult:
    """Like fix_file, on a file already read (or text from an editor buffer).

    ``text`` is the current text when earlier fixes to other models in the same
    file were made; by default the source's own text.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _fix(source, options, source.text if text is None else text)


@dataclass(frozen=True)
class FileFix(_Rewrite):
    """Every model of one file, fixed together: one combined, verified text."""

    source: SourceFile
    new_text: str
    results: Tuple[FixResult, ...]
    errors: Tuple[Tuple[Options, DimfixError], ...] = ()


def fix_models(source: SourceFile, models: Sequence[Options]) -> FileFix:
    """Fix each model in turn on the text the previous ones left, then verify
    every model again on the final text when more than one edit went in."""
    text, results, errors = source.text, [], []
    for options in models:
        try:
            result = fix_source(source, options, text)
        except DimfixError as e:
            errors.append((options, e))
            continue
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a dimfix bug on this model: the others go on
            errors.append((options, _internal(e)))
            continue
        results.append(result)
        text = result.new_text
    if sum(1 for r in results if r.edits) > 1:
        from dimfix.verify import verify_source

        loc = Location.of(source.path)
        for result in results:
            allowed = [(u.mismatch.layer_path, u.mismatch.arg) for u in result.unfixable]
            verify_source(loc, text, result.options, allowed)
    return FileFix(source, text, tuple(results), tuple(errors))


def _internal(e: Exception) -> DimfixError:
    first = (str(e).strip().splitlines() or [""])[0]
    error = DimfixError(
        f"internal error ({type(e).__name__}: {first}); nothing written for this model. "
        "Please report it; --verbose shows the traceback"
    )
    error.__cause__ = e
    return error


def write_result(result) -> None:
    """Write a changed, verified result (FixResult or FileFix) back, atomically."""
    if result.changed:
        write_atomic(result.source, result.new_bytes)


def _fix(source: SourceFile, options: Options, text: str) -> FixResult:
    path = source.path
    display = display_path(path)
    loc = Location.of(path)
    is_user_file = loc.is_user_file()

    from dimfix.sites import recording_sites
    from dimfix.trace import trace_model

    with recording_sites(is_user_file) as book:
        module = exec_source(loc, text)
    spec = f"{display}::{options.name}"
    target = find_model(module, options.name, display)
    check_init(target, dict(options.init), spec)
    trace = trace_model(target, options, is_user_file, book)
    if not trace.mismatches:
        return FixResult(display, source, text, device=trace.device, options=options)

    from dimfix.formatting import changed_lines, format_ranges
    from dimfix.plan import plan_edits
    from dimfix.rewrite import apply_edits
    from dimfix.verify import verify_source

    plan = plan_edits(text, loc.path, display, trace, options.init)
    new_text = apply_edits(plan.index.module, plan.replacements)
    notes: Tuple[str, ...] = ()
    if new_text != text and options.format:
        if source.newline is None:
            notes = ("mixed line endings: changed lines left unformatted",)
        else:
            new_text, note = format_ranges(new_text, changed_lines(text, new_text), path)
            notes = (note,) if note else ()
    if new_text != text:
        allowed = [(u.mismatch.layer_path, u.mismatch.arg) for u in plan.unfixable]
        verify_source(loc, new_text, options, allowed)
    return FixResult(display, source, new_text, plan.edits, plan.unfixable, notes, trace.device,
                     options)


__all__ = ["FixResult", "FileFix", "fix_file", "fix_source", "fix_models", "write_result",
           "DimfixError", "Options"]
