"""The browser fixtures (Chromium, Daphne), shared by the portal's browser tests."""

from __future__ import annotations

from portal.tests.test_browser import browser, chromium, portal  # noqa: F401 - fixtures

__all__ = ["browser", "chromium", "portal"]
