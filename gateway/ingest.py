"""Coalesce verified batches from many connections and hand each group to the seam in one call.

`readings.services.readings_enqueue(batches=...)` is sync and returns once the broker confirmed;
it runs in a thread pool so the event loop keeps serving. Each device's batch is acked only
after the call that carried it returned.

With `processes` > 0 the calls run in that many store processes of their own instead (spawned,
Django set up in each). That is for the embedded mode, where the "enqueue" is the whole store:
decoding, COPY, rollup marks and alert rules are Python that holds the GIL, and in a thread of the
gateway process it held the event loop off (profiled in docs/gateway.md, "Live latency": at 1,000 live devices half
the gateway's samples were the ingest thread, and the channel-layer publishes timed out behind it).
A batch is still acked only after the store process returned from storing it; a store process
that dies fails its groups (the devices are nacked and resend) and the pool is started again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from django.db import close_old_connections, connections

from readings.batch import ReadingsBatch

logger = logging.getLogger(__name__)

Enqueue = Callable[[Sequence[ReadingsBatch]], None]


def seam_enqueue(batches: Sequence[ReadingsBatch]) -> None:
    """The production seam, imported lazily so the gateway module loads before the store exists."""
    from readings.services import readings_enqueue

    readings_enqueue(batches=batches)


# --- Store processes (processes > 0) ----------------------------------------------------------------

_process_checked = 0.0
_process_failed = True


def _store_process_started() -> None:
    """Initializer of a spawned store process: the same settings as the gateway (its environment)."""
    import django

    django.setup()


def _store_process_ready() -> None:
    """A no-op: submitting it makes the pool spawn its processes."""


def _call_in_process(enqueue: Enqueue, batches: Sequence[ReadingsBatch], recheck_s: float) -> None:
    """One group in a store process; the connection check as `IngestBatcher._call` does it per thread."""
    global _process_checked, _process_failed  # noqa: PLW0603 - one per process, as threading.local per thread
    now = time.monotonic()
    if _process_failed or now - _process_checked >= recheck_s:
        close_old_connections()
        _process_checked = now
    _process_failed = True
    enqueue(batches)
    _process_failed = False


class IngestBatcher:
    def __init__(
        self,
        *,
        enqueue: Enqueue = seam_enqueue,
        linger_s: float = 0.005,
        max_group: int = 512,
        max_inflight: int = 4,
        recheck_s: float = 1.0,
        processes: int = 0,
    ) -> None:
        self._enqueue = enqueue
        self._recheck_s = recheck_s
        self._local = threading.local()
        self._linger_s = linger_s
        self._max_group = max_group
        self._max_inflight = max_inflight
        self._pending: list[tuple[ReadingsBatch, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        # A store process takes one group at a time: a second one queued behind it would be formed
        # after a mere linger, small. With one in flight per process, what arrives while it stores
        # joins the next group, so groups grow with the load and the per-group cost (a transaction,
        # the task call, the hop between processes: ~2-4 ms of the store process's CPU against
        # ~0.1 ms per frame) is paid a few times a second, not every linger (docs/gateway.md).
        self._slots = asyncio.Semaphore(min(max_inflight, processes) if processes > 0 else max_inflight)
        self._threads = 0
        self._threads_lock = threading.Lock()
        self._processes = processes
        self._executor: Executor = self._new_executor()
        self._inflight: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._flushing = 0
        self.enqueued_batches = 0
        self.enqueued_readings = 0
        self.failed_batches = 0

    def _new_executor(self) -> Executor:
        if self._processes > 0:
            # spawn, not fork: the gateway has threads (and a running loop) by the time a pool restarts.
            return ProcessPoolExecutor(
                max_workers=self._processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_store_process_started,
            )
        return ThreadPoolExecutor(
            max_workers=self._max_inflight, thread_name_prefix="ingest", initializer=self._thread_started
        )

    def _thread_started(self) -> None:
        with self._threads_lock:
            self._threads += 1

    def _call(self, batches: Sequence[ReadingsBatch]) -> None:
        # As Django does around a request: drop a connection that broke or outlived its age. Its
        # health check is a query (SELECT 1), a quarter of a small group's time in the profile, so
        # it runs at most once per `recheck_s` per thread, and always after a failed call.
        local = self._local
        now = time.monotonic()
        if getattr(local, "failed", True) or now - getattr(local, "checked", 0.0) >= self._recheck_s:
            close_old_connections()
            local.checked = now
        local.failed = True
        self._enqueue(batches)
        local.failed = False

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="ingest-batcher")
        if self._processes > 0:
            # Start the store processes now (a pool spawns them on its first call): setting Django
            # up in them costs seconds of CPU, which must not land on the first devices' handshakes.
            for _ in range(self._processes):
                self._executor.submit(_store_process_ready)

    def submit(self, batch: ReadingsBatch) -> asyncio.Future[None]:
        """A future that resolves once the batch is durably enqueued (or fails with the seam's error)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((batch, future))
        self._idle.clear()
        self._wakeup.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if len(self._pending) < self._max_group:
                # Let batches from other connections join this group.
                await asyncio.sleep(self._linger_s)
            await self._slots.acquire()
            group, self._pending = self._pending[: self._max_group], self._pending[self._max_group :]
            if not self._pending:
                self._wakeup.clear()
            if not group:
                self._slots.release()
                continue
            self._flushing += 1
            task = asyncio.get_running_loop().create_task(self._flush(group))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _flush(self, group: list[tuple[ReadingsBatch, asyncio.Future[None]]]) -> None:
        batches = [batch for batch, _ in group]
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            if self._processes > 0:
                await loop.run_in_executor(executor, _call_in_process, self._enqueue, batches, self._recheck_s)
            else:
                await loop.run_in_executor(executor, self._call, batches)
        except Exception as exc:
            if isinstance(exc, BrokenProcessPool) and executor is self._executor:
                logger.error("ingest: a store process died; starting the store processes again")
                self._executor = self._new_executor()
                executor.shutdown(wait=False, cancel_futures=True)
            self.failed_batches += len(batches)
            logger.warning("ingest: enqueue of %d batches failed: %s", len(batches), exc)
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
        else:
            self.enqueued_batches += len(batches)
            self.enqueued_readings += sum(batch.reading_count for batch in batches)
            for _, future in group:
                if not future.done():
                    future.set_result(None)
            logger.debug("ingest: %d batches in %.1f ms", len(batches), (time.monotonic() - started) * 1000)
        finally:
            self._slots.release()
            self._flushing -= 1
            if not self._pending and not self._flushing:
                self._idle.set()

    async def drain(self, *, within_s: float) -> bool:
        """Wait until every submitted batch has been enqueued or failed; False if time ran out."""
        try:
            async with asyncio.timeout(within_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
        for _, future in self._pending:
            if not future.done():
                future.cancel()
        if self._processes > 0:  # each store process closes its connections as it exits
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
            return
        # Close each worker thread's database connection: one task per thread, held at a barrier so
        # that no thread runs two of them.
        count = self._threads
        if count:
            barrier = threading.Barrier(count)

            def close_connections() -> None:
                try:
                    barrier.wait(timeout=2)
                finally:
                    connections.close_all()

            loop = asyncio.get_running_loop()
            await asyncio.gather(
                *(loop.run_in_executor(self._executor, close_connections) for _ in range(count)),
                return_exceptions=True,
            )
        self._executor.shutdown(wait=False, cancel_futures=True)
