"""Writes the portal makes on its users' behalf."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from accounts.models import User


class LanguageError(ValueError):
    """A language the portal does not offer."""


def user_language_set(*, user: User, language: str) -> None:
    """Remember the portal language of `user` (one of settings.LANGUAGES)."""
    if language not in {code for code, _name in settings.LANGUAGES}:
        raise LanguageError(_("The portal is offered in German and English."))
    user.language = language
    user.save(update_fields=["language"])
