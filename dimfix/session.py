"""One file's fix as a session of explicit steps.

A ``FixSession`` knows the order of a fix and nothing of processes: it hands
out ``Request``s (draft a model; verify the new texts) and takes back the one
typed ``StepResult`` each got (steps.py). driver.py runs the requests in child
processes — one at a time, many files side by side, or from an event loop —
and every front end (the CLI, the library API, the language server,
``--shapes``) drives the same session, so they give the same answers.

The order: each model is drafted in turn on the texts so far; when its
forward raised after the layers just fixed, the new text is drafted again (up
to MAX_ROUNDS). Then the final texts are verified once for all models. A
model drafted alone comes with its alternatives in cost order (plan.py): when
one fails verification the next is verified in its place, and two that hold at
the same cost are a choice of meaning, refused naming both. ``observe`` asks
every draft for its layer table (shapes.Table).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field, replace
from typing import Dict, Generator, List, Mapping, Optional, Sequence, Tuple

from dimfix.errors import ErrorKind, Problem
from dimfix.records import Edit, Note, Options, Unfixable
from dimfix.source import NotebookFile, SourceFile, read_source
from dimfix.steps import Drafted, Failed, Refused, Request, StepKind, StepResult, Verified

MAX_ROUNDS = 4  # drafts of one model when a forward error hid what lay behind it


class Status(enum.Enum):
    """A model's end state; the value is its JSON ``status`` when written."""

    FIXED = "fixed"
    CLEAN = "clean"
    CANNOT_FIX = "cannot-fix"
    FAILED = "failed"


@dataclass(frozen=True)
class ModelFix:
    """One model of a file: its verified edits, what cannot be fixed, or why it failed."""

    options: Options
    edits: Tuple[Edit, ...] = ()
    unfixable: Tuple[Unfixable, ...] = ()
    notes: Tuple[Note, ...] = ()
    device: str = ""
    printed: str = ""  # what the model's own code printed (for --verbose)
    problem: Optional[Problem] = None  # why it failed
    table: object = None  # shapes.Table, when the session observed

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def status(self) -> Status:
        if self.problem is not None:
            return Status.FAILED
        if self.unfixable:
            return Status.CANNOT_FIX
        return Status.FIXED if self.edits else Status.CLEAN


