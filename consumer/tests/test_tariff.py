"""The household's own tariff: `household_tariff_set` and GET/PUT /api/v1/me/tariff/ with the app's token."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from accounts.errors import TenantAccessDenied
from accounts.models import Role
from accounts.selectors import access_for_user
from accounts.tests.factories import MembershipFactory
from billing.models import Bill, Contract, Tariff
from billing.selectors import bill_compute
from billing.services import bill_issue, contract_create
from billing.tests.factories import TariffFactory, version_data
from billing.tests.reference import interval_kwh, month_bounds
from billing.tests.test_bills import BERLIN, LATER, simulate
from consumer.services import household_tariff_set
from consumer.tests.test_apis import app_token, household
from integrations.scopes import BILLING_READ, BILLING_WRITE

pytestmark = pytest.mark.django_db

SCOPES = f"{BILLING_READ} {BILLING_WRITE}"


def _stored() -> tuple[int, int, list[tuple[int, date, date | None]]]:
    return (
        Tariff.objects.count(),
        Bill.objects.count(),
        sorted(Contract.objects.values_list("tariff_id", "valid_from", "valid_to")),
    )


def test_the_own_tariff_follows_the_old_contract_and_the_bill_prices_each_part_at_its_tariff():
    mf, user = household()
    old = TariffFactory(tenant=mf.facility.tenant, versions=[version_data()])
    contract_create(facility=mf.facility, tariff=old, valid_from=date(2026, 1, 1))
    new = household_tariff_set(
        access=access_for_user(user=user),
        facility=mf.facility,
        price_per_kwh="0.3125",
        standing_charge_per_month="12.50",
        currency="EUR",
        valid_from=date(2026, 3, 11),
    )
    assert Contract.objects.get(tariff=old).valid_to == date(2026, 3, 10)
    assert new.valid_from == date(2026, 3, 11) and new.valid_to is None
    version = new.tariff.versions.get()
    assert version.energy_rates == [0.3125] and version.vat_percent == 0
    assert {cell for row in version.weekday_schedule + version.holiday_schedule for cell in row} == {0}
    lo, hi = month_bounds(2026, 3, BERLIN)
    raw = simulate(mf, lo, hi, seed=4)
    computed = bill_compute(
        access=access_for_user(user=user), facility_id=mf.facility.pk, year=2026, month=3, now_ms=LATER
    )
    assert [(s.days, s.terms.tariff_name) for s in computed.segments] == [(10, old.name), (21, new.tariff.name)]
    # The own tariff's part, computed here: every kWh from 11 March at 0.3125, 21/31 of the standing charge.
    start = int(datetime(2026, 3, 11, tzinfo=BERLIN).timestamp() * 1000)
    kwh = sum(v for s, v in interval_kwh(*raw[mf.main.pk]).items() if s >= start)
    own = [line for line in computed.result.lines if line.segment == 1]
    assert float(sum(line.amount for line in own if line.kind == "energy")) == pytest.approx(kwh * 0.3125, abs=0.02)
    assert float(sum(line.amount for line in own if line.kind == "fixed")) == pytest.approx(12.5 * 21 / 31, abs=0.01)


@pytest.mark.parametrize(
    "change",
    [
        {"standing_charge_per_month": "-1"},
        {"price_per_kwh": "-0.1"},
        {"price_per_kwh": "5000"},
        {"price_per_kwh": "NaN"},
        {"price_per_kwh": "0.1234567"},
        {"currency": "XYZ"},
    ],
)
def test_bad_amounts_and_an_unknown_currency_store_nothing(change):
    mf, user = household()
    before = _stored()
    with pytest.raises(ValidationError) as error:
        household_tariff_set(
            access=access_for_user(user=user),
            facility=mf.facility,
            **{"price_per_kwh": "0.3", "standing_charge_per_month": "10", "currency": "EUR", **change},
            valid_from=date(2026, 3, 1),
        )
    assert set(error.value.message_dict) == set(change)
    assert _stored() == before


def test_another_households_home_a_viewer_and_an_issued_month_are_refused():
    mf, user = household()
    other, _ = household()
    viewer = MembershipFactory(tenant=mf.facility.tenant, role=Role.VIEWER).user
    contract_create(facility=mf.facility, tariff=TariffFactory(tenant=mf.facility.tenant), valid_from=date(2026, 1, 1))
    lo, hi = month_bounds(2026, 2, BERLIN)
    simulate(mf, lo, hi, seed=3)
    bill_issue(facility=mf.facility, year=2026, month=2, now_ms=LATER)
    before = _stored()
    amounts = {"price_per_kwh": "0.3", "standing_charge_per_month": "10"}
    for access, facility in ((access_for_user(user=user), other.facility), (access_for_user(user=viewer), mf.facility)):
        with pytest.raises(TenantAccessDenied):
            household_tariff_set(access=access, facility=facility, **amounts, valid_from=date(2026, 4, 1))
    with pytest.raises(ValidationError) as error:
        household_tariff_set(
            access=access_for_user(user=user), facility=mf.facility, **amounts, valid_from=date(2026, 2, 20)
        )
    assert "valid_from" in error.value.message_dict
    assert _stored() == before


def test_setting_the_same_day_again_replaces_the_days_own_tariff():
    mf, user = household()
    access = access_for_user(user=user)
    first = household_tariff_set(
        access=access,
        facility=mf.facility,
        price_per_kwh=0.3,
        standing_charge_per_month=10,
        valid_from=date(2026, 5, 1),
    )
    second = household_tariff_set(
        access=access,
        facility=mf.facility,
        price_per_kwh=0.32,
        standing_charge_per_month=10,
        valid_from=date(2026, 5, 1),
    )
    assert list(Contract.objects.filter(facility=mf.facility)) == [second]
    assert first.tariff.name != second.tariff.name


def test_the_api_reads_and_sets_the_homes_tariff_and_never_another_households(client):
    mf, user = household()
    other, stranger = household()
    headers = app_token(user, scope=SCOPES)
    assert client.get("/api/v1/me/tariff/", **headers).json() == {"facility": mf.facility.pk, "tariff": None}
    body = {"price_per_kwh": "0.3400", "standing_charge_per_month": "9.90", "currency": "SEK"}
    response = client.put("/api/v1/me/tariff/", body, content_type="application/json", **headers)
    assert response.status_code == 200, response.content
    today = datetime.now(tz=ZoneInfo(mf.facility.timezone)).date()
    tariff = response.json()["tariff"]
    assert (tariff["currency"], tariff["valid_from"], tariff["valid_to"]) == ("SEK", today.isoformat(), None)
    assert Decimal(tariff["price_per_kwh"]) == Decimal("0.34")
    assert Decimal(tariff["standing_charge_per_month"]) == Decimal("9.90")
    assert client.get("/api/v1/me/tariff/", **headers).json()["tariff"] == tariff
    # Another household's home is a 404, to read or to set, and nothing of it changes.
    before = _stored()
    theirs = {**body, "facility": other.facility.pk}
    assert client.get("/api/v1/me/tariff/", {"facility": other.facility.pk}, **headers).status_code == 404
    assert client.put("/api/v1/me/tariff/", theirs, content_type="application/json", **headers).status_code == 404
    stranger_headers = app_token(stranger, scope=SCOPES)
    assert client.get("/api/v1/me/tariff/", **stranger_headers).json()["tariff"] is None
    # Bad input is a 400 and stores nothing; reading needs billing:read, setting billing:write.
    for bad in ({**body, "standing_charge_per_month": "-5"}, {**body, "currency": "ZZZ"}, {"price_per_kwh": "x"}):
        assert client.put("/api/v1/me/tariff/", bad, content_type="application/json", **headers).status_code == 400
    read_only = app_token(user, scope=BILLING_READ)
    assert client.put("/api/v1/me/tariff/", body, content_type="application/json", **read_only).status_code == 403
    assert client.get("/api/v1/me/tariff/", **app_token(user, scope=BILLING_WRITE)).status_code == 403
    assert _stored() == before


def test_a_time_of_use_tariff_reads_without_a_single_price(client):
    mf, user = household()
    contract_create(facility=mf.facility, tariff=TariffFactory(tenant=mf.facility.tenant), valid_from=date(2026, 1, 1))
    tariff = client.get("/api/v1/me/tariff/", **app_token(user, scope=SCOPES)).json()["tariff"]
    # version_data: 15 + 8 a month before 19 % VAT, four prices by the hour.
    assert tariff["price_per_kwh"] is None and Decimal(tariff["standing_charge_per_month"]) == Decimal("27.37")


def test_options_describes_the_put_body(client):
    _, user = household()
    response = client.options("/api/v1/me/tariff/", **app_token(user, scope=SCOPES))
    assert response.status_code == 200
    assert "price_per_kwh" in response.json()["actions"]["PUT"]
