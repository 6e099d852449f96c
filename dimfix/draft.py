"""What runs inside a child process (isolate.py): the two steps of a fix.

``draft_step`` imports the user's code, traces the model, plans, rewrites and
formats: it returns ``Drafted``. ``verify_step`` imports the rewritten texts as
the files themselves and traces every model again: it returns ``Verified``.
Both return picklable records and never write a file; a DimfixError they
raise reaches the session as ``Refused`` (isolate.py turns it into a value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, Mapping, Optional, Sequence, Tuple

from dimfix.definitions import Loading, explain, plan_loading
from dimfix.errors import DimfixError, ModelRaised, Problem, Stopped, VerifyFailed
from dimfix.load import Location, check_init, find_model, import_target
from dimfix.records import Edit, Note, Options, Unfixable
from dimfix.steps import Drafted, Refused, Verified


@dataclass(frozen=True)
class Alternative:
    """One way to fix the model, ready to verify: the new text of every file it
    edits, and what it costs (plan.py)."""

    texts: Mapping[str, str]  # absolute path -> new text, changed files only
    edits: Tuple[Edit, ...] = ()
    unfixable: Tuple[Unfixable, ...] = ()
    cost: float = 0.0
    # Declared input sizes the trace found right, when this alternative changes
    # a value where it is written that only verification can judge: a fix may
    # change a few of them (a decoder following image_size), not rebuild the model.
    kept: Tuple[Tuple[str, str, int], ...] = ()
    notes: Tuple[Note, ...] = ()  # formatting notes, and the candidates weighed (-v)


@dataclass(frozen=True)
class Draft:
    """One model's planned fix: its alternatives in cost order, the first
    one's texts, edits and refusals in front."""

    texts: Mapping[str, str]  # absolute path -> new text, changed files only
    edits: Tuple[Edit, ...] = ()
    unfixable: Tuple[Unfixable, ...] = ()
    notes: Tuple[Note, ...] = ()
    device: str = ""
    output_shape: Tuple[int, ...] = ()  # the model's output, as traced (sizes fixed)
    # The forward raised after the layers fixed here: trace the new text again.
    stopped: Optional[Problem] = None
    kept: Tuple[Tuple[str, str, int], ...] = ()  # the first alternative's
    wrong: int = 0  # how many layer arguments the trace found wrong
    # Every alternative, the first included, cheapest first: the session
    # verifies them in this order and takes the first that holds.
    alternatives: Tuple[Alternative, ...] = ()
    table: object = None  # shapes.Table of every module call, when the session observes
    # What the pass in train mode met at the batch given (trace.notes), for
    # verification, which runs train mode at the doubled batch only.
    train_notes: Tuple[Note, ...] = ()


@dataclass(frozen=True)
class Check:
    """What verification asks of one model's trace of the new texts."""

    options: Options
    allowed: Tuple[Tuple[str, str], ...] = ()  # (layer, argument) left wrong: cannot be fixed
    output: Tuple[int, ...] = ()  # the output shape the fix must keep
    kept: Tuple[Tuple[str, str, int], ...] = ()
    wrong: int = 0
    train_notes: Tuple[Note, ...] = ()  # the draft's (Draft.train_notes)


def draft_step(path: str, texts: Mapping[str, str], options: Options, observe: bool = False):
    """Trace ``options.name`` in ``path`` (whose text, and that of other project
    files being edited, is in ``texts``), then plan, rewrite and format each
    alternative. ``observe`` records every module call (shapes.Table) for
    --shapes and the editor's hover, also of a trace that stopped at an error
    it cannot fix (then the answer is Refused)."""
    if not observe:
        return Drafted(draft_fix(path, texts, options))
    from dimfix.shapes import Recorder
    from dimfix.trace import observing

    recorder = Recorder()
    try:
        with observing(recorder):
            draft = draft_fix(path, texts, options)
    except DimfixError as e:
        return Refused(e.problem(), recorder.table(texts))
    return Drafted(replace(draft, table=recorder.table(texts)))


def verify_step(path: str, texts: Mapping[str, str], checks: Sequence[Check]) -> Verified:
    return Verified(verify_fix(path, texts, checks))


