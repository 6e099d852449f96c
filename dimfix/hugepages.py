"""Make forks of this process cheap: its anonymous memory in transparent huge pages.

A process that forks many children (the language server, a test session)
pays, at every fork and every child's exit, for each 4 KiB page table entry
of its anonymous memory: with torch, libcst and black loaded that is about
230 MB, ~8 ms to copy at fork and ~10 ms to tear down at exit (a child that
does nothing costs ~18 ms). A 2 MiB huge page is one entry instead of 512.
Linux's MADV_COLLAPSE (6.1) turns the resident 4 KiB pages of a range into
huge pages at once, whatever the system's THP setting; a child that then
writes to one (a reference count) splits only that entry back into small
ones, copy-on-write as before. Nothing else changes: the same bytes at the
same addresses.

Only ranges that are almost fully resident are collapsed, so the process
grows by less than a page per 2 MiB; elsewhere (another OS, an older
kernel, no ctypes) ``collapse`` does nothing.
"""

from __future__ import annotations

import sys
from typing import Iterator, Tuple

try:  # here, not in collapse(): it may run in a thread while another forks
    import ctypes
except ImportError:  # pragma: no cover - a Python built without it
    ctypes = None

_MADV_COLLAPSE = 25
_RESIDENT = 0.9  # of a mapping, for it to be worth collapsing


def collapse() -> int:
    """Collapse this process's resident anonymous memory into huge pages; the
    bytes collapsed (0 where the kernel cannot)."""
    if ctypes is None or not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        huge = _huge_page_size()
        ranges = list(_resident_anonymous())
    except (OSError, ValueError, AttributeError):
        return 0
    done = 0
    for start, end in ranges:
        lo, hi = -(-start // huge) * huge, end // huge * huge
        if hi > lo and madvise(lo, hi - lo, _MADV_COLLAPSE) == 0:
            done += hi - lo
    return done


def _huge_page_size() -> int:
    with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") as f:
        return int(f.read())


def _resident_anonymous() -> Iterator[Tuple[int, int]]:
    """(start, end) of each private anonymous read-write mapping (the heap
    included) that is almost all resident, from /proc/self/smaps."""
    span, anonymous = None, 0
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if fields[0].endswith(":"):
                if fields[0] == "Anonymous:" and span is not None:
                    anonymous = int(fields[1]) * 1024
                continue
            if span is not None and anonymous >= _RESIDENT * (span[1] - span[0]):
                yield span
            start, end = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5] if len(fields) > 5 else ""
            span = (start, end) if fields[1] == "rw-p" and name in ("", "[heap]") else None
            anonymous = 0
    if span is not None and anonymous >= _RESIDENT * (span[1] - span[0]):
        yield span
