"""The browser test's fixtures (Chromium, Playwright, Daphne) come from the portal's browser test."""

from __future__ import annotations

from portal.tests.test_browser import browser, chromium, portal  # noqa: F401 - fixtures