def draft_fix(path: str, texts: Mapping[str, str], options: Options) -> Draft:
    """The draft of ``draft_step``. A trace stopped by a forward error yields
    one alternative, traced again rather than verified."""
    import warnings

    warnings.simplefilter("ignore")
    from dimfix.sites import recording_sites
    from dimfix.trace import trace_model

    loc = Location.of(path)
    is_user_file = loc.is_user_file()
    loading = plan_loading(texts[loc.path], [options.name], options, loc.path, loc.in_package)
    try:
        with recording_sites(is_user_file) as book:
            module = _import(loc, texts, loading, [options.name])
        target = find_model(module, options.name, loc.path)
        check_init(target, dict(options.init), options.name, loc.path)
        try:
            trace = trace_model(target, options, is_user_file, book)
        except Stopped as stopped:
            trace = stopped.trace
    except DimfixError as e:
        raise explain(e, loading, [options.name], loc.path, texts[loc.path]) or e
    if not trace.mismatches:
        return Draft({}, notes=loading.notes + trace.notes, device=trace.device,
                     output_shape=trace.output)

    # Project files may be edited where a value is written; installed ones never.
    editable = loc.may_edit()
    wrong = {(m.layer_path, m.arg) for m in trace.mismatches}
    # Sizes the input reached and found right (out sizes are free to follow a
    # fixed name: a block built with the wrong width put out the wrong width).
    kept = tuple(sorted({(c.layer_path, c.arg, c.declared) for c in trace.constructions
                         if type(c.declared) is int and c.required == c.declared
                         and (c.layer_path, c.arg) not in wrong}))
    alternatives = _alternatives(loc, trace, options, texts, editable, kept)
    first = alternatives[0]
    draft = Draft(first.texts, first.edits, first.unfixable, loading.notes + first.notes,
                  trace.device, trace.output, kept=first.kept, wrong=len(wrong),
                  alternatives=alternatives, train_notes=trace.notes)
    if trace.stopped is not None:
        if not draft.texts:
            raise trace.stopped.error()  # nothing to fix first: the error stands
        note = Note(f"then the forward raised ({trace.stopped.message}): traced again after "
                    "these fixes", trace.stopped.where)
        return replace(draft, notes=draft.notes + (note,), stopped=trace.stopped)
    return draft


def _alternatives(loc, trace, options, texts, editable, kept) -> Tuple[Alternative, ...]:
    from dimfix.formatting import format_edit
    from dimfix.plan import plan_edits

    plan = plan_edits(texts[loc.path], loc.path, trace, options.init, texts, editable,
                      tuple(s.shape for s in options.inputs))
    found = []
    for alternative in plan.alternatives:
        changed: Dict[str, str] = {}
        notes = []
        for path, new_text in plan.new_texts(alternative).items():
            old = plan.resolver.file(path).index.text
            if new_text != old and options.format:
                new_text, note = format_edit(old, new_text, path)
                notes += [Note(note, _file(path))] if note else []
            if new_text != old:
                changed[path] = new_text
        found.append(Alternative(
            changed, tuple(_portable(e) for e in alternative.edits),
            tuple(_portable(u) for u in alternative.unfixable), alternative.cost,
            kept if alternative.rebuilds else (),
            tuple(notes) + _weighed_notes(alternative.edits)))
    return tuple(found)


def _weighed_notes(edits: Sequence[Edit]) -> Tuple[Note, ...]:
    """For -v: the candidates weighed for each edit, cheapest first."""
    from dimfix.errors import Position

    notes = []
    for e in edits:
        shown = "; ".join(f"{w.code} {w.cost:g}" + (f" ({w.facts})" if w.facts else "")
                          for w in e.weighed)
        if shown:
            notes.append(Note(f"weighed for {e.mismatch.layer_path} {e.mismatch.arg}: {shown}",
                              Position(e.path, e.line, e.col)))
    return tuple(notes)


def _file(path: str):
    from dimfix.errors import Position

    return Position(path)


