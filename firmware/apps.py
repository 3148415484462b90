from __future__ import annotations

from django.apps import AppConfig


class FirmwareConfig(AppConfig):
    name = "firmware"
    default_auto_field = "django.db.models.BigAutoField"
