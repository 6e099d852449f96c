"""The spare worker, forked first thing when the ``dimfix`` command starts.

A run's floor is its worker's ``import torch`` (worker.py): every
millisecond before the fork is a millisecond later for the result. So the
entry point forks the spare before it imports click, the CLI or even
``socket`` (its import builds enums: ~10 ms), from ``os``, ``signal`` and
``_socket`` alone; the child becomes the worker (worker.serve_forked) and the
CLI takes it over once it has imported its own modules (worker.start_spare).
"""

from __future__ import annotations

import os
import signal

# (pid, socket fd) of the spare, until taken. No typing import here: it costs
# ~3 ms before the fork (annotations are strings).
_FORKED: "list[tuple[int, int]]" = []


def own_torch_cache() -> None:
    """torch puts a cache folder in $TMPDIR (``torchinductor_<user>``) on first
    use of its meta kernels: give it one of dimfix's own instead, removed when
    this process exits (unless the user chose one). Before any worker is
    forked: its children inherit the environment."""
    import atexit
    import shutil
    import tempfile

    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="dimfix-torch-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(folder, "inductor")
    home = os.getpid()
    atexit.register(lambda: os.getpid() == home and shutil.rmtree(folder, ignore_errors=True))


def fork_early() -> None:
    """Fork the spare worker now (unless DIMFIX_WORKER=0): it imports torch
    while this process imports the CLI, reads the arguments and the
    configuration and finds the models."""
    if os.environ.get("DIMFIX_WORKER", "1") == "0" or _FORKED:
        return
    import _socket

    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    pid = -1
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the worker
            ours.close()
            from dimfix.worker import serve_forked

            serve_forked(theirs.detach(), held)  # never returns
    finally:
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    theirs.close()
    _FORKED.append((pid, ours.detach()))


def take_forked() -> "tuple[int, int] | None":
    """The spare fork_early forked, once: (pid, socket fd), or None."""
    return _FORKED.pop() if _FORKED else None


__all__ = ["fork_early", "own_torch_cache", "take_forked"]
