"""One check of one file for the language server: the FixSession the CLI
runs (draft each declared model, verify), driven from the server's event loop
with ``observe`` on, so hover has the layer rows of each trace.

The server keeps torch imported and never imports the user's code: each step
is a forked child (driver.run_async). Cancelling the task (a newer save)
kills the child at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

from dimfix.session import FileFix
from dimfix.source import SourceFile
from dimfix.steps import Drafted, Limits


@dataclass(frozen=True)
class Checked:
    """What one check found: the verified fix (with the models that failed)."""

    source: SourceFile
    fix: FileFix

    @property
    def rows(self) -> Dict[str, tuple]:
        """Layer rows by model name, for hover."""
        return {m.name: m.table.rows for m in self.fix.models if m.table is not None}


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


async def check(source: SourceFile, job, limits: Limits,
                drafted: Optional[Callable[[Checked], None]] = None) -> Checked:
    """``drafted(checked)``, if given, is called after each model is drafted,
    before the fix is verified: what the trace found can be shown at once
    (verifying a 5B model's fix is a second trace); the result returned is
    the verified one."""
    from dimfix.api import session_for
    from dimfix.driver import run_async

    def observe(session, result) -> None:
        if drafted is not None and isinstance(result, Drafted):
            drafted(Checked(source, session.preview()))

    fix = await run_async(session_for(job, observe=True), limits, observe)
    return Checked(source, fix)
