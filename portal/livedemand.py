"""Live on demand, the viewers' side: while a live socket is open its devices send 2-s frames.

A live socket (portal dashboard or device page, the consumer app, an API client with a bearer token:
all use `portal.consumers`) holds a lease on each device it shows, sent on the device control bus
(`devices.control.LIVE`) to whichever gateway process holds the device, and renewed every heartbeat.
Leaving releases it; a web process that dies without leaving stops renewing and its leases run out
within `LIVE_DEMAND_LEASE_S`. The gateway's side is `gateway.livemode`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from devices.control import LIVE, device_control_send_async

logger = logging.getLogger(__name__)


class LiveDemand:
    def __init__(
        self,
        *,
        viewer: str,
        device_ids: Iterable[int],
        layer: Any,
        lease_s: float | None = None,
        heartbeat_s: float | None = None,
    ) -> None:
        self.viewer = viewer
        self.device_ids = tuple(sorted(set(device_ids)))
        self._layer = layer
        self.lease_s = lease_s if lease_s is not None else settings.LIVE_DEMAND_LEASE_S
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else settings.LIVE_DEMAND_HEARTBEAT_S
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.device_ids and self._layer is not None:
            self._task = asyncio.create_task(self._run(), name="live-demand")

    async def _send(self, lease_s: float) -> None:
        await asyncio.gather(
            *(
                device_control_send_async(
                    device_id=device_id, kind=LIVE, layer=self._layer, viewer=self.viewer, lease_s=lease_s
                )
                for device_id in self.device_ids
            )
        )

    async def _run(self) -> None:
        while True:
            await self._send(self.lease_s)
            await asyncio.sleep(self.heartbeat_s)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self._send(0)
