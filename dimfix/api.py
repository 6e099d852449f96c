"""The library API: what the CLI, tests and editor integrations call.

``fix_file`` reads a file and returns a FileFix without writing anything;
``write_result`` writes a verified result, every file of it or none.

This process never imports the user's code: each trace runs in a child forked
from it (isolate.py). A file's fix is a short series of such steps — draft a
fix for each model in turn, then verify them all on the final text — written
as a generator (``fix_steps``) so that one driver can run a single file and
another can run many files' steps side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Generator, Iterable, Mapping, Optional, Sequence, Tuple, Union

from dimfix.errors import BadUsage, DimfixError, ModelRaised
from dimfix.records import Edit, InputSpec, Options, Unfixable
from dimfix.source import NotebookFile, SourceFile, display_path, read_source, write_files


MAX_ROUNDS = 4  # drafts of one model when a forward error hid what lay behind it


@dataclass(frozen=True)
class FixResult:
    """One model: its edits, what could not be fixed, and notes."""

    options: Options
    edits: Tuple[Edit, ...] = ()
    unfixable: Tuple[Unfixable, ...] = ()
    notes: Tuple[str, ...] = ()
    device: str = ""
    printed: str = ""  # what the model's own code printed (for --verbose)
    output_shape: Tuple[int, ...] = ()  # the output the fix must keep
    kept: Tuple[Tuple[str, str, int], ...] = ()  # sizes found right, as declared
    wrong: int = 0  # layer arguments found wrong

    @property
    def name(self) -> str:
        return self.options.name


@dataclass(frozen=True)
class FileFix:
    """Every model of one file, fixed together: the verified new text of each
    file the fixes edit (the target, and project files values are written in)."""

    path: str  # absolute path of the target file
    sources: Mapping[str, SourceFile]  # every file read, by absolute path
    texts: Mapping[str, str] = field(default_factory=dict)  # new text of changed files
    results: Tuple[FixResult, ...] = ()
    errors: Tuple[Tuple[Options, DimfixError], ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def changes(self) -> Tuple[Tuple[SourceFile, str], ...]:
        """(file as read, new text) of each changed file, the target first."""
        order = sorted(self.texts, key=lambda p: (p != self.path, p))
        return tuple((self.sources[p], self.texts[p]) for p in order
                     if self.texts[p] != self.sources[p].text)

    @property
    def source(self) -> SourceFile:
        return self.sources[self.path]

    @property
    def new_text(self) -> str:
        return self.texts.get(self.path, self.source.text)

    @property
    def edits(self) -> Tuple[Edit, ...]:
        return tuple(e for r in self.results for e in r.edits)

    @property
    def unfixable(self) -> Tuple[Unfixable, ...]:
        return tuple(u for r in self.results for u in r.unfixable)


@dataclass(frozen=True)
class Step:
    """One call to run in a child process: ``fn(*args)``."""

    fn: object
    args: tuple
    name: str = ""  # the model it is for, if one


Steps = Generator[Step, object, FileFix]


def fix_steps(path: str, models: Sequence[Options], source: Optional[SourceFile] = None) -> Steps:
    """The steps that fix ``models`` in the file at ``path`` (or in ``source``,
    an editor's buffer for it). Send each step's result back in, or throw the
    DimfixError it raised; the generator returns the FileFix."""
    from dimfix.draft import draft_fix, verify_fix

    path = os.path.abspath(path)
    source = source or read_source(path)
    sources: Dict[str, SourceFile] = {path: source}
    texts: Dict[str, str] = {path: source.text}
    results, errors = [], []
    choice = None  # (texts its last draft started from, draft): one model's alternatives
    for options in models:
        if source.newline is None or isinstance(source, NotebookFile):
            options = _replace(options, format=False)
        before = dict(texts)
        try:
            draft, printed = yield Step(draft_fix, (path, dict(texts), options), options.name)
            start = dict(texts)
            _take(draft, texts, sources)
            rounds = 1
            while draft.stopped and rounds < MAX_ROUNDS:
                # The forward raised after the layers just fixed: trace the new
                # text for what that error hid.
                again, more = yield Step(draft_fix, (path, dict(texts), options), options.name)
                start = dict(texts)
                _take(again, texts, sources)
                draft = _after_rounds(draft, again)
                printed += more
                rounds += 1
            if draft.stopped:
                raise ModelRaised(draft.stopped)
        except DimfixError as e:
            texts = before
            errors.append((options, e))
            continue
        if len(draft.alternatives) > 1 and len(models) == 1:
            choice = (start, draft)
        results.append(_result(options, draft, printed, source))
    k = 0  # the alternative of the one model with several now in ``texts``
    while True:
        changed = {p: t for p, t in texts.items() if t != sources[p].text}
        if not (changed and results):
            break
        try:
            notes, printed = yield Step(verify_fix, (path, dict(texts), _checks(results)))
        except DimfixError as e:
            if choice is not None and k + 1 < len(choice[1].alternatives):
                # The cheapest alternative did not hold (a value changed where
                # it is written, and the model did not follow): the next one.
                k += 1
                texts = _texts_of(choice, k, sources)
                results[0] = _chosen(results[0], choice[1], k, source)
                continue
            errors.extend((r.options, e) for r in results if r.edits)
            results = [r for r in results if not r.edits]
            changed = {}
            break
        alternatives = choice[1].alternatives if choice is not None else ()
        if k + 1 < len(alternatives) and abs(alternatives[k + 1].cost - alternatives[k].cost) < 1e-9:
            # The next alternative costs the same: if it holds too, the choice
            # is one of meaning, and dimfix does not guess.
            other = _chosen(results[0], choice[1], k + 1, source)
            if (yield from _holds(path, _texts_of(choice, k + 1, sources), [other])):
                results[0] = _tied(results[0], choice[1], k, k + 1)
                texts, changed = dict(choice[0]), {}
                break
        results = [_replace(r, notes=r.notes + tuple(notes), printed=r.printed + printed)
                   for r in results]
        break
    if changed and isinstance(source, NotebookFile):
        try:
            source.encode(texts[path])  # the cells can take the new lines
        except DimfixError as e:
            errors.extend((r.options, e) for r in results if r.edits)
            results = [r for r in results if not r.edits]
            changed = {}
    results = [_relocated(r, source) for r in results]
    for _, e in errors:
        e.message = source.relocate(e.message)
    return FileFix(path, sources, changed, tuple(results), tuple(errors))


def _after_rounds(draft, again):
    """``again``, drafted on the text ``draft`` left, with ``draft``'s edits in
    front of each alternative's."""
    alternatives = tuple(_replace(a, edits=_merged(draft.edits, a.edits), kept=a.kept or draft.kept)
                         for a in again.alternatives)
    return _replace(again, edits=_merged(draft.edits, again.edits),
                    notes=draft.notes + again.notes, kept=again.kept or draft.kept,
                    wrong=draft.wrong + again.wrong, alternatives=alternatives)


def _checks(results) -> tuple:
    """What verify_fix checks of each model: the mismatches left, the output,
    the sizes that were right, how many were wrong."""
    return tuple((r.options, tuple((u.mismatch.layer_path, u.mismatch.arg) for u in r.unfixable),
                  r.output_shape, r.kept, r.wrong) for r in results)


def _holds(path: str, texts: Mapping[str, str], results) -> Generator[Step, object, bool]:
    """Does ``texts`` verify for ``results``? One verify step."""
    from dimfix.draft import verify_fix

    try:
        yield Step(verify_fix, (path, dict(texts), _checks(results)))
    except DimfixError:
        return False
    return True


def _texts_of(choice, k: int, sources) -> Dict[str, str]:
    start, draft = choice
    texts = dict(start)
    _take(draft.alternatives[k], texts, sources)
    return texts


def _chosen(result: FixResult, draft, k: int, source: SourceFile) -> FixResult:
    """``result`` with alternative ``k`` of its draft in place of the first."""
    first, alternative = draft.alternatives[0], draft.alternatives[k]
    notes = tuple(n for n in draft.notes if n not in first.notes) + alternative.notes
    chosen = _replace(draft, texts=alternative.texts, edits=alternative.edits,
                      unfixable=alternative.unfixable, kept=alternative.kept, notes=notes)
    return _result(result.options, chosen, result.printed, source)


def _tied(result: FixResult, draft, k: int, other: int) -> FixResult:
    """Nothing written for the model: alternatives ``k`` and ``other`` of its
    draft cost the same and both hold. Each edit they disagree on is refused,
    naming both."""
    from dimfix.records import Unfixable

    a, b = draft.alternatives[k], draft.alternatives[other]
    theirs = {(e.path, e.line, e.col): e.new_code for e in b.edits}
    cannot = list(a.unfixable)
    for e in a.edits:
        there = theirs.get((e.path, e.line, e.col))
        if there == e.new_code:
            continue
        shown = f"`{e.new_code}` or `{there}`" if there else f"`{e.new_code}` or as it is"
        m = e.mismatch
        cannot.append(Unfixable(m, e.path, e.line, e.col,
                                f"{m.layer_path} ({m.kind}) {m.arg} {m.declared} -> {m.observed} "
                                f"({m.why}): `{e.old_code}` could be {shown}: both verify at "
                                "the same cost; dimfix will not guess"))
    return _replace(result, edits=(), unfixable=tuple(cannot))


def _merged(earlier: Sequence[Edit], later: Sequence[Edit]) -> Tuple[Edit, ...]:
    """A later round's edits after the earlier ones; one that rewrites what an
    earlier edit wrote (a name the first, partial trace chose) replaces it,
    its reason showing the net change."""
    at = {(e.path, e.line, e.col): e for e in earlier}
    out = list(earlier)
    for e in later:
        first = at.get((e.path, e.line, e.col))
        if first is not None and first.new_code == e.old_code:
            out.remove(first)
            e = _replace(e, old_code=first.old_code, tried=first.tried + e.tried,
                         reason=e.reason.replace(f" {e.old_code} -> {e.new_code}",
                                                 f" {first.old_code} -> {e.new_code}", 1))
        out.append(e)
    return tuple(out)


def _take(draft, texts: Dict[str, str], sources: Dict[str, SourceFile]) -> None:
    """Put ``draft``'s new texts in ``texts``, reading each other file it edits."""
    for other, text in draft.texts.items():
        if other not in sources:
            sources[other] = read_source(other)
        texts[other] = text


def _result(options: Options, draft, printed: str, source: SourceFile) -> FixResult:
    notes = draft.notes
    if source.newline is None and draft.texts:
        notes += ("mixed line endings: changed lines left unformatted",)
    return FixResult(options, draft.edits, draft.unfixable, notes, draft.device, printed,
                     draft.output_shape, draft.kept, draft.wrong)


def _relocated(result: FixResult, source: SourceFile) -> FixResult:
    """Positions in a notebook's script become cells and lines in them (source.py)."""
    if not isinstance(source, NotebookFile):
        return result
    shown = display_path(source.path)

    def move(record):
        if record.path != shown or not record.line:
            return record
        cell, line = source.notebook.locate(record.line)
        return _replace(record, path=f"{shown}:cell {cell}", line=line,
                        reason=source.relocate(record.reason))

    return _replace(result, edits=tuple(move(e) for e in result.edits),
                    unfixable=tuple(move(u) for u in result.unfixable),
                    notes=tuple(source.relocate(n) for n in result.notes))


def run_steps(steps: Steps, timeout: float = 60.0, max_memory: Optional[int] = None) -> FileFix:
    """Drive ``steps`` one child at a time."""
    from dimfix.isolate import Limits, run_isolated, warm

    warm()
    limits = Limits(timeout, max_memory)
    value, error = None, None
    while True:
        try:
            step = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value
        try:
            value, error = run_isolated(step.fn, step.args, limits), None
        except DimfixError as e:
            value, error = None, e


def fix_file(path: str, inputs: Union[Iterable[Union[str, InputSpec]], Options] = (), *,
             name: Optional[str] = None, num_classes: Optional[int] = None,
             init: Union[Mapping[str, object], Iterable[str]] = (), output: Optional[str] = None,
             format: bool = True, timeout: float = 60.0,
             max_memory: Union[int, str, None] = None, text: Optional[str] = None) -> FileFix:
    """Fix the model ``name`` in ``path`` (``path`` may be ``"file.py::Name"``);
    nothing is written. ``inputs`` and ``init`` take the CLI's strings
    (``"1x3x32x32"``, ``"long:2x12"``, ``"num_classes=10"``) or parsed values;
    ``text`` fixes an editor's buffer for ``path`` instead of the file on disk.
    Raises DimfixError (exit code 2 in the CLI) for bad input."""
    from dimfix.source import decode_source
    from dimfix.target import parse_init, parse_input, parse_size

    if isinstance(inputs, Options):  # fix_file(path, Options("Net", ["1x3x32x32"]))
        inputs, name, init, num_classes, output, format = (
            inputs.inputs, inputs.name, inputs.init, inputs.num_classes, inputs.output,
            inputs.format)
        max_memory = max_memory or inputs.max_memory
    if name is None:
        path, sep, name = path.rpartition("::") if "::" in path else (path, "", "")
        if not name:
            raise BadUsage("name the model: fix_file('net.py', name='Net') or 'net.py::Net'")
    specs = tuple(i if isinstance(i, InputSpec) else parse_input(i) for i in inputs)
    if not specs:
        raise BadUsage("give a sample input, e.g. inputs=['1x3x32x32']")
    if not isinstance(init, Mapping):
        init = parse_init(init)
    if isinstance(max_memory, str):
        max_memory = parse_size(max_memory)
    if num_classes is not None and num_classes < 1:
        raise BadUsage(f"--num-classes must be at least 1, got {num_classes}")
    options = Options(name, specs, dict(init), num_classes, max_memory, format, output)
    check_inputs(options)
    source = None
    if text is not None:
        source = decode_source(path, text.encode("utf-8"))
    return run_steps(fix_steps(path, [options], source), timeout, max_memory)


def check_inputs(options: Options) -> None:
    """Refuse inputs that alone would need more memory than allowed."""
    from dimfix.target import default_max_memory, input_bytes, size_text

    limit = options.max_memory or default_max_memory()
    need = sum(input_bytes(spec) for spec in options.inputs)
    if need > limit:
        shapes = " ".join(f"--input {s}" for s in options.inputs)
        raise BadUsage(f"{shapes}: the input alone needs {size_text(need)}, over the "
                       f"{size_text(limit)} limit (--max-memory)")


def write_result(result: FileFix) -> Tuple[str, ...]:
    """Write every changed file of a verified ``result``, or none: the paths written."""
    return write_changes(result.changes)


def write_changes(changes: Sequence[Tuple[SourceFile, str]]) -> Tuple[str, ...]:
    """Write (file as read, new text) pairs as one transaction: what both
    ``write_result`` and the CLI write through. The paths written, as shown."""
    if not changes:
        return ()
    write_files([(source, source.encode(text)) for source, text in changes])
    return tuple(display_path(source.path) for source, _ in changes)


def _replace(obj, **changes):
    from dataclasses import replace

    return replace(obj, **changes)


__all__ = ["FixResult", "FileFix", "Edit", "fix_file", "fix_steps", "run_steps",
           "write_result", "write_changes", "DimfixError", "Options"]
