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

import gc
import os
import resource
import signal
import sys
import time
from dataclasses import replace
from multiprocessing.connection import Connection, Pipe, wait
from typing import Callable, List, Optional, Sequence

from dimfix.errors import DimfixError, ErrorKind, ModelRaised, Problem, one_line, option, text_of
from dimfix.hugepages import collapse
from dimfix.steps import Failed, Limits, Refused, StepResult
from dimfix.target import size_text

CAPTURE_LIMIT = 64 * 1024  # bytes of the user's own output kept for --verbose
POLL = 0.05  # seconds between memory checks
# --max-memory limits what the model allocates, not dimfix's own working set:
# torch's meta kernels and sympy alone take about 150 MB once loaded.
OWN_MEMORY = 512 * 2**20


_warmed: set = set()  # what warm() has loaded in this process


def warm(plan: bool = False, meta: bool = False) -> None:
    """Import torch here once, so that every child forked later starts with it;
    with ``plan``, also what drafting needs (libcst, black, dimfix's stages,
    torch's first CPU op): worth it when more than one child will be forked;
    with ``meta``, torch's Python meta kernels too (~1.3 s on first use), for a
    process that forks many children (the language server, a test session).

    The caller's environment is left as it was: children hide GPUs from the
    model themselves (_hide_gpus), so a notebook that calls the API keeps CUDA.
    """
    import warnings

    wanted = {"torch"} | ({"plan"} if plan else set()) | ({"meta"} if meta else set())
    if wanted <= _warmed:
        return
    # An interrupt raised inside torch's import can surface as another error
    # (a RuntimeError from a class being created): it waits the second the
    # import takes, then arrives as itself.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch  # noqa: F401

            if plan and "plan" not in _warmed:
                _warm_planning()
            if meta and "meta" not in _warmed:
                _warm_meta()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    _warmed.update(wanted)


def settle() -> None:
    """For a process that forks many children, once it is warm: what it loaded
    is never garbage, so its collector need not walk (and write) those
    objects, whose pages the children share; and its memory goes into huge
    pages (~0.6 s), so that each fork and each child's exit costs ~4 ms, not
    ~18 (hugepages.py). Imports nothing: it may run in a thread while
    another forks."""
    gc.freeze()
    collapse()


def _warm_meta() -> None:
    """torch's Python meta kernels load on first use: use them once here, on
    torch's own layers, so a trace on meta in a child does not pay for them."""
    import torch
    from torch import nn

    with torch.device("meta"), torch.no_grad():
        emb, ln = nn.Embedding(16, 8), nn.LayerNorm(8)
        fc, conv = nn.Linear(8, 8), nn.Conv2d(3, 4, 3)
        x = ln(emb(torch.zeros(1, 4, dtype=torch.long)))
        att = torch.softmax(torch.matmul(x, x.transpose(-2, -1)).masked_fill(
            torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1), float("-inf")), -1)
        torch.nn.functional.gelu(fc(torch.matmul(att, x)).view(1, 4, 2, 4).reshape(1, 4, 8))
        conv(torch.empty(1, 3, 8, 8))


def _warm_planning() -> None:
    import black  # noqa: F401
    import libcst  # noqa: F401

    import dimfix.draft  # noqa: F401
    import dimfix.formatting  # noqa: F401
    import dimfix.plan  # noqa: F401
    import dimfix.rewrite  # noqa: F401

    warm_tracing()


def warm_tracing() -> None:
    """What every step's child needs, a draft's or a verification's: dimfix's
    tracer and torch's first CPU op."""
    import torch

    import dimfix.shapes  # noqa: F401
    import dimfix.trace  # noqa: F401
    from dimfix.build import threads
    from dimfix.load import installed_prefixes

    installed_prefixes()  # sysconfig's paths: read here once, not in every child (~1.3 ms)

    # The first CPU op loads kernels (~0.3 s); on one thread, so no OpenMP
    # pool exists to be lost across fork.
    with threads(1), torch.no_grad():
        layer = torch.nn.Linear(4, 4)
        torch.nn.functional.relu(layer(torch.zeros(1, 4))).view(1, 2, 2).flatten(1)


