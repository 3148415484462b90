from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_client(sender: AppConfig, **kwargs: Any) -> None:
    from django.conf import settings

    from integrations.services import consumer_application_ensure

    consumer_application_ensure(redirect_uris=tuple(settings.ENERGYBOX_APP_REDIRECT_URIS))


class ConsumerConfig(AppConfig):
    """The households' app at /app/: its built front end, and the API calls only it needed first."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "consumer"

    def ready(self) -> None:
        # After every migrate, and after each flush of a test database, the app's OAuth client exists.
        # This app has no models, so Django sends it no post_migrate: the application's own app does.
        from django.apps import apps

        post_migrate.connect(_ensure_client, sender=apps.get_app_config("integrations"))
