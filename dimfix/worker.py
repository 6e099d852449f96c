"""A warm worker per project: the process every step's child is forked from.

Without it each step's child imports the user's package again (timm: a few
hundred modules, seconds) and pays torch's first-use costs again. A
``Worker`` is a child of dimfix, forked once per project, that imports torch
and the project's package (its unchanged modules, as on disk) and then forks
one child per step (isolate.Child), which only executes again the modules
whose text changed and those holding what they define (preload.py, which
also keeps registries such as torchvision's taking a module executed twice).
dimfix itself still never imports user code; the worker is user-code land
like any child, dies with dimfix (the parent-death signal) and with its
socket.

The protocol, over a Unix socket pair: dimfix sends ``("run", token, fn,
args, limits)`` with the child's result pipe and capture file as passed file
descriptors; the worker answers ``("started", token, pid)`` and, once the
child ended, ``("exited", token, wait_status)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import pickle
import signal
import socket
import struct
import sys
import time
from multiprocessing.connection import wait
from typing import Dict, List, Optional, Set, Tuple

_HEADER = struct.Struct("!Q")
READY = 60.0  # seconds a worker may take to import torch and the package, at least
STARTED = 10.0  # seconds a ready worker may take to fork a step's child
_PR_SET_PDEATHSIG = 1


class WorkerGone(Exception):
    """The worker process ended (its package's import killed it, say)."""


class Worker:
    """dimfix's side of one warm worker: ``spawn`` a step's child, learn how it ended."""

    def __init__(self, root: Optional[str], package: Optional[str]) -> None:
        """A worker for the project at ``root`` (importing ``package``); with
        ``root`` None, a spare that imports torch and waits to be ``adopt``-ed."""
        self.root, self.package = root, package
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        signals = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the worker
                ours.close()
                _serve(theirs, root, package, signals)
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, signals)
        theirs.close()
        self.pid = pid
        _WORKER_PIDS.add(pid)
        self.sock = ours
        self.statuses: Dict[int, int] = {}  # token -> wait status of its ended child
        self.started: Dict[int, int] = {}  # token -> pid
        self.loaded: Dict[str, int] = {}  # file the worker imported -> its mtime then
        self.tokens = 0
        self.gone = False

    def adopt(self, root: str, package: Optional[str]) -> None:
        """Give a spare worker its project: it imports ``package`` from ``root``
        once torch is imported."""
        self.root, self.package = root, package
        try:
            _send(self.sock, ("project", 0, (root, package)))
        except OSError:
            self._lost()

    def stale(self, target: str) -> bool:
        """Is the worker gone, or has a file it imported changed on disk since,
        other than ``target`` (which every child executes again anyway)?"""
        while not self.gone and self._read(0.0):
            pass
        if self.gone:
            return True
        for file, mtime in self.loaded.items():
            try:
                if os.stat(file).st_mtime_ns != mtime and file != target:
                    return True
            except OSError:
                return True
        return False

    # -- asking ---------------------------------------------------------------------------

    def spawn(self, fn, args, limits, result_fd: int, capture_fd: int,
              timeout: float) -> Tuple[int, int]:
        """Fork a child running ``fn(*args)`` (isolate._child_main): (token, pid)."""
        self.tokens += 1
        token = self.tokens
        try:
            payload = pickle.dumps(("run", token, fn, args, limits), pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise WorkerGone(f"cannot send the step ({e})") from None
        try:
            socket.send_fds(self.sock, [_HEADER.pack(len(payload))], [result_fd, capture_fd])
            self.sock.sendall(payload)
        except OSError as e:
            self._lost()
            raise WorkerGone(str(e)) from None
        # The worker answers once it has imported torch and the package (user
        # code, which may hang: bounded by the model's timeout, and a minute
        # at least, for torch on a loaded machine); then at once.
        deadline = time.monotonic() + max(timeout, READY) + STARTED
        while token not in self.started:
            if not self._read(max(0.0, deadline - time.monotonic())):
                self._lost()
                raise WorkerGone("the worker did not start the step in time")
        return token, self.started[token]

    def status(self, token: int, timeout: float = 5.0) -> Optional[int]:
        """How the child of ``token`` ended (a wait status), once the worker says."""
        deadline = time.monotonic() + timeout
        while token not in self.statuses and not self.gone:
            if not self._read(max(0.0, deadline - time.monotonic())):
                break
        return self.statuses.pop(token, None)

    def close(self) -> None:
        if not self.gone:
            self._lost()

    # -- the socket -----------------------------------------------------------------------

    def _read(self, timeout: float) -> bool:
        """Take one message; False when none came in ``timeout`` or the worker is gone."""
        if self.gone or not wait([self.sock], timeout):
            return False
        try:
            message = _receive(self.sock)
        except (OSError, EOFError):
            self._lost()
            return False
        kind, token, value = message
        if kind == "loaded":
            self.loaded = value
        else:
            (self.started if kind == "started" else self.statuses)[token] = value
        return True

    def _lost(self) -> None:
        self.gone = True
        _WORKER_PIDS.discard(self.pid)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        self.sock.close()


_SPARE: List[Worker] = []  # at most one worker forked before its project was known


def start_spare() -> None:
    """Fork a worker at once, before the project is known: it imports torch
    while dimfix parses its arguments, reads the configuration and finds the
    models (on another core); the first project to need a worker adopts it
    (``take_spare``). Ended at exit if no project took it."""
    if os.environ.get("DIMFIX_WORKER", "1") == "0" or _SPARE:
        return
    import atexit

    _SPARE.append(Worker(None, None))
    atexit.register(close_spare)


def take_spare() -> Optional[Worker]:
    spare = _SPARE.pop() if _SPARE else None
    return spare if spare is not None and not spare.gone else None


def close_spare() -> None:
    while _SPARE:
        _SPARE.pop().close()


def _receive(sock: socket.socket, with_fds: bool = False):
    """One length-prefixed pickle (and the file descriptors sent with it)."""
    head, fds = b"", []
    while len(head) < _HEADER.size:
        if with_fds and not fds:
            data, fds, _, _ = socket.recv_fds(sock, _HEADER.size - len(head), 2)
        else:
            data = sock.recv(_HEADER.size - len(head))
        if not data:
            raise EOFError
        head += data
    (size,) = _HEADER.unpack(head)
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(min(size - len(body), 1 << 20))
        if not chunk:
            raise EOFError
        body += chunk
    message = pickle.loads(body)
    return (message, fds) if with_fds else message


def _send(sock: socket.socket, message) -> None:
    payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(payload)) + payload)


