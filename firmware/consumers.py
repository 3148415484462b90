"""`/ws/firmware/rollouts/<id>/live`: a rollout's progress, per wave and per device, for tenant admins.

The state machine runs in Celery workers, which may share no channel layer with this web process
(the embedded in-memory layer), so the consumer reads the database: it sends a snapshot at once and
again whenever one changes, checking every `POLL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import ObjectDoesNotExist

from accounts.access import Access
from accounts.errors import TenantAccessDenied
from firmware import selectors
from portal.access import NotSignedIn, scope_access
from portal.liveprotocol import CloseCode

POLL_S = 1.0


def _progress(access: Access, rollout_id: int) -> dict[str, Any]:
    return selectors.rollout_progress(access=access, rollout_id=rollout_id)


class RolloutProgressConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.rollout_id = int(self.scope["url_route"]["kwargs"]["rollout_id"])
        self._poller: asyncio.Task[None] | None = None
        try:
            access = await database_sync_to_async(scope_access)(self.scope)
            if not access.is_admin:
                raise TenantAccessDenied("Only tenant admins follow rollouts.")
            snapshot = await database_sync_to_async(_progress)(access, self.rollout_id)
        except NotSignedIn:
            await self._refuse(CloseCode.UNAUTHENTICATED, "Sign in to the portal first.")
            return
        except (TenantAccessDenied, ObjectDoesNotExist):
            await self._refuse(CloseCode.FORBIDDEN, "No such rollout for this account.")
            return
        self.access = access
        await self.accept()
        await self._send(snapshot)
        self._last = snapshot
        self._poller = asyncio.create_task(self._poll())

    async def _refuse(self, code: CloseCode, message: str) -> None:
        # Accepted first, so a browser sees the close code (a refused handshake shows it none).
        await self.accept()
        await self.send(text_data=json.dumps({"type": "error", "code": int(code), "message": message}))
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return  # the page only listens

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                snapshot = await database_sync_to_async(_progress)(self.access, self.rollout_id)
            except ObjectDoesNotExist:
                await self._refuse(CloseCode.FORBIDDEN, "The rollout is gone.")
                return
            if snapshot != self._last:
                self._last = snapshot
                await self._send(snapshot)

    async def _send(self, snapshot: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "rollout.progress", **snapshot}))