def verify_fix(path: str, texts: Mapping[str, str], checks: Sequence[Check]) -> Tuple[Note, ...]:
    """Import the rewritten ``texts`` as the files themselves and trace every
    model again; raise VerifyFailed unless only the ``allowed`` (layer path,
    argument) mismatches of each are left. Returns notes for --verbose."""
    import warnings

    warnings.simplefilter("ignore")
    from dimfix.trace import trace_model

    loc = Location.of(path)
    is_user_file = loc.is_user_file()
    names = [check.options.name for check in checks]
    try:
        loading = plan_loading(texts[loc.path], names, checks[0].options, loc.path,
                               loc.in_package)
        module = _import(loc, texts, loading, names)
    except DimfixError as e:
        raise _unverified(e) from e
    notes = []
    for check in checks:
        options = check.options
        doubling = _batched(options)
        try:
            target = find_model(module, options.name, loc.path)
            # Train mode at the doubled batch: the doubled batch's check of
            # train-only branches, in the pass the trace makes anyway.
            trace = trace_model(target, options, is_user_file, train=2 if doubling else 1)
        except DimfixError as e:
            raise _unverified(e) from e
        left = {(m.layer_path, m.arg) for m in trace.mismatches} - set(check.allowed)
        if left:
            detail = ", ".join(f"{p} {a}" for p, a in sorted(left))
            # Found only in train mode at the doubled batch: at the batch given,
            # the draft's train pass planned this fix.
            if left <= set(trace.train_doubled):
                raise _depends_on_batch(detail)
            raise VerifyFailed(
                f"fix did not verify: still wrong after the edit: {detail}; nothing written")
        _check_output(options, check.output, trace.output)
        _check_kept(check.kept, check.wrong, trace.constructions)
        if trace.device != "meta" and doubling:  # on meta a second trace costs seconds
            # What train mode met at the batch given is the draft's to say, as
            # before train mode ran at the doubled batch here.
            notes.extend(check.train_notes)
            notes.extend(_check_doubled_batch(target, options, is_user_file, check.allowed))
        else:
            notes.extend(trace.notes)
    return tuple(notes)


def _unverified(e: DimfixError) -> VerifyFailed:
    return VerifyFailed(f"fix did not verify: {e.message}; nothing written", e.where,
                        detail=e.detail)


def _check_output(options: Options, before: Tuple[int, ...], after: Tuple[int, ...]) -> None:
    """An edit may not change what the model puts out (that is the user's
    contract), except to the shape of its input: a reconstruction (an
    autoencoder adapted to a new image size) follows its input."""
    if not before or not after or before == after:
        return
    if after[0] == before[0] and any(math.prod(after[1:]) == math.prod(s.shape[1:])
                                     for s in options.inputs if len(s.shape) > 1):
        return
    shown = "x".join(map(str, before)), "x".join(map(str, after))
    raise VerifyFailed(f"fix did not verify: it changes the model's output from {shown[0]} to "
                       f"{shown[1]}; nothing written")


def _check_kept(kept, wrong: int, constructions) -> None:
    """A fix may resize a few layers that were right (a decoder that follows
    the new image size), but not rebuild the model: a divisor edited until
    every width fits (``round_nearest`` 8 -> 320) is no fix."""
    now = {(c.layer_path, c.arg): c.declared for c in constructions}
    changed = [(layer, arg) for layer, arg, size in kept
               if (layer, arg) in now and now[(layer, arg)] != size]
    if len(changed) > max(4, 2 * wrong):
        raise VerifyFailed(
            f"fix did not verify: it changes {len(changed)} layer sizes that were right "
            f"(e.g. {changed[0][0]} {changed[0][1]}) to fix {wrong}; nothing written")


def _batched(options: Options) -> bool:
    """Whether every input has a batch dimension, which verification doubles."""
    return not options.unbatched and all(len(s.shape) >= 2 for s in options.inputs)


def _check_doubled_batch(target, options: Options, is_user_file, allowed) -> Tuple[Note, ...]:
    """Trace once more with the batch doubled, in eval mode (verify_fix's trace
    ran train mode at this batch): a size that fits only batch 1 (``x.view(-1)``
    folding the batch into the features) is no fix."""
    from dimfix.trace import trace_model

    doubled = replace(options, inputs=tuple(s.batch_times(2) for s in options.inputs))
    try:
        trace = trace_model(target, doubled, is_user_file, train=0)
    except ModelRaised as e:
        return (Note(f"with the batch doubled the model raised: {e.message} (not checked)",
                     e.where),)
    left = {(m.layer_path, m.arg) for m in trace.mismatches} - set(allowed)
    if left:
        raise _depends_on_batch(", ".join(f"{p} {a}" for p, a in sorted(left)))
    return ()


def _depends_on_batch(detail: str) -> VerifyFailed:
    return VerifyFailed(f"fix did not verify: with the batch doubled, {detail} no longer fits: "
                        "the size depends on the batch size; nothing written")


def _import(loc: Location, texts: Mapping[str, str], loading: Loading, names: Sequence[str]):
    """Import the target executing ``loading.text`` for it (definitions.py)."""
    return import_target(loc, {**texts, loc.path: loading.text}, {loc.path: loading.seed}, names)


def _portable(record):
    """``record`` without the frames' variables (user objects need not pickle)."""
    return replace(record, mismatch=replace(record.mismatch, site=None))
