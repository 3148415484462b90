from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def _rollups_written(sender: object, *, spans: list[tuple[int, int, int]], **kwargs: Any) -> None:
    from billing.services import demand_mark

    demand_mark(spans=spans)


class BillingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "billing"

    def ready(self) -> None:
        # readings may not import billing: it announces its 15-minute rollup writes, and billing marks
        # the facilities' demand due (`services.demand_mark`) in the same transaction.
        from readings.signals import rollups_written

        rollups_written.connect(_rollups_written, dispatch_uid="billing.demand_mark")
