"""Every query parameter of every GET operation, read from the project's own OpenAPI schema, fuzzed with
hostile values at once (issue 18): forged cursors, out-of-range and non-numeric ids, malformed and naive
timestamps, unknown enum values, page sizes, %-escapes and control characters. No answer may be a 5xx,
and a refusal has the API's usual error body. schemathesis (test_schemathesis.py) covers the bodies."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.tests.factories import DeviceFactory, DeviceGroupFactory, LoadFactory
from integrations.tests.factories import AccessTokenFactory, bearer

EXAMPLES = 40  # per operation: 14 GET operations, about a minute in all on a loaded 2-core machine

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
GET_OPERATIONS = sorted(
    (path, item["get"]) for path, item in SCHEMA["paths"].items() if "get" in item and path.startswith("/api/v1/")
)


def _ints() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.sampled_from(["0", "-1", str(2**63 - 1), str(2**63), str(2**64), "1e3", "0x10", " 1", "1.5", "NaN"]),
        st.text(max_size=12),
    )


def _cursors() -> st.SearchStrategy[str]:
    def encode(fields: dict[str, str]) -> str:
        return base64.b64encode(urlencode(fields).encode()).decode()

    values = st.one_of(_ints(), st.just("6 OR 1=1"), st.text(max_size=20))
    forged = st.fixed_dictionaries({"p": values}, optional={"o": values, "r": values}).map(encode)
    raw = st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
        st.sampled_from(["", "%%%", "====", "cD02JTIwT1IlMjAxPTE=", "MTIzNDU2Nzg5MDEyMzQ1Ng"]),
    )
    return st.one_of(forged, forged, raw)


def _timestamps() -> st.SearchStrategy[str]:
    return st.one_of(
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat()),  # naive
        st.sampled_from(["2026-13-45T99:99:99Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59+14:00", "now", ""]),
        st.text(max_size=30),
    )


def _for(parameter: dict) -> st.SearchStrategy[str]:
    schema = parameter.get("schema", {})
    name = parameter["name"]
    if name == "cursor":
        return _cursors()
    if schema.get("format") == "date-time":
        return _timestamps()
    if "enum" in schema:
        return st.one_of(st.sampled_from([str(v) for v in schema["enum"]]), st.text(max_size=10))
    if schema.get("type") == "array":
        items = _ints() if schema.get("items", {}).get("type") == "integer" else st.text(max_size=10)
        return st.lists(items, max_size=5).map(",".join)
    if schema.get("type") in ("integer", "number"):
        return _ints()
    return st.text(max_size=60)


@st.composite
def requests_for(draw, path: str, operation: dict) -> tuple[str, dict[str, str]]:
    url = path
    params: dict[str, str] = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            # Only digits reach the API (<int:pk>); anything else is the router's plain 404.
            value = draw(st.one_of(st.integers(0, 2**70), st.sampled_from([0, 2**63 - 1, 2**63, 2**64]))).__str__()
            url = url.replace("{" + parameter["name"] + "}", value)
        elif parameter["in"] == "query" and (parameter["name"] == "cursor" or draw(st.booleans())):
            params[parameter["name"]] = draw(_for(parameter))
    return url, params


@pytest.fixture
def token(db):
    device = DeviceFactory()
    LoadFactory(facility=device.facility)
    DeviceGroupFactory(tenant=device.tenant)
    DeviceFactory()  # another tenant's fleet, so foreign ids exist
    cache.clear()
    return AccessTokenFactory(application__tenant=device.tenant)


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "operation"), GET_OPERATIONS, ids=[path for path, _ in GET_OPERATIONS])
def test_no_query_parameter_value_gets_a_server_error(client, token, settings, path, operation):
    settings.API_THROTTLE_RATE = "1000000/min"

    @settings_for_fuzz
    @given(request=requests_for(path, operation))
    def check(request):
        url, params = request
        response = client.get(url, params, **bearer(token))
        assert response.status_code < 500, (url, params, response.status_code)
        if response.status_code >= 400:
            body = json.loads(b"".join(response.streaming_content) if response.streaming else response.content)
            assert body["error"]["status"] == response.status_code, body

    check()


settings_for_fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
