"""`/ws/alerts/live`: the portal's alert badge, live. A push on every alert change, and a poll as a fallback.

Alerts change in Celery workers; with Redis they share the channel layer with this process and the
group message arrives at once. The embedded in-memory layer is per process, so the consumer also
re-reads the count every POLL_S and sends it when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.errors import TenantAccessDenied
from alerts import selectors
from alerts.notifications import alerts_group
from portal.access import NotSignedIn, scope_access
from portal.liveprotocol import CloseCode

POLL_S = 5.0


class AlertBadgeConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self._poller: asyncio.Task[None] | None = None
        self._group: str | None = None
        try:
            self.access = await database_sync_to_async(scope_access)(self.scope)
        except NotSignedIn:
            await self.close(code=CloseCode.UNAUTHENTICATED)
            return
        except TenantAccessDenied:
            await self.close(code=CloseCode.FORBIDDEN)
            return
        self._group = alerts_group(self.access.tenant_id)
        if self.channel_layer is not None:
            await self.channel_layer.group_add(self._group, self.channel_name)
        await self.accept()
        self._last = -1
        await self._send_count()
        self._poller = asyncio.create_task(self._poll())

    async def disconnect(self, code: int) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._group is not None and self.channel_layer is not None:
            await self.channel_layer.group_discard(self._group, self.channel_name)

    async def alert_changed(self, message: dict[str, Any]) -> None:
        # The group carries the tenant's count; a facility manager's own count is read again.
        await self._send_count(alert_id=message.get("alert_id"))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            await self._send_count()

    async def _send_count(self, alert_id: int | None = None) -> None:
        count = await database_sync_to_async(selectors.alert_open_count)(access=self.access)
        if count != self._last or alert_id is not None:
            self._last = count
            await self.send(text_data=json.dumps({"type": "alerts", "open": count, "alert_id": alert_id}))