# -- the worker process ------------------------------------------------------------------------


_PR_SET_CHILD_SUBREAPER = 36
_WORKER_PIDS: Set[int] = set()  # this process's live workers (dimfix's side)


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_SUBREAPER: List[bool] = []  # this process became one: every child of it is dimfix's


def become_subreaper() -> None:
    """Orphans of this process's descendants (a model's grandchild that called
    setsid, say) become this process's children, so ``kill_orphans`` can end
    them. Only for a process all of whose children are dimfix's (the CLI, the
    language server, a worker), never a caller of the API. Linux only."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _SUBREAPER[:] = [True]


def kill_orphans(known: Set[int]) -> None:
    """In a subreaper, end every child that is not one it started itself
    (``known``, and its workers): what a model left behind, reparented here."""
    if not _SUBREAPER:
        return
    known = set(known) | _WORKER_PIDS
    for pid in _children():
        if pid in known:
            continue
        try:
            group = os.getpgid(pid)
            if group != os.getpgid(0):  # its own group (setsid): all of it goes
                os.killpg(group, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _children() -> List[int]:
    pids: List[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            pass
    return pids


def own_torch_cache() -> None:
    """torch puts a cache folder in $TMPDIR (``torchinductor_<user>``) on first
    use of its meta kernels: give it one of dimfix's own instead, removed when
    this process exits (unless the user chose one)."""
    import atexit
    import shutil
    import tempfile

    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="dimfix-torch-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(folder, "inductor")
    home = os.getpid()
    atexit.register(lambda: os.getpid() == home and shutil.rmtree(folder, ignore_errors=True))


def die_with_parent() -> None:  # pragma: no cover - runs in a child
    """SIGKILL this process when its parent dies (Linux's PR_SET_PDEATHSIG)."""
    parent = os.getppid()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent or parent == 1:  # the parent died before the call
        os._exit(1)


def _serve(sock: socket.socket, root: Optional[str], package: Optional[str],
           held) -> None:  # pragma: no cover - the worker process
    code = 0
    try:
        die_with_parent()
        become_subreaper()  # a step's leftovers come back here, to be ended
        _WORKER_PIDS.clear()  # dimfix's other workers are not ours
        os.setpgid(0, 0)  # the terminal's Ctrl-C goes to dimfix, which ends us
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        # Nothing of dimfix's own may stay open here for as long as the worker
        # lives: a language server's client waits for its stdout to close.
        keep = sock.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, _max_fd())
        sys.dont_write_bytecode = True
        from dimfix.isolate import _hide_gpus, warm
        from dimfix.nodynamo import install as install_stand_in
        from dimfix.preload import mtimes, preload

        warm()
        _hide_gpus()  # user modules imported here see no GPU, as in each child
        install_stand_in()  # as in each child, before the package may import it
        if root is None:  # a spare: dimfix says which project once it knows
            try:
                _, _, (root, package) = _receive(sock)
            except (EOFError, OSError):
                return
        if package:
            preload(root, package)
        _send(sock, ("loaded", 0, mtimes()))
        _loop(sock)
    except BaseException:  # noqa: B036 - whatever ends the worker ends it quietly
        code = 70
    finally:
        os._exit(code)


