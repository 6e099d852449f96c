"""Trace the rewritten source before anything is written."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Iterable, Tuple

from dimfix.errors import DimfixError, VerifyFailed
from dimfix.load import Location, exec_source, find_model
from dimfix.records import Options


def verify_source(loc: Location, text: str, options: Options,
                  allowed: Iterable[Tuple[str, str]]) -> None:
    """Raise VerifyFailed unless ``text`` traces with only the ``allowed``
    (layer path, argument) mismatches left: the ones dimfix declined to fix."""
    from dimfix.trace import trace_model

    previous = sys.modules.get(loc.module)
    try:
        with tempfile.TemporaryDirectory(prefix="dimfix-verify-") as folder:
            copy = os.path.join(folder, os.path.basename(loc.path))
            with open(copy, "w", encoding="utf-8") as f:
                f.write(text)
            try:
                module = exec_source(loc, text, filename=copy)
                target = find_model(module, options.name, loc.path)
                trace = trace_model(target, options, lambda filename: filename == copy)
            except DimfixError as e:
                raise VerifyFailed(f"fix did not verify: {e}; nothing written") from e
    finally:
        if previous is not None:
            sys.modules[loc.module] = previous
    left = {(m.layer_path, m.arg) for m in trace.mismatches} - set(allowed)
    if left:
        detail = ", ".join(f"{path} {arg}" for path, arg in sorted(left))
        raise VerifyFailed(f"fix did not verify: still wrong after the edit: {detail}; nothing written")
