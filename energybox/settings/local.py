"""Embedded defaults for a laptop: `make run` uses these."""

from __future__ import annotations

from energybox import env
from energybox.settings.base import *  # noqa: F403
from energybox.settings.base import DATA_DIR

# Off by default, so a user meets the 404 and 500 pages users see; DJANGO_DEBUG=1 for the debug pages.
DEBUG = env.bool_("DJANGO_DEBUG", False)
DATA_DIR.mkdir(parents=True, exist_ok=True)

# WhiteNoise serves from STATIC_ROOT; make sure it exists before `collectstatic` has run.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
WHITENOISE_USE_FINDERS = True