def _max_fd() -> int:
    try:
        return max(int(fd) for fd in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return 1024


def _loop(sock: socket.socket) -> None:  # pragma: no cover - the worker process
    tokens: Dict[int, int] = {}  # pid -> token
    warming = iter(_WARM_STEPS)
    while True:
        step = next(warming, None)
        # A child's end wakes the loop through its pidfd: dimfix waits for the
        # report of it after every step. Without one, the loop polls.
        polling = step is not None or any(pid not in _EXITS for pid in tokens)
        ready = wait([sock, *_EXITS.values()], 0.05 if polling else None)
        _reap(sock, tokens)
        if sock not in ready:
            if step is not None:
                # Idle before the first step, or while it runs: load what the
                # next steps need, a piece at a time (the socket is read
                # between pieces), so each child forked later has it. A
                # child that ends meanwhile is reaped and reported at once:
                # dimfix waits for that (importing libcst takes 0.2 s).
                with _reaping(sock, tokens):
                    step()
            continue
        warming = itertools.chain([step] if step else [], warming)
        try:
            (kind, token, fn, args, limits), fds = _receive(sock, with_fds=True)
        except (EOFError, OSError):
            return  # dimfix is gone
        pid = _fork_step(fn, args, limits, fds, sock)
        tokens[pid] = token
        _watch(pid)
        for fd in fds:
            os.close(fd)
        _send(sock, ("started", token, pid))


_EXITS: Dict[int, int] = {}  # in the worker: pid of a step's child -> its pidfd


def _watch(pid: int) -> None:  # pragma: no cover - the worker process
    """Open a pidfd for ``pid``: readable once it ended (Linux 5.3)."""
    try:
        _EXITS[pid] = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pass  # the loop polls for it


@contextlib.contextmanager
def _reaping(sock: socket.socket, tokens: Dict[int, int]):  # pragma: no cover - the worker
    """Reap and report children from SIGCHLD while the body runs. Only around a
    warm step: the loop is then not using the socket, and no child is forked
    (it would inherit the handler)."""
    signal.signal(signal.SIGCHLD, lambda signum, frame: _reap(sock, tokens))
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _warm_tracing() -> None:  # pragma: no cover - the worker process
    from dimfix.isolate import warm_tracing

    warm_tracing()


def _warm_libcst() -> None:  # pragma: no cover - the worker process
    import libcst  # noqa: F401


def _warm_black() -> None:  # pragma: no cover - the worker process
    import black  # noqa: F401


def _warm_dimfix() -> None:  # pragma: no cover - the worker process
    from dimfix.isolate import warm

    warm(plan=True)


# First what every child needs (a verification's too), then what drafts
# need, a piece at a time: a request that arrives during a piece waits for
# it (libcst's import alone takes 0.15-0.4 s).
_WARM_STEPS = (_warm_tracing, _warm_libcst, _warm_black, _warm_dimfix)


def _fork_step(fn, args, limits, fds, sock) -> int:  # pragma: no cover - the worker
    from multiprocessing.connection import Connection

    from dimfix.isolate import _child_main

    held = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    pid = os.fork()
    if pid == 0:
        sock.close()
        for fd in _EXITS.values():  # its siblings' ends are the worker's business
            os.close(fd)
        _EXITS.clear()
        die_with_parent()
        _child_main(fn, args, Connection(fds[0], readable=False), fds[1], limits, held)
    return pid


def _reap(sock: socket.socket, tokens: Dict[int, int]) -> None:  # pragma: no cover
    while tokens:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        token = tokens.pop(pid, None)
        if pid in _EXITS:
            os.close(_EXITS.pop(pid))
        if token is not None:
            kill_orphans(set(tokens))  # what that step left running (setsid)
            _send(sock, ("exited", token, status))


__all__ = ["Worker", "WorkerGone", "close_spare", "die_with_parent", "start_spare",
           "take_spare"]
