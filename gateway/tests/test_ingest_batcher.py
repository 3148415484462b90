"""The ingest batcher's connection check: Django's per-request housekeeping, at most once a second per thread."""

from __future__ import annotations

import numpy as np
import pytest

from gateway import ingest
from readings.batch import ReadingsBatch


def _batch(seq: int) -> ReadingsBatch:
    return ReadingsBatch(1, 1, seq, np.array([1], dtype=np.int64), np.array([seq], dtype=np.int64), np.ones((1, 1)))


async def test_the_connection_check_runs_once_per_interval_and_again_after_a_failure(monkeypatch):
    checks: list[int] = []
    real = ingest.close_old_connections
    monkeypatch.setattr(ingest, "close_old_connections", lambda: (checks.append(1), real())[1])
    calls: list[int] = []

    def enqueue(batches):  # the seam: the third group fails
        calls.append(len(batches))
        if len(calls) == 3:
            raise RuntimeError("broker gone")

    batcher = ingest.IngestBatcher(enqueue=enqueue, linger_s=0.0, max_inflight=1, recheck_s=3600)
    batcher.start()
    try:
        for seq in range(1, 6):
            future = batcher.submit(_batch(seq))
            if seq == 3:
                with pytest.raises(RuntimeError):
                    await future
            else:
                await future
    finally:
        await batcher.close()
    assert calls == [1, 1, 1, 1, 1]
    # The first call checks; the next two reuse it within the interval; the one after the failure
    # checks again (a broken connection is dropped), and the fifth reuses that.
    assert len(checks) == 2
