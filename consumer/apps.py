from __future__ import annotations

from django.apps import AppConfig


class ConsumerConfig(AppConfig):
    """The households' app at /app/: its built front end, and the API calls only it needed first."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "consumer"