class Child:
    """One process running ``fn(*args)``: forked by a warm ``worker`` of the
    project (worker.py) when one is given, else forked from this process."""

    def __init__(self, fn: Callable, args: Sequence[object], limits: Limits,
                 worker=None) -> None:
        self.limits = limits
        # What the user's code prints comes through a pipe this process drains
        # as it waits: the first CAPTURE_LIMIT bytes are kept, the rest counted
        # and dropped, so a model that prints forever fills no disk.
        self.out, out_w = os.pipe()
        os.set_blocking(self.out, False)
        self.captured, self.dropped = bytearray(), 0
        self.pid = -1
        self.worker, self.token = None, None
        self.reaped, self.status = False, None  # see _reap
        self.conn, child_conn = Pipe(duplex=False)
        try:
            if worker is not None:
                self._ask(worker, fn, args, child_conn, out_w)
            if self.worker is None:
                self._fork(fn, args, child_conn, out_w)
        except BaseException:
            self.conn.close()
            os.close(self.out)
            raise
        finally:
            child_conn.close()
            os.close(out_w)
        _live.add(self)
        self.started = time.monotonic()
        self.deadline = self.started + limits.timeout
        self.base_rss = _rss(self.pid)
        self.result: Optional[StepResult] = None

    def _ask(self, worker, fn, args, child_conn, out_w: int) -> None:
        from dimfix.worker import WorkerGone

        try:
            self.token, self.pid = worker.spawn(fn, args, self.limits, child_conn.fileno(),
                                                out_w, self.limits.timeout)
            self.worker = worker
        except WorkerGone:
            pass  # the worker is gone: a fork of this process does the step

    def _fork(self, fn, args, child_conn, out_w: int) -> None:
        # Until the child has its own process group and default handlers, a
        # Ctrl-C for the parent's group must not reach it (as KeyboardInterrupt
        # in a copy of the parent's code): held across the fork, released after.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.pid = os.fork()
            if self.pid == 0:  # pragma: no cover - runs in the child
                self.conn.close()
                os.close(self.out)
                from dimfix.worker import die_with_parent

                die_with_parent()
                _child_main(fn, args, child_conn, out_w, self.limits, held)
        finally:
            if self.pid != 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        try:
            os.setpgid(self.pid, self.pid)
        except OSError:
            pass  # the child did it first, or already ended

    # -- waiting -----------------------------------------------------------------------

    def waitables(self) -> List[object]:
        return [self.conn, self.out]

    def poll(self) -> bool:
        """Take the result if it is there; enforce the limits. True once done."""
        if self.result is not None:
            return True
        self._drain()
        if self.conn.poll():
            try:
                self.result = self._printed(self.conn.recv())
            except (EOFError, OSError):
                self.result = self._death()
            except Exception as e:  # a result that does not unpickle: dimfix's bug
                self.result = self._failed(ErrorKind.INTERNAL,
                                           f"internal error: cannot read the result ({e})")
            self._end()
            return True
        if time.monotonic() >= self.deadline:
            self._kill()
            self.result = self._failed(ErrorKind.TIMEOUT,
                                       f"timed out after {self.limits.timeout:g} s "
                                       f"({option('timeout')})")
            self._end()
            return True
        limit = self.limits.max_memory
        if limit and self.base_rss and _rss(self.pid) - self.base_rss > limit + OWN_MEMORY:
            self._kill()
            self.result = self._failed(
                ErrorKind.TOO_BIG, f"the model used more memory than {option('max-memory')} "
                f"allows ({size_text(limit)}); killed")
            self._end()
            return True
        return False

    def wait(self) -> StepResult:
        """Block until done: the step's result."""
        while not self.poll():
            timeout = min(POLL, max(0.0, self.deadline - time.monotonic()))
            wait(self.waitables(), timeout=timeout)
        return self.result

    def _printed(self, result: StepResult) -> StepResult:
        """``result`` with what the user's code printed."""
        printed = self.output()
        if not printed:
            return result
        if isinstance(result, (Refused, Failed)):
            return replace(result, problem=replace(result.problem, printed=printed))
        return replace(result, printed=printed)

    def _failed(self, kind: ErrorKind, message: str) -> Failed:
        return Failed(Problem(kind, message, printed=self.output()), self.limits)

    def output(self) -> str:
        """What the user's code printed (truncated), for --verbose."""
        self._drain()
        text = bytes(self.captured).decode("utf-8", errors="replace")
        return text + (f"\n[... {self.dropped} more bytes not kept]" if self.dropped else "")

    def _drain(self) -> None:
        """Read what the child printed so far: keep the first CAPTURE_LIMIT bytes."""
        while self.out >= 0:
            try:
                data = os.read(self.out, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                return
            room = CAPTURE_LIMIT - len(self.captured)
            self.captured += data[:max(0, room)]
            self.dropped += max(0, len(data) - max(0, room))

    # -- ending ------------------------------------------------------------------------

    def _death(self) -> Failed:
        status = self._reap(block=True)
        if status is None and self.worker is not None and self.worker.gone:
            return self._failed(ErrorKind.CRASHED, "the process the model ran in ended without a "
                                "result: its parent, dimfix's worker, was ended (by the model's "
                                "code?)")
        if status is None:
            return self._failed(ErrorKind.CRASHED, "the model's process ended without a result")
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
            if sig == signal.SIGKILL:
                return self._failed(ErrorKind.CRASHED,
                                    "the model's process was killed (SIGKILL; out of memory?)")
            return self._failed(ErrorKind.CRASHED, f"the model's process died of signal {name}")
        code = os.WEXITSTATUS(status)
        if code == _OWN_FAILURE:
            return self._failed(ErrorKind.INTERNAL, "internal error: dimfix's own process for "
                                "this model failed before it had a result; nothing written")
        return self._failed(ErrorKind.CRASHED, f"the model's code ended the process "
                            f"(os._exit({code})) before dimfix had a result")

    def _kill(self) -> None:
        for target in (lambda s: os.killpg(self.pid, s), lambda s: os.kill(self.pid, s)):
            try:
                target(signal.SIGKILL)
            except (ProcessLookupError, PermissionError, OSError):
                pass

    def _reap(self, block: bool) -> Optional[int]:
        """The child's wait status (its worker reaps a child it forked); once
        known, kept: a second ask (``_end`` after ``_death``) must not wait for
        a report the worker sent once."""
        if self.reaped:
            return self.status
        if self.worker is not None:
            status = self.worker.status(self.token) if block else None
        else:
            try:
                pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, None
            status = status if pid else None
        self.reaped = block or status is not None
        self.status = status
        return status

    def _end(self) -> None:
        # The user's code may have left processes of its own in the group,
        # or outside it (setsid): those came back to this process or to the
        # worker, which end them.
        self._kill()
        self._reap(block=True)
        self.conn.close()
        _live.discard(self)
        from dimfix.worker import kill_orphans

        kill_orphans({c.pid for c in _live})

    def close(self) -> None:
        """Kill the child if it still runs; free its pipes."""
        if self in _live:
            self._end()
        if self.out >= 0:
            os.close(self.out)
            self.out = -1


def run_isolated(fn: Callable, args: Sequence[object], limits: Limits) -> StepResult:
    """``fn(*args)`` in a child: its typed result (never raises for what the child did)."""
    child = Child(fn, args, limits)
    try:
        return child.wait()
    finally:
        child.close()


def kill_all() -> None:
    """Kill every child still running (on SIGINT/SIGTERM in the parent)."""
    for child in list(_live):
        child.close()


_live: "set[Child]" = set()


# -- the child side ------------------------------------------------------------------------


_OWN_FAILURE = 70  # the child's exit status when dimfix's own code there failed


def _child_main(fn, args, conn: Connection, capture: int, limits: Limits,
                held) -> None:  # pragma: no cover
    # What the child inherited (torch, a warm worker's package) is never
    # garbage it must find: out of the collector's sight, a collection walks
    # only what this step allocates (libcst's millions of nodes set off many)
    # and writes no header of the parent's objects, whose pages fork shares
    # (~0.5 s of a timm draft through the API; the CLI disables the collector).
    gc.freeze()
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
        _hide_gpus()
        from dimfix.nodynamo import install

        install()  # a meta trace without importing torch._dynamo (0.7 s): nodynamo.py
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
            payload = fn(*args)
        except DimfixError as e:
            payload = Refused(e.problem())
        except BaseException as e:  # noqa: B036 - the user's code may raise anything
            payload = _contained(e)
        try:
            conn.send(payload)
        except BaseException as e:  # noqa: B036 - e.g. an unpicklable result
            conn.send(_contained(e))
    except BaseException as e:  # noqa: B036 - dimfix's own side of the child failed
        code = _OWN_FAILURE
        try:  # say so, rather than look like the model's os._exit(70)
            conn.send(_own_failure(e))
        except BaseException:  # noqa: B036
            pass
    finally:
        os._exit(code)


def _hide_gpus() -> None:  # pragma: no cover - runs in the child
    """dimfix traces on CPU or meta: code that picks ``"cuda" if
    torch.cuda.is_available() else "cpu"`` takes its CPU path, on a machine
    with a GPU as on one without. Only this child is told so."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.cuda.is_available = lambda: False
        torch.cuda.device_count = lambda: 0


def _contained(e: BaseException):
    """What escaped ``fn``: the user's code leaving by a door that is not an
    Exception (sys.exit, KeyboardInterrupt, a BaseException subclass), or a
    bug in dimfix (user code's exceptions arrive as DimfixError already)."""
    from dimfix.load import user_frame

    said = text_of(e)
    first, name = one_line(said), one_line(type(e).__name__, 80)
    where, func = user_frame(e)
    if isinstance(e, SystemExit):
        code = one_line(text_of(e.code, repr), 80)
        error = ModelRaised(f"{func}the model's code called sys.exit({code})", where)
    elif not isinstance(e, Exception):
        error = ModelRaised(f"{func}the model's code raised {name}"
                            + (f": {first}" if first else ""), where)
    elif isinstance(e, MemoryError) or "Cannot allocate memory" in said \
            or "DefaultCPUAllocator: can't allocate" in said:
        error = DimfixError(f"the trace ran out of memory ({option('max-memory')}, or the "
                            "machine's); nothing written")
        error.kind = ErrorKind.TOO_BIG
        error.__cause__ = e
        return Failed(error.problem())
    else:
        error = DimfixError(
            f"internal error ({name}: {first}); nothing written for this model. "
            "Please report it; --verbose shows the traceback")
        error.kind = ErrorKind.INTERNAL
        error.__cause__ = e
        return Failed(error.problem())
    error.__cause__ = e
    return Refused(error.problem())


def _own_failure(e: BaseException) -> Failed:
    """dimfix's own code in the child failed (not the model's): built from what
    is already imported, since dimfix's modules may be what broke."""
    error = DimfixError(f"internal error: dimfix's own child process failed "
                        f"({type(e).__name__}: {one_line(str(e))}); nothing written for this "
                        "model. Please report it; --verbose shows the traceback")
    error.kind = ErrorKind.INTERNAL
    error.__cause__ = e
    return Failed(error.problem())


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


__all__ = ["Child", "Limits", "kill_all", "run_isolated", "warm"]
