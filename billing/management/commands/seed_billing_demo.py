from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billing.demo import seed_billing_demo


class Command(BaseCommand):
    help = "Give the demo tenants their tariffs and contracts (idempotent; `make run` does it)."

    def handle(self, *args: Any, **options: Any) -> None:
        seed_billing_demo()
        self.stdout.write(self.style.SUCCESS("Demo tariffs are in place."))
