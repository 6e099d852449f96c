"""User-facing failures: one line for stderr, exit code 2, nothing written.

An error is raised inside a stage as a DimfixError and travels between
processes and up to the renderers as a ``Problem``: a frozen record whose
kind, message, place in the user's code, traceback text and captured output
are fields, so no renderer has to read them back out of a string.

Messages never spell a command-line flag themselves: ``option("input")``
names it as the caller knows it (``--input SHAPE`` on the command line,
``inputs=[...]`` through the library API), see ``speaking_to``.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import re
from dataclasses import dataclass
from typing import Iterator, Optional


class ErrorKind(str, enum.Enum):
    """What went wrong; the value is the JSON ``error.kind``."""

    ERROR = "DimfixError"
    BAD_USAGE = "BadUsage"
    BAD_SOURCE = "BadSource"
    TARGET_NOT_FOUND = "TargetNotFound"
    MODEL_RAISED = "ModelRaised"
    TOO_BIG = "TooBig"
    VERIFY_FAILED = "VerifyFailed"
    WRITE_FAILED = "WriteFailed"
    TIMEOUT = "Timeout"
    CRASHED = "Crashed"
    INTERNAL = "InternalError"


@dataclass(frozen=True)
class Position:
    """A place in a file as its reader counts: absolute path, 1-based line,
    1-based character column (0: not known). Renderers turn it into
    ``path:line:col`` (``nb.ipynb:cell 4:2:9`` in a notebook), an LSP range, or
    JSON fields."""

    path: str
    line: int = 0
    col: int = 0


@dataclass(frozen=True)
class Problem:
    """A failure as a value: what the CLI, the API and the language server report."""

    kind: ErrorKind
    message: str  # one line, without the position
    where: Optional[Position] = None  # the place in the user's code it is about
    detail: str = ""  # the traceback, for --verbose
    printed: str = ""  # what the model's own code printed before it

    def error(self) -> "DimfixError":
        """This problem as the exception the library API raises."""
        cls = _CLASSES.get(self.kind, DimfixError)
        error = cls.__new__(cls)
        DimfixError.__init__(error, self.message, self.where, detail=self.detail,
                             printed=self.printed)
        error.kind = self.kind
        return error


# -- what the user's code says ---------------------------------------------------------------

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


def first_line(error: BaseException) -> str:
    """The first line of a user's exception (its cause's, when chained), cleaned:
    its ``__str__`` may raise, or print a megabyte."""
    return one_line(text_of(error.__cause__ or error))


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
    kind = ErrorKind.ERROR

    def __init__(self, message: str, where: Optional[Position] = None, *,
                 detail: str = "", printed: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.detail = detail
        self.printed = printed

    def __str__(self) -> str:
        if self.where is None:
            return self.message
        from dimfix.source import display_path

        return f"{where_text(self.where, display_path(self.where.path))}: {self.message}"

    def __reduce__(self):
        # Errors cross the process boundary as Problems; this keeps a stray
        # pickle of one faithful too.
        return (_rebuilt, (self.problem(),))

    def problem(self) -> Problem:
        """This error as a value; its traceback (of what caused it) kept as text."""
        detail = self.detail
        if not detail:
            import traceback

            cause = self.__cause__  # the user's code's exception, not dimfix's own frames
            if cause is not None and cause.__traceback__ is not None:
                detail = "".join(traceback.format_exception(type(cause), cause,
                                                            cause.__traceback__))
        return Problem(self.kind, self.message, self.where, clean(detail), self.printed)


def where_text(where: Position, shown: str) -> str:
    """``shown:line:col``, each part only when known."""
    line = f":{where.line}" if where.line else ""
    col = f":{where.col}" if where.line and where.col else ""
    return f"{shown}{line}{col}"


def _rebuilt(problem: Problem) -> DimfixError:
    return problem.error()


class BadUsage(DimfixError):
    """A malformed target, shape, or --init value."""

    kind = ErrorKind.BAD_USAGE


class BadSource(DimfixError):
    """The file cannot be read, decoded or parsed."""

    kind = ErrorKind.BAD_SOURCE


class TargetNotFound(DimfixError):
    """PATH::NAME does not name a model."""

    kind = ErrorKind.TARGET_NOT_FOUND

    def __init__(self, message: str, where: Optional[Position] = None, *,
                 models: tuple = (), **more) -> None:
        super().__init__(message, where, **more)
        self.models = models  # the models the file does define, to name them


class ModelRaised(DimfixError):
    """The user's model raised for a reason dimfix does not fix."""

    kind = ErrorKind.MODEL_RAISED


class Stopped(ModelRaised):
    """The forward raised after the trace had found wrong layers: most likely
    their knock-on (a residual add of a block built with the wrong width).
    Carries the trace so far, so those can be fixed first and traced again."""

    def __init__(self, error: ModelRaised, trace) -> None:
        super().__init__(error.message, error.where, detail=error.detail)
        self.trace = trace


class TooBig(DimfixError):
    """Tracing on CPU would exceed the memory limit."""

    kind = ErrorKind.TOO_BIG


class VerifyFailed(DimfixError):
    """The rewritten source did not trace clean; nothing was written."""

    kind = ErrorKind.VERIFY_FAILED


class WriteFailed(DimfixError):
    """The file could not be written safely."""

    kind = ErrorKind.WRITE_FAILED


_CLASSES = {cls.kind: cls for cls in (BadUsage, BadSource, TargetNotFound, ModelRaised, TooBig,
                                      VerifyFailed, WriteFailed)}


# -- naming options as the caller knows them ---------------------------------------------


class Audience(enum.Enum):
    CLI = "cli"
    API = "api"


_AUDIENCE: contextvars.ContextVar[Audience] = contextvars.ContextVar("dimfix_audience",
                                                                    default=Audience.CLI)

# option -> (command line, library API keyword, how the API writes a value)
_OPTIONS = {
    "input": ("--input", "inputs", "inputs=[{!r}]"),
    "init": ("--init", "init", "init=[{!r}]"),
    "set": ("--set", "sets", "sets=[{!r}]"),
    "num-classes": ("--num-classes", "num_classes", "num_classes={}"),
    "output": ("--output", "output", "output={!r}"),
    "max-memory": ("--max-memory", "max_memory", "max_memory={!r}"),
    "timeout": ("--timeout", "timeout", "timeout={}"),
    "unbatched": ("--unbatched", "unbatched=True", ""),
    "exec-module": ("--exec-module", "exec_module=True", ""),
}


@contextlib.contextmanager
def speaking_to(audience: Audience) -> Iterator[None]:
    """Within, ``option()`` names options for ``audience`` (a forked child
    inherits it, so messages made there speak the same way)."""
    token = _AUDIENCE.set(audience)
    try:
        yield
    finally:
        _AUDIENCE.reset(token)


def option(name: str, value: object = None) -> str:
    """``--input 1x3x32x32`` for the command line, ``inputs=['1x3x32x32']`` for the API;
    without a value, the option's name (``--input``, ``inputs``)."""
    cli, api, api_value = _OPTIONS[name]
    if _AUDIENCE.get() is Audience.API:
        return api if value is None or not api_value else api_value.format(value)
    return cli if value is None else f"{cli} {value}"
