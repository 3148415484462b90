from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from devices.demo import seed_demo


class Command(BaseCommand):
    help = "Seed the demo tenants, facilities, devices and logins (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        logins = seed_demo()
        self.stdout.write(self.style.SUCCESS("Demo data is in place. Logins:"))
        for login in logins:
            self.stdout.write(f"  {login.username:<14} / {login.password}   {login.tenant} ({login.role})")
