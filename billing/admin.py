"""Platform admins see tariffs, contracts and bills. Read-only: tenants change them through the
services (portal, API), which validate schedules and overlaps; an issued bill is immutable."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing.models import (
    Bill,
    BillingProfile,
    BillLine,
    Contract,
    CostCentre,
    DemandInterval,
    FacilityPeak,
    Tariff,
    TariffVersion,
)


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TariffVersionInline(ReadOnly, admin.StackedInline):  # type: ignore[type-arg]
    model = TariffVersion
    extra = 0
    exclude = ["tenant"]


@admin.register(Tariff)
class TariffAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "tenant", "currency", "created_at"]
    list_filter = ["tenant", "currency"]
    search_fields = ["name", "tenant__name"]
    list_select_related = ["tenant"]
    inlines = [TariffVersionInline]


@admin.register(Contract)
class ContractAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["facility", "tariff", "tenant", "valid_from", "valid_to"]
    list_filter = ["tenant"]
    search_fields = ["facility__name", "tariff__name"]
    list_select_related = ["facility", "tariff", "tenant"]


class BillLineInline(ReadOnly, admin.TabularInline):  # type: ignore[type-arg]
    model = BillLine
    extra = 0
    fields = ["position", "kind", "label", "quantity", "unit", "unit_price", "amount", "interval_start"]


@admin.register(Bill)
class BillAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "__str__",
        "tenant",
        "facility",
        "year",
        "month",
        "version",
        "status",
        "gross",
        "currency",
        "difference",
        "issued_at",
    ]
    list_filter = ["tenant", "status", "year", "month"]
    search_fields = ["facility__name", "tenant__name"]
    list_select_related = ["facility", "tenant"]
    inlines = [BillLineInline]


@admin.register(CostCentre)
class CostCentreAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "tenant", "area_m2"]
    list_filter = ["tenant"]


@admin.register(BillingProfile)
class BillingProfileAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["tenant", "fixed_charge_key"]


@admin.register(FacilityPeak)
class FacilityPeakAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    """The stored monthly (1–12) and annual (0) peaks, kept by `services.demand_settle`."""

    list_display = ["facility", "year", "month", "kw", "interval_start", "estimated", "energy_kwh"]
    list_filter = ["year", "estimated", "facility__tenant"]
    search_fields = ["facility__name"]
    list_select_related = ["facility"]


@admin.register(DemandInterval)
class DemandIntervalAdmin(ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["facility", "start", "kw", "estimated"]
    list_filter = ["estimated", "facility__tenant"]
    search_fields = ["facility__name"]
    list_select_related = ["facility"]
    date_hierarchy = "start"
    show_full_result_count = False  # the series is long; a full count would scan it
