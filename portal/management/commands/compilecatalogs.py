"""`manage.py compilecatalogs`: the message catalogs (locale/*/LC_MESSAGES/*.po) compiled to .mo.

Django's `compilemessages` needs GNU gettext's msgfmt, which a fresh machine may lack; Babel
(from PyPI, in requirements.txt) writes the same .mo files in pure Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def catalogs_compile() -> list[Path]:
    """Compile every catalog under LOCALE_PATHS whose .mo is missing or older than its .po."""
    written = []
    for root in map(Path, settings.LOCALE_PATHS):
        for po in sorted(root.glob("*/LC_MESSAGES/*.po")):
            mo = po.with_suffix(".mo")
            if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
                continue
            with po.open("rb") as source:
                catalog = read_po(source, locale=po.parent.parent.name)
            errors = [(message.id, error) for message, problems in catalog.check() for error in problems]
            if errors:
                raise CommandError(f"{po}: {errors[0][1]} (in {errors[0][0]!r})")
            with mo.open("wb") as target:
                write_mo(target, catalog, use_fuzzy=False)
            written.append(mo)
    return written


class Command(BaseCommand):
    help = "Compile the message catalogs (.po to .mo) without GNU gettext."

    def handle(self, *args: Any, **options: Any) -> None:
        for mo in catalogs_compile():
            self.stdout.write(f"compiled {mo}")
