from __future__ import annotations

from oauth2_provider.admin import ApplicationAdmin


class TenantApplicationAdmin(ApplicationAdmin):
    """django-oauth-toolkit registers it (OAUTH2_PROVIDER["APPLICATION_ADMIN_CLASS"]); this adds the tenant."""

    list_display = ("pk", "name", "tenant", "client_type", "authorization_grant_type", "scope")
    list_filter = ("tenant", "client_type", "authorization_grant_type")
    search_fields = ("name", "client_id", "tenant__name")
    raw_id_fields = ("user", "tenant")
