"""The gateway's end of the device control bus (`devices.control`).

One channel per gateway process, joined to the group of every device it holds while it holds it.
One task receives and hands each command to the handler registered for its type, with the device's
current connection on this process; a command for a device that has since left is dropped, since the
gateway that holds it now received the same command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from devices.control import device_control_group

logger = logging.getLogger(__name__)

Handler = Callable[[int, dict[str, Any]], object]


class ControlSubscriber:
    def __init__(self, *, layer: Any) -> None:
        self._layer = layer
        self._channel: str | None = None
        self._handlers: dict[str, Handler] = {}
        self._task: asyncio.Task[None] | None = None
        self._joins: set[asyncio.Task[None]] = set()
        self._wanted: set[int] = set()  # devices held now: joined as soon as there is a channel
        self.members: set[int] = set()  # devices whose group this process has joined (for tests, metrics)
        self.received = 0
        self.failed = 0

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    async def start(self) -> None:
        if self._layer is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gateway-control")

    def join(self, device_id: int) -> None:
        self._wanted.add(device_id)
        self._membership("group_add", device_id)

    def leave(self, device_id: int) -> None:
        self._wanted.discard(device_id)
        self._membership("group_discard", device_id)

    def _membership(self, method: str, device_id: int) -> None:
        if self._channel is None:
            return
        task = asyncio.get_running_loop().create_task(self._change(method, device_id))
        self._joins.add(task)
        task.add_done_callback(self._joins.discard)

    async def _change(self, method: str, device_id: int) -> None:
        try:
            await getattr(self._layer, method)(device_control_group(device_id), self._channel)
            if method == "group_add":
                self.members.add(device_id)
            else:
                self.members.discard(device_id)
        except Exception:
            self.failed += 1
            logger.exception("control: %s for device %s failed", method, device_id)

    async def _open(self) -> str:
        # A layer that is down at start-up must not stop the gateway: ingest does not need the bus.
        while True:
            try:
                channel: str = await self._layer.new_channel("gateway-control.")
                return channel
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failed += 1
                logger.warning("control: the channel layer is unavailable; commands wait until it is back")
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        self._channel = await self._open()
        for device_id in list(self._wanted):
            self._membership("group_add", device_id)
        while True:
            try:
                message = await self._layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failed += 1
                logger.exception("control: receiving failed; retrying")
                await asyncio.sleep(0.5)
                continue
            self.received += 1
            handler = self._handlers.get(message.get("type", ""))
            device_id = message.get("device_id")
            if handler is None or not isinstance(device_id, int):
                logger.warning("control: dropped an unknown command %r", message.get("type"))
                continue
            try:
                handler(device_id, message)
            except Exception:
                logger.exception("control: handling %s for device %s failed", message["type"], device_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._joins:
            await asyncio.gather(*self._joins, return_exceptions=True)
