"""Parse what the user typed: ``PATH::NAME``, ``--input`` shapes, ``--init`` values."""

from __future__ import annotations

import ast
import math
import os
import re
from typing import Dict, Iterable, Optional, Tuple

from dimfix.errors import BadUsage, option
from dimfix.records import InputSpec

# dtype prefixes accepted by --input, and the torch dtype attribute each names.
DTYPES = {
    "float": "float32",
    "float32": "float32",
    "float16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "float64": "float64",
    "double": "float64",
    "long": "int64",
    "int64": "int64",
    "int": "int32",
    "int32": "int32",
    "bool": "bool",
}
MAX_DIM = 2**31 - 1
MAX_SIZE = 2**60  # bytes: a --max-memory past this is a typo (and overflows setrlimit)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def parse_target(spec: str) -> Tuple[str, str]:
    """``models/net.py::Net`` -> (``models/net.py``, ``Net``)."""
    path, sep, name = spec.rpartition("::")
    if not sep or not path or not name:
        raise BadUsage(f"target {spec!r} must be PATH::NAME, e.g. model.py::Net")
    if not all(_IDENT.match(part) for part in name.split(".")):
        raise BadUsage(f"target {spec!r}: {name!r} is not a Python name")
    return path, name


def parse_input(text: str) -> InputSpec:
    """``1x3x32x32``, ``long:2x12`` or ``image=1x3x224x224`` -> InputSpec."""
    name = None
    spec = text.strip()
    key, eq, rest = spec.partition("=")
    if eq:
        if not _IDENT.match(key):
            raise BadUsage(f"{option('input')} {text!r}: {key!r} is not a keyword name")
        name, spec = key, rest
    dtype = "float32"
    prefix, colon, dims = spec.rpartition(":")
    if colon:
        if prefix not in DTYPES:
            known = ", ".join(sorted(DTYPES))
            raise BadUsage(f"{option('input')} {text!r}: unknown dtype {prefix!r} (one of {known})")
        dtype, spec = DTYPES[prefix], dims
    parts = spec.split("x")
    shape = []
    for part in parts:
        if not (part.isascii() and part.isdigit()):
            raise BadUsage(
                f"{option('input')} {text!r}: {part!r} is not a positive whole number; "
                "write sizes like 1x3x32x32"
            )
        size = int(part)
        if size < 1:
            raise BadUsage(f"{option('input')} {text!r}: sizes must be at least 1, got {size}")
        if size > MAX_DIM:
            raise BadUsage(f"{option('input')} {text!r}: size {size} is too large")
        shape.append(size)
    return InputSpec(tuple(shape), dtype, name)


def parse_init(items: Iterable[str], flag: str = "init") -> Dict[str, object]:
    """``KEY=VALUE`` pairs; VALUE must be a Python literal (``ast.literal_eval``)."""
    init: Dict[str, object] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not _IDENT.match(key):
            raise BadUsage(f"{option(flag)} {item!r} must be KEY=VALUE, e.g. num_classes=10")
        try:
            init[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise BadUsage(
                f"{option(flag)} {item!r}: {value.strip()!r} is not a Python literal "
                "(numbers, strings, tuples, lists, dicts, True/False/None)"
            ) from None
    return init


def parse_size(text: str, flag: Optional[str] = None) -> int:
    """``4GiB``, ``512MB``, ``1000`` -> bytes (for --max-memory): at least one
    byte (0 is not "no limit") and at most MAX_SIZE."""
    flag = flag or option("max-memory")
    match = _SIZE.match(str(text))
    unit = (match.group(2) or "").lower().rstrip("b") if match else None
    if not match or unit not in _UNITS:
        raise BadUsage(f"{flag} {text!r}: write a size like 4GiB or 512MB")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise BadUsage(f"{flag} {text!r}: a memory limit must be at least 1 byte, "
                       "e.g. 4GiB or 512MB")
    if size > MAX_SIZE:
        raise BadUsage(f"{flag} {text!r}: more than any machine has (at most 1 EiB)")
    return size


def parse_seconds(value: object, flag: Optional[str] = None) -> float:
    """A time limit: a positive finite number of seconds (nan and inf are floats too)."""
    flag = flag or option("timeout")
    try:
        seconds = float(value) if type(value) is not bool else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise BadUsage(f"{flag} {value!r}: must be a positive finite number of seconds")
    return seconds


def size_text(n: int) -> str:
    """``3221225472`` -> ``3.0 GiB``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


_ITEM_SIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4,
              "bool": 1}


def input_bytes(spec: InputSpec) -> int:
    """Bytes of the sample tensor ``spec`` describes."""
    return math.prod(spec.shape) * _ITEM_SIZE.get(spec.dtype, 8)


def default_max_memory() -> int:
    """A quarter of physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30
