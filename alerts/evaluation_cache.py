"""The ingest worker's compiled rule lookup, rebuilt only when the rules or channels have changed.

Building the lookup costs seconds for a large fleet, so a worker must not rebuild it on a timer. Every
ALERTS_RULE_CACHE_S it asks the database for a fingerprint (rule and channel counts and the newest
change: two indexed aggregates) and rebuilds only when that differs; ALERTS_RULE_REBUILD_S is the
backstop for a change the fingerprint cannot see (a channel re-allocated to another load). A change made
in this process drops the lookup at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from django.conf import settings

T = TypeVar("T")


class Cached(Generic[T]):
    def __init__(self) -> None:
        self._value: T | None = None
        self._built = 0.0
        self._checked = 0.0
        self._fingerprint: Hashable = None

    def get(self, build: Callable[[], T], fingerprint: Callable[[], Hashable]) -> T:
        now = time.monotonic()
        if self._value is not None and now - self._checked <= settings.ALERTS_RULE_CACHE_S:
            return self._value
        current = fingerprint()
        self._checked = now
        stale = now - self._built > settings.ALERTS_RULE_REBUILD_S
        if self._value is None or current != self._fingerprint or stale:
            self._value, self._built, self._fingerprint = build(), now, current
        return self._value

    def clear(self) -> None:
        self._value = None


rules: Cached[object] = Cached()


def invalidate() -> None:
    rules.clear()
