"""glibc malloc settings for a threaded operator that parses large JSON bodies.

- **Arenas**: glibc gives each thread that allocates under contention an arena of its own (up to
  8 per core) and returns little of a fragmented arena to the system: kopf's handler threads,
  the client's and the resync's made RSS grow with the threads, not with the objects held.
- **The mmap threshold**: glibc raises it after each large block freed (up to 32 MB), so that
  the next listing's buffers (megabytes at 2,000 Microservices) land in the heap, where freed
  space between live objects is never given back. A fixed threshold keeps them in mappings
  that go back to the system when freed.
- **Trimming**: ``trim`` gives the heap's free pages back after a burst (a resync, a convergence).

``mallopt`` is what the ``MALLOC_ARENA_MAX`` and ``MALLOC_MMAP_THRESHOLD_`` variables set,
applied from inside so that every way of starting the operator (the image, ``make run``, the
tests) gets it; a variable set by the operator's user wins. No library wraps these calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from functools import cache
from typing import Any

# glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's starting value, kept from growing


@cache
def _libc_function(name: str, argtypes: tuple[Any, ...]) -> Callable[..., int] | None:
    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("c")), name)
    except (OSError, AttributeError):
        return None  # musl or another libc: no such call
    function.argtypes, function.restype = list(argtypes), ctypes.c_int
    return function  # type: ignore[no-any-return]


def _mallopt(variable: str, option: int, value: int) -> bool:
    if os.environ.get(variable):
        return False  # the operator's user chose; glibc read it at start
    mallopt = _libc_function("mallopt", (ctypes.c_int, ctypes.c_int))
    return mallopt is not None and bool(mallopt(option, value))


def limit_arenas(count: int = ARENAS) -> bool:
    """Cap glibc's arenas at ``count`` (not when MALLOC_ARENA_MAX is set, nor off glibc); True if set."""
    return _mallopt("MALLOC_ARENA_MAX", M_ARENA_MAX, count)


def fix_mmap_threshold(size: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Blocks of ``size`` bytes and more in their own mappings, always; True if set.

    Not when MALLOC_MMAP_THRESHOLD_ is set, nor off glibc.
    """
    return _mallopt("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, size)


def trim() -> bool:
    """Give the free pages of every arena back to the system; True if any went back."""
    malloc_trim = _libc_function("malloc_trim", (ctypes.c_size_t,))
    return malloc_trim is not None and bool(malloc_trim(0))
