"""The readings domain's errors. Interfaces map them to a protocol code or an HTTP status in one place."""

from __future__ import annotations


class ReadingsError(Exception):
    """Base of every error the readings domain raises."""


class IngestUnavailable(ReadingsError):
    """The batches could not be durably enqueued (broker down, unconfirmed, or store down in embedded mode).

    The caller must not acknowledge the readings to the device: the device keeps them and resends.
    """


class MalformedBatches(ReadingsError):
    """A queue message that does not decode to valid readings batches."""


class ReadingsQueryError(ReadingsError):
    """A query that cannot be answered: unknown channels, a bad range, resolution or aggregate."""
