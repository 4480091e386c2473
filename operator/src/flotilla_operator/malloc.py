"""Fewer glibc malloc arenas for a threaded operator.

glibc gives each thread that allocates under contention an arena of its own (up to 8 per core)
and returns little of a fragmented arena to the system: kopf's handler threads, the client's
and the resync's made RSS grow with the threads, not with the objects held. ``mallopt`` is the
setting the ``MALLOC_ARENA_MAX`` variable sets, applied from inside so that every way of
starting the operator (the image, ``make run``, the tests) gets it; no library wraps this call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def limit_arenas(count: int = ARENAS) -> bool:
    """Cap glibc's arenas at ``count`` (not when MALLOC_ARENA_MAX is set, nor off glibc); True if set."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the operator's user chose; glibc read it at start
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl or another libc: no such setting
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))
