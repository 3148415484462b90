"""Fixtures the alerts tests share, imported from the apps that own them."""

from __future__ import annotations

import pytest

from accounts.tests.test_invitations import smtp  # noqa: F401  (a real local SMTP server)
from alerts import evaluation_cache
from gateway.tests.conftest import meter  # noqa: F401  (a provisioned 12-channel meter)
from gateway.tests.test_end_to_end import embedded  # noqa: F401  (tasks in-process)
from portal.tests.test_browser import browser, chromium, portal  # noqa: F401  (Chromium, Playwright, Daphne)


@pytest.fixture(autouse=True)
def _fresh_rules():
    evaluation_cache.invalidate()
    yield
    evaluation_cache.invalidate()
