"""/api/v1/me/, /api/v1/facilities/<id>/energy/ and /cost/: the consumer app's token, scopes, isolation, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from accounts.tests.factories import MembershipFactory
from billing import services
from billing.tests.factories import TariffFactory, metered_facility
from billing.tests.reference import month_bounds
from billing.tests.test_bills import BERLIN, LATER, simulate
from devices.tests.factories import FacilityFactory
from integrations.models import Application
from integrations.scopes import (
    BILLING_READ,
    BILLING_WRITE,
    CONSUMER_APP_CLIENT_ID,
    FLEET_READ,
    FLEET_WRITE,
    READINGS_READ,
)
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory, bearer

pytestmark = pytest.mark.django_db

APP_SCOPES = " ".join((FLEET_READ, FLEET_WRITE, READINGS_READ, BILLING_READ))


def app_token(user, scope=APP_SCOPES):
    """A token of the consumer app (the migration's public platform client) for a signed-in user."""
    application = Application.objects.get(client_id=CONSUMER_APP_CLIENT_ID)
    return bearer(AccessTokenFactory(application=application, user=user, scope=scope))


def household(**kwargs):
    mf = metered_facility(**kwargs)
    member = MembershipFactory(tenant=mf.facility.tenant)
    return mf, member.user


def test_the_consumer_app_is_a_public_platform_client_with_the_scopes_it_uses():
    application = Application.objects.get(client_id=CONSUMER_APP_CLIENT_ID)
    assert application.tenant_id is None
    assert application.client_type == Application.CLIENT_PUBLIC
    assert set(application.scope.split()) == {FLEET_READ, FLEET_WRITE, READINGS_READ, BILLING_READ, BILLING_WRITE}


def test_me_names_the_user_their_tenants_and_only_their_own_facilities(client):
    mf, user = household()
    other, _ = household()
    response = client.get("/api/v1/me/", **app_token(user))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["user"]["username"] == user.username and body["user"]["email"] == user.email
    assert body["user"]["email_verified"] is False
    assert body["tenant"] == mf.facility.tenant_id
    assert [t["id"] for t in body["tenants"]] == [mf.facility.tenant_id]
    assert [f["id"] for f in body["facilities"]] == [mf.facility.pk]
    assert other.facility.pk not in [f["id"] for f in body["facilities"]]


def test_me_refuses_a_client_credentials_token_and_a_token_without_the_scope(client):
    facility = FacilityFactory()
    machine = bearer(AccessTokenFactory(application=ApplicationFactory(tenant=facility.tenant)))
    assert client.get("/api/v1/me/", **machine).status_code == 403
    _, user = household()
    assert client.get("/api/v1/me/", **app_token(user, scope=READINGS_READ)).status_code == 403
    assert client.get("/api/v1/me/").status_code == 401


def test_a_platform_sign_on_client_without_api_scopes_still_cannot_call_the_api(client):
    _, user = household()
    portal_sso = ApplicationFactory(
        tenant=None, scope="", authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE
    )
    token = bearer(AccessTokenFactory(application=portal_sso, user=user, scope=APP_SCOPES))
    assert client.get("/api/v1/me/", **token).status_code == 403


def _feb_household():
    mf, user = household()
    services.contract_create(
        facility=mf.facility, tariff=TariffFactory(tenant=mf.facility.tenant), valid_from=datetime(2026, 1, 1).date()
    )
    lo, hi = month_bounds(2026, 2, BERLIN)
    raw = simulate(mf, lo, hi)
    return mf, user, raw


def _daily_kwh(ts, wh, day: datetime) -> float:
    """Independent: the counter's rise from one local midnight to the next, from the raw readings."""
    lo = int(day.timestamp() * 1000)
    hi = int((day + timedelta(days=1)).timestamp() * 1000)
    return float(np.interp(hi, ts, wh) - np.interp(lo, ts, wh)) / 1000


def test_the_energy_series_is_the_facility_total_and_each_load_per_local_day(client):
    mf, user, raw = _feb_household()
    query = {"start": "2026-02-02T00:00:00+01:00", "end": "2026-02-05T00:00:00+01:00", "resolution": "1d"}
    response = client.get(f"/api/v1/facilities/{mf.facility.pk}/energy/", query, **app_token(user))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["source"] == "counter" and body["unit"] == "kWh"
    assert [p["start"] for p in body["points"]] == [
        "2026-02-02T00:00:00+01:00",
        "2026-02-03T00:00:00+01:00",
        "2026-02-04T00:00:00+01:00",
    ]
    ts, wh = raw[mf.main.pk]
    # The store keeps counters to a resolution of a few Wh, hence 1e-3 against the raw readings (one
    # five-minute step too many or too few would be 3e-3); against the main meter's own rollup, exact.
    main = client.get("/api/v1/readings/series/", {**query, "channel": mf.main.pk}, **app_token(user)).json()["series"][
        0
    ]["points"]
    for point, day, own in zip(body["points"], (2, 3, 4), main, strict=True):
        assert point["kwh"] == pytest.approx(_daily_kwh(ts, wh, datetime(2026, 2, day, tzinfo=BERLIN)), rel=1e-3)
        assert point["kwh"] == pytest.approx(own["delta"] / 1000, rel=1e-9)
    by_name = {load["name"]: load for load in body["loads"]}
    assert set(by_name) == {"Refrigeration", "HVAC"}  # the mains load is the total, not a load beside it
    fridge_ts, fridge_wh = raw[mf.loads["Refrigeration"][1].pk]
    expected = _daily_kwh(fridge_ts, fridge_wh, datetime(2026, 2, 3, tzinfo=BERLIN))
    assert by_name["Refrigeration"]["kwh"][1] == pytest.approx(expected, rel=1e-3)
    assert by_name["HVAC"]["total_kwh"] == pytest.approx(float(np.nansum(by_name["HVAC"]["kwh"])))


def test_another_households_facility_is_a_404_on_every_new_series(client):
    mf, _, _ = _feb_household()
    _, intruder = household()
    query = {"start": "2026-02-02T00:00:00+01:00", "end": "2026-02-03T00:00:00+01:00", "resolution": "1d"}
    for path in (f"/api/v1/facilities/{mf.facility.pk}/energy/", f"/api/v1/facilities/{mf.facility.pk}/cost/"):
        response = client.get(path, query, **app_token(intruder))
        assert response.status_code == 404, path


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("energy", {"start": "2026-02-03T00:00:00+01:00", "end": "2026-02-02T00:00:00+01:00"}),
        ("energy", {"start": "2026-02-02T00:00:00+01:00", "end": "2026-02-03T00:00:00+01:00", "resolution": "raw"}),
        ("energy", {"start": "2000-01-01T00:00:00+01:00", "end": "2030-01-01T00:00:00+01:00", "resolution": "15m"}),
        ("energy", {"start": "2026-02-02T00:00:00", "end": "2026-02-03T00:00:00+01:00"}),
        ("cost", {"start": "2026-02-02T00:00:00+01:00", "end": "2026-02-03T00:00:00+01:00", "resolution": "15m"}),
        ("cost", {"start": "2000-01-01T00:00:00+01:00", "end": "2030-01-01T00:00:00+01:00", "resolution": "1d"}),
        ("cost", {"start": "2026-02-03T00:00:00+01:00", "end": "2026-02-02T00:00:00+01:00"}),
    ],
)
def test_bad_series_queries_are_a_400(client, path, query):
    mf, user = household()
    response = client.get(f"/api/v1/facilities/{mf.facility.pk}/{path}/", query, **app_token(user))
    assert response.status_code == 400, response.content
    assert response.json()["error"]["status"] == 400


