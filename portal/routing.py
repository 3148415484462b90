from __future__ import annotations

from django.urls import path

from portal import consumers

websocket_urlpatterns = [
    path("ws/facilities/live", consumers.ParkLiveConsumer.as_asgi()),
    path("ws/facilities/<int:facility_id>/live", consumers.FacilityLiveConsumer.as_asgi()),
    path("ws/devices/<int:device_id>/live", consumers.DeviceLiveConsumer.as_asgi()),
]
