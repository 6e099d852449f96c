"""User-facing failures. Each carries one line fit for stderr and exit code 2."""

from __future__ import annotations

import re

MAX_LINE = 300  # characters of a message from the user's code kept in a record
# Terminal escape sequences (CSI colours and cursor moves, OSC window titles and
# links, DCS/PM/APC strings, two-byte escapes), then control characters, C1
# controls (\x9b is a one-byte CSI) and bidirectional overrides.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?|\x1b.?"
    "|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]",
    re.DOTALL)


def clean(text: str, limit: int = 64 * 1024) -> str:
    """Text from the user's code (an exception's message, a traceback) safe to
    print on a terminal: escape sequences and control characters removed (tabs
    and newlines kept; ``\\r`` ends a line), at most ``limit`` characters."""
    text = _ESCAPES.sub("", str(text)[:limit * 4].replace("\r\n", "\n").replace("\r", "\n"))
    return text if len(text) <= limit else text[:limit] + f" [... cut at {limit} characters]"


def text_of(obj: object, how=str) -> str:
    """``str(obj)`` (or ``how(obj)``) of a user's object, whose ``__str__`` may raise."""
    try:
        return how(obj)
    except BaseException:  # noqa: B036 - the user's __str__/__repr__ may raise anything
        return f"<{type(obj).__name__} that cannot be printed>"


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """The first non-blank line of ``text`` from the user's code, cleaned
    (``clean``) and cut to ``limit`` characters: what enters a dimfix record
    as a message. Every place that puts the user's words in one calls it."""
    text = _ESCAPES.sub("", str(text)[:1 << 20].replace("\r", "\n"))
    first = next((line.strip() for line in text.split("\n") if line.strip()), "")
    first = first.replace("\t", " ")
    if len(first) > limit:
        first = f"{first[:limit]} [... cut at {limit} characters]"
    return first


class DimfixError(Exception):
    """A failure dimfix reports as one line on stderr, exiting 2, writing nothing."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadUsage(DimfixError):
    """A malformed target, shape, or --init value."""


class BadSource(DimfixError):
    """The file cannot be read, decoded or parsed."""


class TargetNotFound(DimfixError):
    """PATH::NAME does not name a model."""


class ModelRaised(DimfixError):
    """The user's model raised for a reason dimfix does not fix."""


class Stopped(ModelRaised):
    """The forward raised after the trace had found wrong layers: most likely
    their knock-on (a residual add of a block built with the wrong width).
    Carries the trace so far, so those can be fixed first and traced again."""

    def __init__(self, message: str, trace) -> None:
        super().__init__(message)
        self.trace = trace


class TooBig(DimfixError):
    """Tracing on CPU would exceed the memory limit."""


class VerifyFailed(DimfixError):
    """The rewritten source did not trace clean; nothing was written."""


class WriteFailed(DimfixError):
    """The file could not be written safely."""
