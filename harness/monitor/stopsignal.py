"""A stop flag that a sleeping thread wakes on at once, for the sampler's 10 Hz loop.

``threading.Event.wait`` runs a Python ``Condition`` (a waiter lock made, queued and dropped on
every call); at 10 Hz that bookkeeping is a fair part of an idle thread's cost. Waiting on a
held lock with a timeout is one C call, and releasing it wakes the sleeper as promptly.
"""

from __future__ import annotations

import threading


class StopSignal:
    """``set()`` once; ``wait(timeout)`` returns True as soon as it is set, False on timeout."""

    __slots__ = ("_lock", "_guard", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # held until set(): waiters block on it
        self._guard = threading.Lock()
        self._set = False

    def set(self) -> None:
        with self._guard:
            if not self._set:
                self._set = True
                self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        if self._set:
            return True
        if self._lock.acquire(timeout=max(0.0, timeout)):
            self._lock.release()  # stays released: every later wait returns at once
            return True
        return False
