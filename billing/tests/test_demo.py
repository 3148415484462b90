"""`make run`'s billing seed: the demo tenants get their tariffs, once."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from accounts.selectors import access_for_tenant
from billing.demo import HOUSEHOLD_TARIFF, RETAIL_TARIFF, seed_billing_demo
from billing.models import Contract, Tariff
from billing.selectors import bill_compute
from devices.demo import seed_demo
from devices.models import Facility

pytestmark = pytest.mark.django_db


def test_the_demo_retailer_and_the_household_get_their_tariffs_once():
    seed_demo()
    seed_billing_demo(today=date(2026, 11, 20))
    seed_billing_demo(today=date(2026, 11, 20))
    retail = Tariff.objects.get(name=RETAIL_TARIFF)
    home = Tariff.objects.get(name=HOUSEHOLD_TARIFF)
    assert (retail.currency, home.currency) == ("EUR", "SEK")
    assert retail.versions.get().demand_mode == "utilisation"
    assert (
        Contract.objects.filter(tariff=retail).count()
        == Facility.objects.filter(tenant__slug="demo-retail").count()
        == 2
    )
    assert Contract.objects.filter(tariff=home).count() == 1
    market = Facility.objects.get(name="Supermarket Berlin Mitte")
    computed = bill_compute(
        access=access_for_tenant(tenant=market.tenant),
        facility_id=market.pk,
        year=2026,
        month=11,
        now_ms=int(datetime(2026, 11, 20, tzinfo=UTC).timestamp() * 1000),
    )
    assert computed.draft and computed.result.currency == "EUR"
    assert {line.label for line in computed.result.lines} >= {"Monthly charge", "Metering (Messstellenbetrieb)"}
