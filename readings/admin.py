"""The readings store in the admin: confirmed readings and reported counter resets, and re-zoning on save."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from readings.models import ConfirmedSpan, CounterReset
from readings.services import rollups_rezone


def _moment(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


class RezoneOnSaveMixin:
    """For the facility and device admins: a changed time zone, or a device moved to another
    facility, recomputes the affected rollups in the new zone (`rollups_rezone`)."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        changed = set(form.changed_data) if change else set()
        if "timezone" in changed:
            rollups_rezone(facility_id=obj.pk)
        elif "facility" in changed:
            rollups_rezone(device_id=obj.pk)


@admin.register(ConfirmedSpan)
class ConfirmedSpanAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["channel_id", "tenant_id", "start", "end", "confirmed_by", "note", "created_at"]
    list_filter = ["tenant_id"]
    search_fields = ["channel_id", "confirmed_by", "note"]
    readonly_fields = ["tenant_id", "channel_id", "start_ms", "end_ms", "confirmed_by", "created_at"]

    @admin.display(description="from (UTC)")
    def start(self, obj: ConfirmedSpan) -> str:
        return _moment(obj.start_ms)

    @admin.display(description="to (UTC)")
    def end(self, obj: ConfirmedSpan) -> str:
        return _moment(obj.end_ms)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # confirmations go through readings_confirm, which recomputes the rollups


@admin.register(CounterReset)
class CounterResetAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["device_id", "tenant_id", "at"]
    list_filter = ["tenant_id"]
    search_fields = ["device_id"]

    @admin.display(description="at (UTC)")
    def at(self, obj: CounterReset) -> str:
        return _moment(obj.at_ms)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CounterReset | None = None) -> bool:
        return False
