from __future__ import annotations

from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from devices.models import Channel, ChannelAllocation, Device, DeviceGroup, Facility, Load

        # Who changed what and when, for the tenant's audit log. Keys are logged by version (never the key).
        auditlog.register(Facility)
        auditlog.register(Load)
        auditlog.register(DeviceGroup, m2m_fields={"devices"})
        auditlog.register(Device, exclude_fields=["public_key", "last_seen"], m2m_fields={"groups"})
        auditlog.register(Channel, include_fields=["name", "load", "tags"])
        auditlog.register(ChannelAllocation)
