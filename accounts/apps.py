from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from accounts.models import Invitation, Membership

        auditlog.register(Membership, m2m_fields={"facilities"})
        auditlog.register(Invitation, exclude_fields=["token_hash"])
