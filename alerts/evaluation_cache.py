"""The ingest worker's compiled rule lookup: kept for ALERTS_RULE_CACHE_S, dropped when this process changes a rule."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings

T = TypeVar("T")


class Cached(Generic[T]):
    def __init__(self) -> None:
        self._value: T | None = None
        self._built = 0.0

    def get(self, build: Callable[[], T]) -> T:
        now = time.monotonic()
        if self._value is None or now - self._built > settings.ALERTS_RULE_CACHE_S:
            self._value, self._built = build(), now
        return self._value

    def clear(self) -> None:
        self._value = None


rules: Cached[object] = Cached()


def invalidate() -> None:
    rules.clear()
