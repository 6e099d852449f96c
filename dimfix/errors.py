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
        return Problem(self.kind, self.message, self.where, detail, self.printed)


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
