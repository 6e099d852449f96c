"""User-facing failures. Each carries one line fit for stderr and exit code 2."""

from __future__ import annotations


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
