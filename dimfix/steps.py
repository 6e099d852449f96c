"""The steps of a fix as values: what the session asks a child process to run
(``Request``) and the one typed answer each gets (``StepResult``).

A request runs in a child (isolate.py). Whatever happens there, the session
gets exactly one of:

* ``Drafted``  — a model traced, planned, rewritten and formatted (draft.Draft);
* ``Verified`` — the new texts traced again, every model clean;
* ``Refused``  — dimfix refused: the model, its input or the fix is wrong in a
  way it reports and does not fix (a DimfixError raised in the child);
* ``Failed``   — the child gave no answer: it timed out, ran out of memory,
  crashed, or dimfix itself failed there.

Each is frozen and picklable; errors are ``Problem`` values, never exceptions
crossing the boundary.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Callable, Optional, Tuple, Union

from dimfix.errors import Problem
from dimfix.records import Note


class StepKind(enum.Enum):
    DRAFT = "draft"
    VERIFY = "verify"


@dataclass(frozen=True)
class Request:
    """One step for a child process: ``fn(*args)``."""

    kind: StepKind
    fn: Callable
    args: tuple
    model: str = ""  # the model it is for (a draft), else ""
    # The model's own memory limit (its pragma or table entry), bytes: the
    # step runs under Limits.for_model(max_memory).
    max_memory: Optional[int] = None


@dataclass(frozen=True)
class Drafted:
    draft: object  # draft.Draft
    printed: str = ""  # what the model's own code printed


@dataclass(frozen=True)
class Verified:
    notes: Tuple[Note, ...] = ()
    printed: str = ""


@dataclass(frozen=True)
class Refused:
    problem: Problem
    table: object = None  # shapes.Table up to where the trace stopped, when observed


@dataclass(frozen=True)
class Limits:
    timeout: float = 60.0  # seconds
    max_memory: Optional[int] = None  # bytes above the child's size at start

    def for_model(self, max_memory: Optional[int]) -> "Limits":
        """These limits, with a model's own memory limit (``Options.max_memory``:
        the flag, its pragma or [[tool.dimfix.models]] entry) in place of the run's."""
        return replace(self, max_memory=max_memory) if max_memory else self


@dataclass(frozen=True)
class Failed:
    problem: Problem
    limits: Optional[Limits] = None  # the limits the child ran under


StepResult = Union[Drafted, Verified, Refused, Failed]

__all__ = ["Drafted", "Failed", "Limits", "Refused", "Request", "StepKind", "StepResult",
           "Verified"]
