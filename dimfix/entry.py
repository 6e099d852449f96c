"""The ``dimfix`` command's entry point: quiet about an interrupt from the first instant.

It forks the spare worker before anything else (spare.py). Importing click
and the CLI takes a few hundred milliseconds; a Ctrl-C then
would print Python's KeyboardInterrupt traceback. Until cli.run installs its
own handlers nothing has started (no child, no file), so an early SIGINT or
SIGTERM just says so and exits.
"""

import gc
import os
import signal
import sys


def _early(signum, frame):  # pragma: no cover - timing-dependent
    sys.stderr.write("dimfix: interrupted; nothing written\n")
    sys.stderr.flush()
    os._exit(130 if signum == signal.SIGINT else 143)


def run() -> None:
    signal.signal(signal.SIGINT, _early)
    signal.signal(signal.SIGTERM, _early)
    # The spare worker first (spare.py): it imports torch, the run's floor,
    # while this process imports click and the CLI. Both inherit from here
    # what must hold before the fork: no collector (a run builds few cycles,
    # and walking torch's objects costs 0.2-0.5 s), and torch's cache folder.
    gc.disable()
    from dimfix.spare import fork_early, own_torch_cache

    own_torch_cache()
    fork_early()
    from dimfix.cli import run as cli_run

    cli_run()
