from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import Membership, Tenant, User


class MembershipForm(forms.ModelForm):  # type: ignore[type-arg]
    """Hands the submitted grants to the model's clean(), which refuses another tenant's facilities."""

    class Meta:
        model = Membership
        fields = ["user", "tenant", "role", "facilities"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "facilities" in data:
            self.instance.pending_facilities = data["facilities"]
        return data


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipForm
    extra = 0
    autocomplete_fields = ["tenant"]
    filter_horizontal = ["facilities"]


@admin.register(User)
class EnergyboxUserAdmin(UserAdmin):
    inlines = [MembershipInline]
    list_display = ["username", "email", "first_name", "last_name", "is_staff", "tenants"]

    @admin.display(description="Tenants")
    def tenants(self, obj: User) -> str:
        return ", ".join(m.tenant.name for m in obj.memberships.all())

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).prefetch_related("memberships__tenant")


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "kind", "raw_retention_days", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    form = MembershipForm
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["user__username", "user__email", "tenant__name"]
    autocomplete_fields = ["user", "tenant"]
    filter_horizontal = ["facilities"]
    readonly_fields = ["created_at"]
