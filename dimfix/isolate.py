"""Run a function over the user's code in a forked child process.

The user's code may print, exit, hang, start threads, ignore signals, segfault
or allocate without bound. None of that may reach dimfix's own output or exit
code, so every import of user code happens in a child forked from this process
(after torch is imported here, so children start warm). The child runs one
function and sends back its picklable result, or the error it raised, over a
pipe; then it ends with ``os._exit`` so no ``atexit`` handler or non-daemon
thread of the user's can keep it alive. The parent enforces the timeout and
the memory limit by killing the child's whole process group, and kills every
child it started when it is interrupted itself.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, Pipe, wait
from typing import Callable, List, Optional, Sequence, Tuple

from dimfix.errors import DimfixError, clean, one_line, text_of
from dimfix.target import size_text

CAPTURE_LIMIT = 64 * 1024  # bytes of the user's own output kept for --verbose
POLL = 0.05  # seconds between memory checks
# --max-memory limits what the model allocates, not dimfix's own working set:
# torch's meta kernels and sympy alone take about 150 MB once loaded.
OWN_MEMORY = 512 * 2**20


class Failed(DimfixError):
    """The child did not return a result: it exited, died or ran out of time."""

    def __init__(self, message: str, kind: str = "Crashed") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Limits:
    timeout: float = 60.0  # seconds
    max_memory: Optional[int] = None  # bytes above the child's size at start

    def for_model(self, max_memory: Optional[int]) -> "Limits":
        """These limits, with a model's own memory limit (``Options.max_memory``:
        the flag, its pragma or [[tool.dimfix.models]] entry) in place of the run's."""
        return replace(self, max_memory=max_memory) if max_memory else self


def warm() -> None:
    """Import torch here once, so that every child forked later starts with it.

    CUDA is hidden first: dimfix traces on CPU or meta, and code that picks
    ``"cuda" if torch.cuda.is_available() else "cpu"`` must take its CPU path,
    on a machine with a GPU as on one without.
    """
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import warnings

    # An interrupt raised inside torch's import can surface as another error
    # (a RuntimeError from a class being created): it waits the second the
    # import takes, then arrives as itself.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch  # noqa: F401
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class Child:
    """One forked process running ``fn(*args)``."""

    def __init__(self, fn: Callable, args: Sequence[object], limits: Limits) -> None:
        self.limits = limits
        self.capture = tempfile.TemporaryFile(prefix="dimfix-out-")
        self.pid = -1
        self.conn, child_conn = Pipe(duplex=False)
        # Until the child has its own process group and default handlers, a
        # Ctrl-C for the parent's group must not reach it (as KeyboardInterrupt
        # in a copy of the parent's code): held across the fork, released after.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.pid = os.fork()
            if self.pid == 0:  # pragma: no cover - runs in the child
                self.conn.close()
                _child_main(fn, args, child_conn, self.capture.fileno(), limits, held)
            _live.add(self)
        except OSError:
            self.conn.close()
            self.capture.close()
            raise
        finally:
            if self.pid != 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
            child_conn.close()
        try:
            os.setpgid(self.pid, self.pid)
        except OSError:
            pass  # the child did it first, or already ended
        self.started = time.monotonic()
        self.deadline = self.started + limits.timeout
        self.base_rss = _rss(self.pid)
        self.result: Optional[Tuple[bool, object]] = None

    # -- waiting -----------------------------------------------------------------------

    def waitables(self) -> List[object]:
        return [self.conn]

    def poll(self) -> bool:
        """Take the result if it is there; enforce the limits. True once done."""
        if self.result is not None:
            return True
        if self.conn.poll():
            try:
                self.result = (True, self.conn.recv())
            except (EOFError, OSError):
                self.result = (False, self._death())
            except Exception as e:  # a result that does not unpickle: dimfix's bug
                self.result = (False, Failed(f"internal error: cannot read the result ({e})",
                                             "InternalError"))
            self._end()
            return True
        if time.monotonic() >= self.deadline:
            self._kill()
            self.result = (False, Failed(f"timed out after {self.limits.timeout:g} s (--timeout)",
                                         "Timeout"))
            self._end()
            return True
        limit = self.limits.max_memory
        if limit and self.base_rss and _rss(self.pid) - self.base_rss > limit + OWN_MEMORY:
            self._kill()
            self.result = (False, Failed(
                f"the model used more memory than --max-memory allows ({size_text(limit)}); "
                "killed", "TooBig"))
            self._end()
            return True
        return False

    def wait(self) -> object:
        """Block until done; the function's result, or raise what it raised."""
        while not self.poll():
            timeout = min(POLL, max(0.0, self.deadline - time.monotonic()))
            wait(self.waitables(), timeout=timeout)
        return self.value()

    def value(self) -> object:
        ok, value = self.result
        if ok:
            status, payload = value
            if status == "ok":
                return payload
            raise payload
        raise value

    def output(self) -> str:
        """What the user's code printed (truncated), for --verbose."""
        try:
            self.capture.seek(0)
            data = self.capture.read(CAPTURE_LIMIT + 1)
        except (OSError, ValueError):
            return ""
        text = data[:CAPTURE_LIMIT].decode("utf-8", errors="replace")
        return text + ("\n[... output truncated]" if len(data) > CAPTURE_LIMIT else "")

    # -- ending ------------------------------------------------------------------------

    def _death(self) -> Failed:
        status = self._reap(block=True)
        if status is None:
            return Failed("the model's process ended without a result")
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
            if sig == signal.SIGKILL:
                return Failed("the model's process was killed (SIGKILL; out of memory?)")
            return Failed(f"the model's process died of signal {name}")
        code = os.WEXITSTATUS(status)
        return Failed(f"the model's code ended the process (os._exit({code})) before dimfix "
                      "had a result")

    def _kill(self) -> None:
        for target in (lambda s: os.killpg(self.pid, s), lambda s: os.kill(self.pid, s)):
            try:
                target(signal.SIGKILL)
            except (ProcessLookupError, PermissionError, OSError):
                pass

    def _reap(self, block: bool) -> Optional[int]:
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return None
        return status if pid else None

    def _end(self) -> None:
        # The user's code may have left processes of its own in the group.
        self._kill()
        self._reap(block=True)
        self.conn.close()
        _live.discard(self)

    def close(self) -> None:
        """Kill the child if it still runs; free its pipe and capture file."""
        if self in _live:
            self._kill()
            self._reap(block=True)
            self.conn.close()
            _live.discard(self)
        self.capture.close()


