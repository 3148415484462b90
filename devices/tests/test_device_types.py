"""Device types a tenant defines beside the platform catalogue, with a validated channel-template form."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices.models import Device, DeviceType
from devices.tests.factories import DeviceTypeFactory, FacilityFactory
from integrations.scopes import FLEET_READ, FLEET_WRITE
from integrations.tests.factories import AccessTokenFactory, bearer

pytestmark = pytest.mark.django_db


def template_post(rows: list[dict], **fields) -> dict:
    data = {"model_name": "Eigenbau 3", "manufacturer": "Werkstatt", "firmware_line": "own-3", **fields}
    data.update(
        {"ch-TOTAL_FORMS": str(len(rows)), "ch-INITIAL_FORMS": "0", "ch-MIN_NUM_FORMS": "1", "ch-MAX_NUM_FORMS": "64"}
    )
    for n, row in enumerate(rows):
        data.update({f"ch-{n}-{k}": v for k, v in row.items()})
    return data


P = {"name": "P", "quantity": "active_power", "unit": "kW", "phase": "total", "scale": "0.001"}
T = {"name": "Kühlraum", "quantity": "temperature", "unit": "°C", "phase": "", "scale": "0.1"}


def admin(facility):
    client = Client()
    client.force_login(MembershipFactory(tenant=facility.tenant, role=Role.ADMIN).user)
    return client


def test_an_admin_defines_a_type_in_the_form_and_provisions_a_device_of_it():
    facility = FacilityFactory()
    client = admin(facility)
    catalogue = DeviceTypeFactory(model_name="Catalogue-1")
    assert client.post("/manage/device-types/new/", template_post([P, T])).status_code == 302
    own = DeviceType.objects.get(model_name="Eigenbau 3")
    assert own.tenant_id == facility.tenant_id
    assert own.channels == [
        {"name": "P", "quantity": "active_power", "unit": "kW", "phase": "total", "scale": 0.001},
        {"name": "Kühlraum", "quantity": "temperature", "unit": "°C", "phase": "", "scale": 0.1},
    ]
    listing = client.get("/manage/device-types/").content.decode()
    assert "Eigenbau 3" in listing and catalogue.model_name in listing
    client.post("/manage/devices/new/", {"serial": "OWN-0001", "device_type": own.pk, "facility": facility.pk})
    device = Device.objects.get(serial="OWN-0001")
    assert [(c.quantity, c.unit, c.scale) for c in device.channels.order_by("index")] == [
        ("active_power", "kW", 0.001),
        ("temperature", "°C", 0.1),
    ]


def test_a_wrong_unit_a_zero_scale_and_an_empty_template_are_refused():
    client = admin(FacilityFactory())
    bad_unit = client.post("/manage/device-types/new/", template_post([{**P, "unit": "°C"}]))
    assert bad_unit.status_code == 400 and "not valid for active_power" in bad_unit.content.decode()
    assert client.post("/manage/device-types/new/", template_post([{**P, "scale": "0"}])).status_code == 400
    assert client.post("/manage/device-types/new/", template_post([])).status_code == 400
    assert not DeviceType.objects.filter(model_name="Eigenbau 3").exists()


def test_another_tenants_type_is_invisible_and_unusable():
    facility = FacilityFactory()
    theirs = DeviceTypeFactory(model_name="Theirs-1", tenant=FacilityFactory().tenant)
    client = admin(facility)
    assert "Theirs-1" not in client.get("/manage/device-types/").content.decode()
    assert client.get(f"/manage/device-types/{theirs.pk}/").status_code == 404
    response = client.post(
        "/manage/devices/new/", {"serial": "X-0001", "device_type": theirs.pk, "facility": facility.pk}
    )
    assert response.status_code == 400 and not Device.objects.filter(serial="X-0001").exists()
    token = AccessTokenFactory(application__tenant=facility.tenant, scope=f"{FLEET_READ} {FLEET_WRITE}")
    body = {"serial": "X-0002", "device_type": theirs.pk, "facility": facility.pk}
    api = client.post("/api/v1/devices/", body, content_type="application/json", **bearer(token))
    assert api.status_code == 400 and "device_type" in api.json()["error"]["fields"]
    ids = [t["id"] for t in client.get("/api/v1/device-types/", **bearer(token)).json()["results"]]
    assert theirs.pk not in ids


def test_viewers_and_facility_managers_cannot_define_types_and_the_catalogue_is_read_only():
    facility = FacilityFactory()
    for role in (Role.VIEWER, Role.FACILITY_MANAGER):
        client = Client()
        client.force_login(
            MembershipFactory(
                tenant=facility.tenant, role=role, facilities=[facility] if role == Role.FACILITY_MANAGER else []
            ).user
        )
        assert client.post("/manage/device-types/new/", template_post([P])).status_code == 403
    catalogue = DeviceTypeFactory()
    token = AccessTokenFactory(application__tenant=facility.tenant, scope=f"{FLEET_READ} {FLEET_WRITE}")
    patch = Client().patch(
        f"/api/v1/device-types/{catalogue.pk}/",
        {"firmware_line": "x"},
        content_type="application/json",
        **bearer(token),
    )
    assert patch.status_code == 403
    assert not DeviceType.objects.filter(model_name="Eigenbau 3").exists()


def test_the_api_defines_patches_and_deletes_an_own_type():
    facility = FacilityFactory()
    client = Client()
    token = AccessTokenFactory(application__tenant=facility.tenant, scope=f"{FLEET_READ} {FLEET_WRITE}")
    body = {
        "model_name": "API-Type",
        "firmware_line": "api",
        "channels": [{"name": "U", "quantity": "voltage", "unit": "V"}],
    }
    created = client.post("/api/v1/device-types/", body, content_type="application/json", **bearer(token))
    assert created.status_code == 201 and created.json()["tenant_defined"] is True
    pk = created.json()["id"]
    wrong = client.patch(
        f"/api/v1/device-types/{pk}/",
        {"channels": [{"name": "U", "quantity": "voltage", "unit": "kV"}]},
        content_type="application/json",
        **bearer(token),
    )
    assert wrong.status_code == 400
    assert client.delete(f"/api/v1/device-types/{pk}/", **bearer(token)).status_code == 204
    assert not DeviceType.objects.filter(pk=pk).exists()
