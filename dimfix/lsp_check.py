"""One check of one file for the language server: its declared models traced,
planned and verified in child processes, driven from the server's event loop.

The steps are api.fix_steps, the same ones the CLI runs; the draft step runs
shapes.shape_draft instead of draft.draft_fix (the same work, plus the layer
rows that hover shows). Each step is a forked child (isolate.Child): the
server keeps torch imported and never imports the user's code. Awaiting a
child polls its pipe and its limits; cancelling the task (a newer save) kills
the child at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from dimfix.errors import DimfixError
from dimfix.isolate import POLL, Child, Limits
from dimfix.source import SourceFile


@dataclass
class Checked:
    """What one check found: the verified fix, layer rows by model, failures."""

    source: SourceFile
    fix: Optional[object] = None  # api.FileFix
    rows: Dict[str, tuple] = field(default_factory=dict)  # model name -> shapes.Row tuple
    problems: Tuple[Tuple[str, str], ...] = ()  # (model name, why it cannot run)
    models: Tuple[str, ...] = ()


def plan_check(source: SourceFile):
    """The job for ``source`` (its pragmas and [tool.dimfix]) and the limits to
    trace it under, or (None, None) when it declares no model."""
    from dimfix.config import ModelSpec
    from dimfix.discover import discover_source
    from dimfix.target import parse_size

    job, config = discover_source(source, [], ModelSpec("", ""))
    if not job.models and not job.problems:
        return None, None
    memory = config.defaults.max_memory if config else None
    timeout = (config.timeout if config else None) or 60.0
    return job, Limits(timeout, parse_size(memory) if memory else None)


async def check(source: SourceFile, job, limits: Limits, drafted=None) -> Checked:
    """``drafted(checked)``, if given, is called once every model is drafted and
    before the fix is verified: what the trace found can be shown at once
    (verifying a 5B model's fix is a second trace); the result returned is
    the verified one."""
    from dimfix.api import FileFix, FixResult, fix_steps
    from dimfix.draft import draft_fix
    from dimfix.shapes import ShapedDraft, shape_draft

    checked = Checked(source, problems=job.problems, models=tuple(o.name for o in job.models))
    steps = fix_steps(job.path, job.models, source)
    value, error = None, None
    drafts, failed = [], []
    try:
        while True:
            try:
                step = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as stop:
                checked.fix = stop.value
                return checked
            if step.fn is not draft_fix and drafted is not None:
                results = tuple(FixResult(o, d.edits, d.unfixable) for o, d in drafts)
                drafted(Checked(source, FileFix(job.path, {job.path: source}, {}, results,
                                                tuple(failed)),
                                dict(checked.rows), checked.problems, checked.models))
            fn = shape_draft if step.fn is draft_fix else step.fn
            try:
                own = limits.for_model(step.max_memory)
                value, error = await run_child(fn, step.args, own), None
            except DimfixError as e:
                value, error = None, e
            if step.fn is draft_fix:
                if error is None:
                    drafts.append((step.args[2], value[0]))
                else:
                    failed.append((step.args[2], error))
            if isinstance(value and value[0], ShapedDraft):
                checked.rows[step.name] = value[0].rows
    finally:
        steps.close()


async def run_child(fn, args, limits: Limits):
    """``fn(*args)`` in a forked child: (result, what it printed); raises what
    it raised, or isolate.Failed. Cancelling kills the child."""
    loop = asyncio.get_running_loop()
    child = Child(fn, args, limits)
    try:
        while not child.poll():
            ready = loop.create_future()
            fd = child.conn.fileno()
            loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
            try:
                await asyncio.wait_for(ready, POLL)
            except asyncio.TimeoutError:
                pass
            finally:
                loop.remove_reader(fd)
        return child.value(), child.output()
    finally:
        child.close()
