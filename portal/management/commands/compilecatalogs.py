"""`manage.py compilecatalogs`: the message catalogs compiled to .mo.

The catalogs are the project's (`locale/*/LC_MESSAGES/*.po`, under LOCALE_PATHS) and each installed
app's own (`<app>/locale/*/LC_MESSAGES/*.po`), which Django merges at run time; an app that brings
its own strings keeps them beside its code.

Django's `compilemessages` needs GNU gettext's msgfmt, which a fresh machine may lack; Babel
(from PyPI, in requirements.txt) writes the same .mo files in pure Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


def _catalog_roots() -> list[Path]:
    roots = [Path(path) for path in settings.LOCALE_PATHS]
    # Only the project's own apps: the installed libraries ship their catalogs compiled.
    base = Path(settings.BASE_DIR).resolve()
    for config in apps.get_app_configs():
        path = Path(config.path).resolve()
        if path.is_relative_to(base) and ".venv" not in path.parts:
            roots.append(path / "locale")
    return [root for root in dict.fromkeys(roots) if root.is_dir()]


def catalogs_compile() -> list[Path]:
    """Compile every catalog (project and apps) whose .mo is missing or older than its .po."""
    written = []
    for root in _catalog_roots():
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
