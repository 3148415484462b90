from __future__ import annotations

from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations (OAuth applications)"
    default_auto_field = "django.db.models.BigAutoField"