@dataclass(frozen=True)
class FileFix:
    """Every model of one file, fixed together: the verified new text of each
    file the fixes edit (the target, and project files values are written in)."""

    path: str  # absolute path of the target file
    sources: Mapping[str, SourceFile]  # every file read, by absolute path
    texts: Mapping[str, str] = field(default_factory=dict)  # new text of changed files
    models: Tuple[ModelFix, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def changes(self) -> Tuple[Tuple[SourceFile, str], ...]:
        """(file as read, new text) of each changed file, the target first."""
        order = sorted(self.texts, key=lambda p: (p != self.path, p))
        return tuple((self.sources[p], self.texts[p]) for p in order
                     if p in self.sources and self.texts[p] != self.sources[p].text)

    @property
    def source(self) -> Optional[SourceFile]:
        return self.sources.get(self.path)

    @property
    def new_text(self) -> str:
        return self.texts.get(self.path, self.source.text if self.source else "")

    @property
    def edits(self) -> Tuple[Edit, ...]:
        return tuple(e for m in self.models for e in m.edits)

    @property
    def unfixable(self) -> Tuple[Unfixable, ...]:
        return tuple(u for m in self.models for u in m.unfixable)

    @property
    def failed(self) -> Tuple[ModelFix, ...]:
        return tuple(m for m in self.models if m.problem is not None)

    def refused(self, problem: Problem) -> "FileFix":
        """Nothing written: every model of the file fails with ``problem``."""
        return replace(self, texts={}, models=tuple(
            ModelFix(m.options, problem=problem, table=m.table) for m in self.models))


class FixSession:
    """The steps that fix ``models`` in the file at ``path`` (or in ``source``,
    an editor's buffer for it). ``problems``: (model name, why it cannot run)
    for models that never get a step (no sample input). A driver calls
    ``advance(None)`` for the first request, then ``advance(result)`` with each
    result, until it returns None; ``result`` is then the FileFix."""

    def __init__(self, path: str, models: Sequence[Options], source: Optional[SourceFile] = None,
                 problems: Sequence[Tuple[str, str]] = (), observe: bool = False) -> None:
        self.path = os.path.abspath(path)
        self.models = tuple(models)
        self.problems = tuple(problems)
        self.observe = observe
        self.source = source
        self.sources: Dict[str, SourceFile] = {}
        self.texts: Dict[str, str] = {}
        self.result: Optional[FileFix] = None
        self.drafted: List[Tuple[Options, object]] = []  # (options, Draft) so far, unverified
        self._steps = self._run()
        self._started = False

    # -- what a driver calls -------------------------------------------------------------

    def advance(self, result: Optional[StepResult]) -> Optional[Request]:
        """The next request, after taking ``result`` (None for the first); None when done."""
        try:
            if not self._started:
                self._started = True
                return next(self._steps)
            return self._steps.send(result)
        except StopIteration:
            return None

    def close(self) -> None:
        self._steps.close()

    def preview(self) -> FileFix:
        """What the drafts so far found, before verification (an editor shows it
        at once: verifying a 5B model's fix is a second trace)."""
        models = tuple(ModelFix(o, d.edits, d.unfixable, table=d.table) for o, d in self.drafted)
        return FileFix(self.path, dict(self.sources), {}, models)

    # -- the steps ------------------------------------------------------------------------

    def _run(self) -> Generator[Request, StepResult, None]:
        from dimfix.errors import DimfixError

        try:
            self.source = self.source or read_source(self.path)
        except DimfixError as e:  # the file itself cannot be read
            self.result = self._finish([], [ModelFix(o, problem=e.problem())
                                            for o in self.models])
            return
        self.sources = {self.path: self.source}
        self.texts = {self.path: self.source.text}
        done: List[tuple] = []  # (result, its draft, the texts its last round started from)
        failed: List[ModelFix] = []
        for options in self.models:
            if self.source.newline is None or isinstance(self.source, NotebookFile):
                options = replace(options, format=False)
            outcome = yield from self._draft_model(options)
            if isinstance(outcome, ModelFix):
                failed.append(outcome)
            else:
                done.append(outcome)
        done, failed_late = yield from self._verify(done)
        self.result = self._finish([m for m, _ in done], failed + failed_late)

    def _draft_model(self, options: Options):
        """Draft one model, again after a forward error; its (ModelFix, Draft,
        the texts its last round started from) on success (texts taken), else
        a failed ModelFix (texts left as they were)."""
        before = dict(self.texts)
        result = yield self._draft(options)
        if not isinstance(result, Drafted):
            return self._model_failed(options, result)
        draft, printed = result.draft, result.printed
        start = dict(self.texts)
        self._take(draft)
        rounds = 1
        while draft.stopped is not None and rounds < MAX_ROUNDS:
            # The forward raised after the layers just fixed: trace the new
            # text for what that error hid.
            again = yield self._draft(options)
            if not isinstance(again, Drafted):
                self.texts = before
                return self._model_failed(options, again, draft.table)
            start = dict(self.texts)
            self._take(again.draft)
            draft = _after_rounds(draft, again.draft)
            printed += again.printed
            rounds += 1
        if draft.stopped is not None:
            self.texts = before
            return ModelFix(options, problem=replace(draft.stopped, printed=printed),
                            table=draft.table)
        self.drafted.append((options, draft))
        fix = ModelFix(options, draft.edits, draft.unfixable, self._notes(draft), draft.device,
                       printed, table=draft.table)
        return fix, draft, start

    def _verify(self, done: List[tuple]):
        """Verify the texts of every drafted model at once. A model drafted
        alone may have several alternatives, cheapest first (plan.py): when one
        fails, the next is verified in its place; when the next costs the same
        as the one that held and holds too, the choice is one of meaning and
        the edits they disagree on are refused, naming both. Returns the
        (ModelFix, Draft) that stand and the ModelFix that failed."""
        alternatives = done[0][1].alternatives if len(done) == 1 else ()
        start = done[0][2] if done else {}
        done = [(fix, draft) for fix, draft, _ in done]
        original = done[0] if done else None
        k = 0  # the alternative of the one model now in self.texts
        while True:
            changed = {p: t for p, t in self.texts.items() if t != self.sources[p].text}
            if not changed:
                return done, []
            result = yield self._verify_request(self.texts, done)
            if isinstance(result, Verified):
                if k + 1 < len(alternatives) and \
                        abs(alternatives[k + 1].cost - alternatives[k].cost) < 1e-9:
                    other = self._chosen(original, k + 1)
                    texts = self._texts_of(start, alternatives[k + 1])
                    held = yield self._verify_request(texts, [other])
                    if isinstance(held, Verified):
                        self.texts = {self.path: self.source.text}  # nothing written
                        fix = replace(done[0][0], edits=(),
                                      unfixable=_tied(alternatives[k], alternatives[k + 1]))
                        return [(fix, done[0][1])], []
                return [(replace(fix, notes=fix.notes + result.notes,
                                 printed=fix.printed + result.printed), draft)
                        for fix, draft in done], []
            if k + 1 < len(alternatives):
                # This alternative changed a value where it is written and the
                # model did not follow: the next one, verified in turn.
                k += 1
                done = [self._chosen(original, k)]
                self.texts = self._texts_of(start, alternatives[k])
                continue
            problem = result.problem
            standing = [(fix, draft) for fix, draft in done if not fix.edits]
            failed = [ModelFix(fix.options, problem=problem, printed=fix.printed, table=fix.table)
                      for fix, _ in done if fix.edits]
            self.texts = {self.path: self.source.text}
            return standing, failed

    def _verify_request(self, texts: Mapping[str, str], done) -> Request:
        checks = tuple(_check(fix, draft) for fix, draft in done)
        return Request(StepKind.VERIFY, _verify_step(), (self.path, dict(texts), checks), "",
                       _largest(fix.options.max_memory for fix, _ in done))

    def _texts_of(self, start: Mapping[str, str], alternative) -> Dict[str, str]:
        """``start`` with ``alternative``'s new texts in it (other files read)."""
        saved, self.texts = self.texts, dict(start)
        try:
            self._take(alternative)
            return self.texts
        finally:
            self.texts = saved

    def _chosen(self, done, k: int):
        """(ModelFix, Draft) of a model with alternative ``k`` of its draft in
        place of the first."""
        fix, draft = done
        first, alternative = draft.alternatives[0], draft.alternatives[k]
        notes = tuple(n for n in draft.notes if n not in first.notes) + alternative.notes
        chosen = replace(draft, texts=alternative.texts, edits=alternative.edits,
                         unfixable=alternative.unfixable, kept=alternative.kept, notes=notes)
        return replace(fix, edits=chosen.edits, unfixable=chosen.unfixable,
                       notes=self._notes(chosen)), chosen

    # -- helpers ---------------------------------------------------------------------------

    def _draft(self, options: Options) -> Request:
        from dimfix.draft import draft_step

        return Request(StepKind.DRAFT, draft_step,
                       (self.path, dict(self.texts), options, self.observe), options.name,
                       options.max_memory)

    def _take(self, draft) -> None:
        """Put ``draft``'s new texts in ``texts``, reading each other file it edits."""
        for other, text in draft.texts.items():
            if other not in self.sources:
                self.sources[other] = read_source(other)
            self.texts[other] = text

    def _notes(self, draft) -> Tuple[Note, ...]:
        if self.source.newline is None and draft.texts:
            return draft.notes + (Note("mixed line endings: changed lines left unformatted"),)
        return draft.notes

    def _model_failed(self, options: Options, result: StepResult, table=None) -> ModelFix:
        if isinstance(result, Refused):
            return ModelFix(options, problem=result.problem, table=result.table or table)
        if isinstance(result, Failed):
            return ModelFix(options, problem=result.problem, table=table)
        return ModelFix(options, problem=Problem(ErrorKind.INTERNAL,  # pragma: no cover
                                                 f"internal error: unexpected {result!r}"))

    def _finish(self, fixes: List[ModelFix], failed: List[ModelFix]) -> FileFix:
        from dimfix.errors import DimfixError

        changed = {p: t for p, t in self.texts.items()
                   if p in self.sources and t != self.sources[p].text}
        models = fixes + failed
        if changed and isinstance(self.source, NotebookFile):
            try:
                self.source.encode(self.texts[self.path])  # the cells can take the new lines
            except DimfixError as e:
                problem = e.problem()
                models = [m if not m.edits else ModelFix(m.options, problem=problem,
                                                         table=m.table) for m in models]
                changed = {}
        models += [ModelFix(Options(name, ()), problem=Problem(ErrorKind.BAD_USAGE, why))
                   for name, why in self.problems]
        order = {o.name: k for k, o in enumerate(self.models)}
        models.sort(key=lambda m: order.get(m.name, len(order)))
        sources = self.sources or ({self.path: self.source} if self.source else {})
        return FileFix(self.path, sources, changed, tuple(models))


def _largest(limits) -> Optional[int]:
    """One child tracing several models: the largest of their own memory limits
    (None if one has none: the run's limit applies)."""
    limits = list(limits)
    return None if None in limits else max(limits, default=None)


def _verify_step():
    from dimfix.draft import verify_step

    return verify_step


def _check(fix: ModelFix, draft):
    from dimfix.draft import Check

    allowed = tuple((u.mismatch.layer_path, u.mismatch.arg) for u in fix.unfixable)
    return Check(fix.options, allowed, draft.output_shape, draft.kept, draft.wrong,
                 draft.train_notes)


def _after_rounds(draft, again):
    """``again``, drafted on the text ``draft`` left, with ``draft``'s edits in
    front of each alternative's."""
    alternatives = tuple(replace(a, edits=_merged(draft.edits, a.edits), kept=a.kept or draft.kept)
                         for a in again.alternatives)
    return replace(again, edits=_merged(draft.edits, again.edits),
                   notes=draft.notes + again.notes, kept=again.kept or draft.kept,
                   wrong=draft.wrong + again.wrong, alternatives=alternatives)


def _tied(a, b) -> Tuple[Unfixable, ...]:
    """Alternatives ``a`` and ``b`` cost the same and both verify: each edit
    they disagree on is refused, naming both."""
    theirs = {(e.path, e.line, e.col): e.new_code for e in b.edits}
    cannot = list(a.unfixable)
    for e in a.edits:
        there = theirs.get((e.path, e.line, e.col))
        if there == e.new_code:
            continue
        shown = f"`{e.new_code}` or `{there}`" if there else f"`{e.new_code}` or as it is"
        cannot.append(Unfixable(e.mismatch, e.path, e.line, e.col,
                                f"`{e.old_code}` could be {shown}: both verify at the same "
                                "cost; dimfix will not guess"))
    return tuple(cannot)


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
            e = replace(e, old_code=first.old_code, tried=first.tried + e.tried)
        out.append(e)
    return tuple(out)


__all__ = ["FileFix", "FixSession", "MAX_ROUNDS", "ModelFix", "Status"]
