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


# --- Store processes (IngestBatcher(processes=N)): module-level seams, so a spawned process can load them.


def record_in_file(batches):  # type: ignore[no-untyped-def]
    """A seam that writes where it ran and what it got: the test reads it back."""
    import os

    folder = os.environ["EB_TEST_STORE_DIR"]
    for batch in batches:
        if batch.seq == 13:  # the store process dies mid-call (a crash, an OOM kill)
            os._exit(1)
        if batch.seq == 7:
            raise RuntimeError("the store refused it")
        with open(os.path.join(folder, f"{batch.seq}.txt"), "w") as out:
            out.write(f"{os.getpid()} {int(batch.timestamps_ms[0])}")


async def test_store_processes_run_the_seam_in_another_process_ack_only_after_it_and_survive_a_crash(
    tmp_path, monkeypatch
):
    import os

    monkeypatch.setenv("EB_TEST_STORE_DIR", str(tmp_path))  # inherited by the spawned store process
    batcher = ingest.IngestBatcher(enqueue=record_in_file, linger_s=0.0, max_inflight=2, processes=1)
    batcher.start()
    try:
        await batcher.submit(_batch(1))
        written = (tmp_path / "1.txt").read_text().split()  # stored before the future resolved
        assert int(written[0]) != os.getpid() and written[1] == "1"

        with pytest.raises(RuntimeError, match="the store refused it"):
            await batcher.submit(_batch(7))
        assert not (tmp_path / "7.txt").exists()

        # A dead store process fails its group (the devices are nacked and resend), then a new one stores.
        with pytest.raises(Exception, match="terminated abruptly|BrokenProcessPool|process"):
            await batcher.submit(_batch(13))
        await batcher.submit(_batch(2))
        again = (tmp_path / "2.txt").read_text().split()
        assert int(again[0]) not in (os.getpid(), int(written[0]))
    finally:
        await batcher.close()
    assert batcher.enqueued_batches == 2 and batcher.failed_batches == 2


def record_groups(batches):  # type: ignore[no-untyped-def]
    """A seam that logs each group's size; the group holding seq 1 waits until the test lets it go."""
    import os
    import time

    folder = os.environ["EB_TEST_STORE_DIR"]
    with open(os.path.join(folder, "groups.txt"), "a") as out:
        out.write(f"{len(batches)}\n")
    if any(batch.seq == 1 for batch in batches):
        open(os.path.join(folder, "started"), "w").close()
        while not os.path.exists(os.path.join(folder, "release")):
            time.sleep(0.01)


async def test_batches_that_arrive_while_the_store_process_stores_go_together_in_the_next_group(tmp_path, monkeypatch):
    import asyncio

    monkeypatch.setenv("EB_TEST_STORE_DIR", str(tmp_path))
    batcher = ingest.IngestBatcher(enqueue=record_groups, linger_s=0.0, max_inflight=4, processes=1)
    batcher.start()
    try:
        first = batcher.submit(_batch(1))
        while not (tmp_path / "started").exists():  # noqa: ASYNC110 - the evidence is a file another process writes
            await asyncio.sleep(0.01)
        later = []
        for seq in range(2, 7):
            later.append(batcher.submit(_batch(seq)))
            for _ in range(5):  # the batcher's loop gets its turns: it would send a group of one now
                await asyncio.sleep(0)
        (tmp_path / "release").touch()
        await asyncio.gather(first, *later)
    finally:
        await batcher.close()
    # One group of one, then the five that came meanwhile as one group: not five groups queued behind it.
    assert (tmp_path / "groups.txt").read_text().split() == ["1", "5"]
    assert batcher.enqueued_batches == 6
