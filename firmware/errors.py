from __future__ import annotations


class FirmwareError(Exception):
    """A firmware operation that cannot proceed; the message says why."""
