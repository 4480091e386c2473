"""glibc's malloc settings: applied unless the operator's user set them, and trimming works."""

from __future__ import annotations

import ctypes

import pytest

from flotilla_operator import malloc


def test_a_variable_the_user_set_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert not malloc.limit_arenas()
    assert not malloc.fix_mmap_threshold()


def test_on_glibc_the_settings_apply_and_a_freed_burst_is_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert malloc.limit_arenas()
    assert malloc.fix_mmap_threshold()
    # Many small blocks, then the first half freed: glibc keeps those pages until trimmed.
    blocks = [ctypes.create_string_buffer(4000) for _ in range(20000)]
    del blocks[:10000]
    assert malloc.trim()
