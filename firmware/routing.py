from __future__ import annotations

from django.urls import path

from firmware import consumers

websocket_urlpatterns = [
    path("ws/firmware/rollouts/<int:rollout_id>/live", consumers.RolloutProgressConsumer.as_asgi()),
]
