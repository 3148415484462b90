"""Claiming a device pre-provisioned at the factory, with the serial and claim code on its label."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.keys import private_key_load, signature_valid
from devices.models import Device, FactoryDevice
from devices.services import CLAIM_FAILURES_PER_SERIAL, factory_device_create
from devices.tests.factories import DeviceTypeFactory, FacilityFactory
from integrations.scopes import FLEET_READ, FLEET_WRITE
from integrations.tests.factories import AccessTokenFactory, bearer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def stock():
    return factory_device_create(serial="FAB-0001", device_type=DeviceTypeFactory())


def portal(facility, role=Role.ADMIN):
    membership = MembershipFactory(
        tenant=facility.tenant, role=role, facilities=[facility] if role == Role.FACILITY_MANAGER else []
    )
    client = Client()
    client.force_login(membership.user)
    return client


def test_the_factory_command_prints_a_label_code_and_a_key_and_stores_neither():
    DeviceTypeFactory(model_name="EB-Fab")
    out = StringIO()
    call_command("factory_provision", "FAB-0100", "FAB-0101", "--type", "EB-Fab", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["serial"] for line in lines] == ["FAB-0100", "FAB-0101"]
    record = FactoryDevice.objects.get(serial="FAB-0100")
    assert lines[0]["claim_code"] not in record.claim_code_hash
    key = private_key_load(lines[0]["private_key_pem"])
    assert signature_valid(public_key=bytes(record.public_key), signature=key.sign(b"m"), message=b"m")


def test_a_facility_manager_claims_a_device_which_keeps_its_factory_key(stock):
    facility = FacilityFactory()
    client = portal(facility, Role.FACILITY_MANAGER)
    code = stock.claim_code[:4] + "-" + stock.claim_code[4:8].lower() + " " + stock.claim_code[8:]
    response = client.post(
        "/manage/devices/claim/", {"serial": "FAB-0001", "claim_code": code, "facility": facility.pk, "name": "Kasse"}
    )
    assert response.status_code == 302
    device = Device.objects.get(serial="FAB-0001")
    assert device.tenant_id == facility.tenant_id and device.name == "Kasse" and device.channels.count() == 2
    key = private_key_load(stock.private_key_pem)
    assert signature_valid(public_key=bytes(device.public_key), signature=key.sign(b"hi"), message=b"hi")
    # A claimed device cannot be claimed again, by anyone.
    other = FacilityFactory()
    again = portal(other).post(
        "/manage/devices/claim/", {"serial": "FAB-0001", "claim_code": stock.claim_code, "facility": other.pk}
    )
    assert again.status_code == 400 and Device.objects.get(serial="FAB-0001").tenant_id == facility.tenant_id


def test_a_wrong_code_and_an_unknown_serial_get_the_same_refusal(stock):
    facility = FacilityFactory()
    client = portal(facility)
    wrong = client.post(
        "/manage/devices/claim/", {"serial": "FAB-0001", "claim_code": "AAAAAAAAAAAA", "facility": facility.pk}
    )
    unknown = client.post(
        "/manage/devices/claim/", {"serial": "FAB-9999", "claim_code": "AAAAAAAAAAAA", "facility": facility.pk}
    )
    assert wrong.status_code == unknown.status_code == 400
    assert "do not match" in wrong.content.decode() and "do not match" in unknown.content.decode()
    assert not Device.objects.filter(serial="FAB-0001").exists()


def test_claiming_is_rate_limited_so_codes_cannot_be_guessed_even_the_right_one_waits(stock):
    facility = FacilityFactory()
    client = portal(facility)
    for _ in range(CLAIM_FAILURES_PER_SERIAL):
        assert (
            client.post(
                "/manage/devices/claim/", {"serial": "FAB-0001", "claim_code": "WRONGWRONG22", "facility": facility.pk}
            ).status_code
            == 400
        )
    limited = client.post(
        "/manage/devices/claim/", {"serial": "FAB-0001", "claim_code": stock.claim_code, "facility": facility.pk}
    )
    assert limited.status_code == 429 and "Too many failed claims" in limited.content.decode()
    assert not Device.objects.filter(serial="FAB-0001").exists()


def test_a_viewer_cannot_claim(stock):
    facility = FacilityFactory()
    response = portal(facility, Role.VIEWER).post(
        "/manage/devices/claim/", {"serial": "FAB-0001", "claim_code": stock.claim_code, "facility": facility.pk}
    )
    assert response.status_code == 403 and not Device.objects.filter(serial="FAB-0001").exists()


def test_the_api_claims_refuses_a_wrong_code_and_answers_429_when_limited(client, stock):
    facility = FacilityFactory()
    token = AccessTokenFactory(application__tenant=facility.tenant, scope=f"{FLEET_READ} {FLEET_WRITE}")

    def claim(code, facility_id=facility.pk):
        body = {"serial": "FAB-0001", "claim_code": code, "facility": facility_id}
        return client.post("/api/v1/devices/claim/", body, content_type="application/json", **bearer(token))

    foreign = FacilityFactory()
    assert claim(stock.claim_code, foreign.pk).status_code == 400  # another tenant's facility reads as missing
    wrong = claim("WRONGWRONG22")
    assert wrong.status_code == 400 and "claim_code" in wrong.json()["error"]["fields"]
    for _ in range(CLAIM_FAILURES_PER_SERIAL - 1):
        claim("WRONGWRONG22")
    limited = claim(stock.claim_code)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    cache.clear()
    created = claim(stock.claim_code)
    assert created.status_code == 201 and created.json()["serial"] == "FAB-0001"
