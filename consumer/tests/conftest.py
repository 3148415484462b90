"""The browser fixtures (Chromium, Daphne, the gateway) come from the portal's browser test."""

from __future__ import annotations

from portal.tests.test_browser import browser, chromium, gateway_port, portal  # noqa: F401 - fixtures
