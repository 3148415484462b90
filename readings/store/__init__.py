"""The readings store behind a narrow interface (`base.ReadingsStore`); `get_store()` picks the backend."""

from __future__ import annotations

from readings.store.base import ReadingsStore
from readings.store.sql import SqlStore


def get_store() -> ReadingsStore:
    # PostgreSQL and SQLite share SqlStore, which picks its write path from the connection.
    return SqlStore()


__all__ = ["ReadingsStore", "SqlStore", "get_store"]
