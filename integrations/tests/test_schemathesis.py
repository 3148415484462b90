"""schemathesis drives every operation of the project's own OpenAPI schema: no input may cause a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connections
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from devices.tests.factories import DeviceFactory, DeviceGroupFactory, LoadFactory
from integrations.tests.factories import AccessTokenFactory

MAX_EXAMPLES = 25


@pytest.fixture
def admin_token(db):
    device = DeviceFactory()
    LoadFactory(facility=device.facility)
    DeviceGroupFactory(tenant=device.tenant)
    cache.clear()  # throttle counters
    return AccessTokenFactory(application__tenant=device.tenant)


# Loaded at collection (schemathesis' lazy fixture loader does not run on pytest 9). Serving the
# schema touches no database, so this is safe before the test database exists.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
# The WSGI request cycle may have opened a connection to the non-test database; on PostgreSQL that
# stale connection would outlive the switch to the test database, so drop it now.
connections.close_all()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.django_db
def test_no_generated_request_gets_a_server_error(case, admin_token, settings_for_fuzzing):
    case.call_and_validate(headers={"Authorization": f"Bearer {admin_token.token}"}, checks=[not_a_server_error])


@pytest.fixture
def settings_for_fuzzing(settings):
    settings.API_THROTTLE_RATE = "1000000/min"
    # Called straight through WSGI, each request would end by closing the database connection,
    # and with it the test's transaction; Django's own test client avoids it the same way.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)