def test_the_cost_series_is_priced_by_the_tariff_and_adds_up_to_the_bills_energy_lines(client):
    mf, user, _ = _feb_household()
    query = {"start": "2026-02-01T00:00:00+01:00", "end": "2026-03-01T00:00:00+01:00", "resolution": "1d"}
    response = client.get(f"/api/v1/facilities/{mf.facility.pk}/cost/", query, **app_token(user))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["currency"] == "EUR" and len(body["points"]) == 28
    energy = client.get(f"/api/v1/facilities/{mf.facility.pk}/energy/", query, **app_token(user)).json()
    # Sunday 1 February: the weekend rate (0.18) and both levies, VAT 19 %; the month is still below
    # the 5,000 kWh tier, so no adder. Computed here from the tariff's numbers, not by the billing code.
    sunday_kwh = energy["points"][0]["kwh"]
    expected = sunday_kwh * (0.18 + 0.0205 + 0.0011) * 1.19
    assert float(body["points"][0]["cost"]) == pytest.approx(expected, abs=0.03)
    bill = services.bill_issue(facility=mf.facility, year=2026, month=2, now_ms=LATER)
    energy_lines = sum(
        (line.amount for line in bill.lines.all() if line.kind in ("energy", "levy")), start=Decimal("0")
    )
    total = sum((Decimal(p["cost"]) for p in body["points"]), start=Decimal("0"))
    assert total == pytest.approx(energy_lines * Decimal("1.19"), abs=Decimal("0.02"))


def test_a_month_without_a_tariff_has_no_cost_and_a_future_interval_none(client):
    mf, user = household()
    tz = ZoneInfo(mf.facility.timezone)
    today = datetime.now(tz=tz).replace(hour=0, minute=0, second=0, microsecond=0)
    query = {"start": today.isoformat(), "end": (today + timedelta(days=2)).isoformat(), "resolution": "1d"}
    body = client.get(f"/api/v1/facilities/{mf.facility.pk}/cost/", query, **app_token(user)).json()
    assert [p["cost"] for p in body["points"]] == [None, None]
    assert datetime.fromisoformat(body["points"][0]["start"]).astimezone(UTC) == today.astimezone(UTC)


def test_a_household_claims_its_meter_with_the_app_token_and_another_household_cannot(client):
    from django.core.cache import cache

    from devices.services import factory_device_create
    from devices.tests.factories import DeviceTypeFactory

    cache.clear()
    stock = factory_device_create(serial="HOME-0001", device_type=DeviceTypeFactory())
    mf, user = household()
    other, intruder = household()

    def claim(token_user, code, facility_id):
        body = {"serial": "HOME-0001", "claim_code": code, "facility": facility_id}
        return client.post("/api/v1/devices/claim/", body, content_type="application/json", **app_token(token_user))

    assert claim(intruder, stock.claim_code, mf.facility.pk).status_code == 400  # not the intruder's home
    assert claim(intruder, "WRONGWRONG22", other.facility.pk).status_code == 400
    claimed = claim(user, stock.claim_code, mf.facility.pk)
    assert claimed.status_code == 201 and claimed.json()["facility"] == mf.facility.pk
    assert claim(intruder, stock.claim_code, other.facility.pk).status_code == 400  # claimed once, for good
    cache.clear()
