"""schemathesis drives every operation of the project's own OpenAPI schema, with valid and invalid input
(positive and negative generation, a fixed seed): no input may cause a 5xx, and every refusal carries
the API's error body. test_query_fuzz.py adds hostile values for every query parameter at once."""

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

# Per operation; about two minutes for the 20 operations on a loaded 2-core machine.
MAX_EXAMPLES = 25


@schemathesis.check
def refusals_carry_the_api_error_body(ctx, response, case):
    """A 4xx from the API is JSON in one shape: {"error": {"status": ..., "code": ..., "message": ...}}."""
    content_type = str(response.headers.get("content-type") or response.headers.get("Content-Type") or "")
    if not 400 <= response.status_code < 500 or "json" not in content_type:
        return None
    error = response.json().get("error")
    assert isinstance(error, dict) and error.get("status") == response.status_code, response.text[:300]
    assert error.get("code") and error.get("message"), response.text[:300]
    return None


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
    case.call_and_validate(
        headers={"Authorization": f"Bearer {admin_token.token}"},
        checks=[not_a_server_error, refusals_carry_the_api_error_body],
    )


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
