"""Billing test fixtures; the browser test's (Chromium, Playwright, Daphne) come from the portal's browser test."""

from __future__ import annotations

import pytest

from portal.tests.test_browser import browser, chromium, portal  # noqa: F401 - fixtures
from readings import metadata


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Channel metadata is cached per process; each test builds its own fleet."""
    metadata.clear_caches()
    yield
    metadata.clear_caches()
