"""Websocket routes. Each app that serves websockets adds its patterns here."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