def run_isolated(fn: Callable, args: Sequence[object], limits: Limits) -> Tuple[object, str]:
    """``fn(*args)`` in a child: (its result, what the user's code printed).

    Raises what ``fn`` raised (a DimfixError, rebuilt here), or ``Failed``.
    """
    child = Child(fn, args, limits)
    try:
        try:
            return child.wait(), child.output()
        except DimfixError as e:
            e.output = child.output()
            raise
    finally:
        child.close()


def kill_all() -> None:
    """Kill every child still running (on SIGINT/SIGTERM in the parent)."""
    for child in list(_live):
        child.close()


_live: "set[Child]" = set()


# -- the child side ------------------------------------------------------------------------


def _child_main(fn, args, conn: Connection, capture: int, limits: Limits,
                held) -> None:  # pragma: no cover
    code = 0
    try:
        os.setpgid(0, 0)  # the terminal's Ctrl-C goes to the parent, which kills us
    except OSError:
        pass
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(capture, 1)
        os.dup2(capture, 2)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", buffering=1, errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, errors="replace", closefd=False)
        sys.dont_write_bytecode = True  # nothing may appear beside the user's files
        if "torch" in sys.modules:
            # OpenMP's thread pool does not survive fork: a parent that ran
            # parallel CPU work (an editor's server, a notebook calling the API)
            # would leave the child hanging in its first parallel op. One
            # thread, as torch's own DataLoader workers do.
            sys.modules["torch"].set_num_threads(1)
        _limit_address_space(limits.max_memory)
        import warnings

        warnings.simplefilter("ignore")
        try:
            payload = ("ok", fn(*args))
        except DimfixError as e:
            payload = ("error", _portable(e))
        except BaseException as e:  # noqa: B036 - the user's code may raise anything
            payload = ("error", _contained(e))
        try:
            conn.send(payload)
        except BaseException as e:  # noqa: B036 - e.g. an unpicklable result
            conn.send(("error", _contained(e)))
    except BaseException as e:  # noqa: B036 - dimfix's own side of the child failed
        code = 70
        try:  # say so, rather than look like the model's os._exit(70)
            conn.send(("error", _own_failure(e)))
        except BaseException:  # noqa: B036
            pass
    finally:
        os._exit(code)


def _portable(e: DimfixError) -> DimfixError:
    """``e`` as a plain DimfixError subclass that pickles, with its traceback as text."""
    cause = e.__cause__ or e
    detail = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    clone = type(e).__new__(type(e))
    Exception.__init__(clone, e.message)
    clone.message = e.message
    clone.detail = clean(detail)
    if hasattr(e, "kind"):
        clone.kind = e.kind
    return clone


def _contained(e: BaseException) -> DimfixError:
    """What escaped ``fn``: the user's code leaving by a door that is not an
    Exception (sys.exit, KeyboardInterrupt, a BaseException subclass), or a
    bug in dimfix (user code's exceptions arrive as DimfixError already)."""
    from dimfix.errors import ModelRaised
    from dimfix.load import user_frame_of

    said = text_of(e)
    first, name = one_line(said), one_line(type(e).__name__, 80)
    if isinstance(e, SystemExit):
        code = one_line(text_of(e.code, repr), 80)
        error = ModelRaised(f"{user_frame_of(e)}the model's code called sys.exit({code})")
    elif not isinstance(e, Exception):
        error = ModelRaised(f"{user_frame_of(e)}the model's code raised {name}"
                            + (f": {first}" if first else ""))
    elif isinstance(e, MemoryError) or "Cannot allocate memory" in said \
            or "DefaultCPUAllocator: can't allocate" in said:
        error = DimfixError("the trace ran out of memory (--max-memory, or the machine's); "
                            "nothing written")
        error.kind = "TooBig"
    else:
        error = DimfixError(
            f"internal error ({name}: {first}); nothing written for this model. "
            "Please report it; --verbose shows the traceback")
        error.kind = "InternalError"
    error.__cause__ = e
    return _portable(error)


def _own_failure(e: BaseException) -> DimfixError:
    """dimfix's own code in the child failed (not the model's): built from what
    is already imported, since dimfix's modules may be what broke."""
    error = DimfixError(f"internal error: dimfix's own child process failed "
                        f"({type(e).__name__}: {one_line(str(e))}); nothing written for this "
                        "model. Please report it; --verbose shows the traceback")
    error.kind = "InternalError"
    error.__cause__ = e
    return _portable(error)


def _limit_address_space(max_memory: Optional[int]) -> None:  # pragma: no cover
    """A backstop for the parent's RSS check: allocations past the limit fail
    at once instead of racing the check. Virtual size counts what torch maps."""
    if not max_memory:
        return
    try:
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = size + max_memory + OWN_MEMORY + 2**30
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError):
        pass


# -- memory of the child ---------------------------------------------------------------------


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


__all__ = ["Child", "Failed", "Limits", "kill_all", "run_isolated", "warm"]
