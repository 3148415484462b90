from __future__ import annotations

from django.urls import path

from alerts import consumers

websocket_urlpatterns = [path("ws/alerts/live", consumers.AlertBadgeConsumer.as_asgi())]
