"""The ``dimfix`` command's entry point: quiet about an interrupt from the first instant.

Importing click and the CLI takes a few hundred milliseconds; a Ctrl-C then
would print Python's KeyboardInterrupt traceback. Until cli.run installs its
own handlers nothing has started (no child, no file), so an early SIGINT or
SIGTERM just says so and exits.
"""

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
    from dimfix.cli import run as cli_run

    cli_run()
