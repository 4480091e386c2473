"""The bound on concurrent argon2 hashes in one process (each takes 64 MiB while it runs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from flotilla_users import passwords


class CountingHasher:
    """Stands for argon2 (time and concurrency only): records how many run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def _run(self) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1

    def hash(self, password: str) -> str:
        self._run()
        return f"hash-of-{password}"

    def verify(self, password_hash: str, password: str) -> bool:
        self._run()
        return password_hash == f"hash-of-{password}"


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingHasher]:
    counting = CountingHasher()
    monkeypatch.setattr(passwords, "_hasher", counting)
    yield counting
    passwords.limit_concurrent_hashes(1)


@pytest.mark.parametrize("bound", [1, 3])
def test_no_more_hashes_run_at_once_than_the_bound(hasher: CountingHasher, bound: int) -> None:
    passwords.limit_concurrent_hashes(bound)
    results: list[bool] = []

    def login(n: int) -> None:
        stored = passwords.hash_password(f"pw-{n}")
        results.append(passwords.verify_password(stored, f"pw-{n}"))

    threads = [threading.Thread(target=login, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 12  # everyone got a turn
    assert hasher.most == bound


def test_the_real_hash_still_verifies_and_refuses() -> None:
    stored = passwords.hash_password("correct horse battery")
    assert passwords.verify_password(stored, "correct horse battery")
    assert not passwords.verify_password(stored, "wrong")
    assert not passwords.verify_password(None, "anything")
