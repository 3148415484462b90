"""Bulk provisioning from a CSV upload: the portal's streaming import and the API share one service."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from auditlog.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from devices import csvimport
from devices.keys import private_key_load, public_key_bytes
from devices.models import Channel, ChannelAllocation, Device
from devices.tests.factories import DeviceFactory, DeviceTypeFactory, FacilityFactory, LoadFactory
from integrations.scopes import FLEET_READ, FLEET_WRITE
from integrations.tests.factories import AccessTokenFactory, bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def park():
    facility = FacilityFactory(name="Markt Süd")
    LoadFactory(facility=facility, name="Kühlung")
    LoadFactory(facility=facility, name="Licht")
    device_type = DeviceTypeFactory(model_name="EB-2")
    return facility, device_type


def portal_client(facility, role=Role.ADMIN, *, enforce_csrf=False):
    membership = MembershipFactory(
        tenant=facility.tenant, role=role, facilities=[facility] if role == Role.FACILITY_MANAGER else []
    )
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(membership.user)
    return client


async def _collect(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def run_import(client, raw: bytes, *, dry_run: bool):
    response = client.post(
        "/manage/devices/import/run/",
        {"file": SimpleUploadedFile("devices.csv", raw, content_type="text/csv"), "dry_run": "1" if dry_run else "0"},
    )
    if response.streaming:
        body = async_to_sync(_collect)(response.streaming_content)
        return response, [json.loads(line) for line in body.decode().splitlines()]
    return response, [{"result": response.json()}]


def test_a_german_excel_file_with_semicolons_bom_and_windows_1252_imports_with_allocations(park):
    facility, _ = park
    text = (
        "serial;type;facility;name;channels\r\n"
        "SN-A-1;EB-2;Markt Süd;Kühltheke 1;0=Kühlung|E=Kühlung\r\n"
        "SN-A-2;EB-2;Markt Süd;Decke;0=Licht\r\n"
    )
    client = portal_client(facility)
    for raw in [text.encode("cp1252"), b"\xef\xbb\xbf" + text.encode("utf-8")]:
        Device.objects.filter(serial__startswith="SN-A-").delete()
        response, lines = run_import(client, raw, dry_run=False)
        assert response["Cache-Control"] == "no-store"
        result = lines[-1]["result"]
        assert result["ok"], result
        assert [line for line in lines if "done" in line][-1] == {"done": 2, "total": 2}
        first = Device.objects.get(serial="SN-A-1")
        assert first.name == "Kühltheke 1" and first.facility == facility
        loads = dict(Channel.objects.filter(device=first).values_list("index", "load__name"))
        assert loads == {0: "Kühlung", 1: "Kühlung"}
        assert ChannelAllocation.objects.filter(channel__device=first).count() == 2
        second = Device.objects.get(serial="SN-A-2")
        assert dict(Channel.objects.filter(device=second).values_list("index", "load__name")) == {0: "Licht", 1: None}
        pem = {d["serial"]: d["private_key_pem"] for d in result["devices"]}["SN-A-1"]
        assert public_key_bytes(private_key_load(pem)) == bytes(first.public_key)
        logged = LogEntry.objects.get_for_object(first).get()
        assert logged.changes_dict["allocated_channels"] == ["0", "2"] and logged.actor is not None


def test_a_dry_run_previews_the_rows_and_stores_nothing(park):
    facility, _ = park
    client = portal_client(facility)
    raw = b"serial,type,facility,name\nSN-D-1,EB-2,Markt S\xc3\xbcd,One\n"
    _, lines = run_import(client, raw, dry_run=True)
    result = lines[-1]["result"]
    assert result["ok"] and result["dry_run"] and result["devices"] == []
    assert result["preview"][0]["serial"] == "SN-D-1" and result["preview"][0]["facility"] == "Markt Süd"
    assert not Device.objects.filter(serial="SN-D-1").exists()


def test_bad_rows_are_reported_per_line_and_nothing_is_imported(park):
    facility, _ = park
    DeviceFactory(serial="SN-TAKEN-1")
    other_tenant_facility = FacilityFactory(name="Fremd")
    LoadFactory(facility=FacilityFactory(tenant=facility.tenant, name="Nord"), name="Nordlicht")
    raw = "\n".join(
        [
            "serial;type;facility;name;channels",
            "SN-OK-1;EB-2;Markt Süd;;0=Kühlung",
            "SN-TAKEN-1;EB-2;Markt Süd;;",
            "SN-OK-1;EB-2;Markt Süd;;",
            "??;EB-2;Markt Süd;;",
            "SN-B-5;Nope;Markt Süd;;",
            f"SN-B-6;EB-2;{other_tenant_facility.name};;",
            "SN-B-7;EB-2;Markt Süd;;0=Nordlicht",
            "SN-B-8;EB-2;Markt Süd;;9=Kühlung",
            "SN-B-9;EB-2;Markt Süd;;garbage",
        ]
    ).encode()
    response, lines = run_import(portal_client(facility), raw, dry_run=False)
    result = lines[-1]["result"]
    assert not result["ok"]
    errors = {e["line"]: " ".join(e["messages"]) for e in result["errors"]}
    assert set(errors) == {3, 4, 5, 6, 7, 8, 9, 10}
    assert "already exists" in errors[3]
    assert "also on line 2" in errors[4]
    assert "serial" in errors[5].lower()
    assert "Unknown device type" in errors[6]
    assert "No facility 'Fremd'" in errors[7]
    assert "no load 'Nordlicht'" in errors[8]
    assert "no channel '9'" in errors[9]
    assert "channel=load" in errors[10]
    assert not Device.objects.filter(serial__in=["SN-OK-1", "SN-B-5"]).exists()


def test_an_oversized_upload_is_refused_before_it_is_read(park, settings):
    facility, _ = park
    raw = b"serial,type,facility\n" + b"X" * (csvimport.MAX_BYTES + 1)
    response, lines = run_import(portal_client(facility), raw, dry_run=True)
    assert response.status_code == 413
    assert "larger than" in lines[-1]["result"]["errors"][0]["messages"][0]


def test_more_than_ten_thousand_rows_are_refused_as_a_whole():
    rows = "".join(f"SN-{n:06d},EB-2,F\n" for n in range(csvimport.MAX_ROWS + 1))
    with pytest.raises(csvimport.CsvImportError, match="more than 10000 rows"):
        csvimport.parse(("serial,type,facility\n" + rows).encode())


def test_ten_thousand_rows_are_read():
    rows = "".join(f"SN-{n:06d};EB-2;F;;0=L\n" for n in range(csvimport.MAX_ROWS))
    parsed, errors = csvimport.parse(("serial;type;facility;name;channels\n" + rows).encode("cp1252"))
    assert len(parsed) == csvimport.MAX_ROWS and not errors
    assert parsed[-1].serial == "SN-009999" and parsed[-1].allocations == (("0", "L"),)


def test_a_header_without_the_required_columns_is_refused(park):
    facility, _ = park
    _, lines = run_import(portal_client(facility), b"serial;name\nX;Y\n", dry_run=True)
    assert "type, facility" in lines[-1]["result"]["errors"][0]["messages"][0]


def test_a_viewer_cannot_import_and_a_facility_manager_only_into_granted_facilities(park):
    facility, _ = park
    elsewhere = FacilityFactory(tenant=facility.tenant, name="Elsewhere")
    raw = f"serial,type,facility\nSN-R-1,EB-2,{facility.name}\nSN-R-2,EB-2,{elsewhere.name}\n".encode()
    response, _ = run_import(portal_client(facility, Role.VIEWER), raw, dry_run=False)
    assert response.status_code == 403
    assert portal_client(facility, Role.VIEWER).get("/manage/devices/import/").status_code == 403
    _, lines = run_import(portal_client(facility, Role.FACILITY_MANAGER), raw, dry_run=False)
    errors = lines[-1]["result"]["errors"]
    # Facilities outside the grant are not even visible to the manager.
    assert [e["line"] for e in errors] == [3] and "No facility 'Elsewhere'" in errors[0]["messages"][0]
    assert not Device.objects.filter(serial__startswith="SN-R-").exists()


def test_the_import_refuses_a_post_without_a_csrf_token(park):
    facility, _ = park
    client = portal_client(facility, enforce_csrf=True)
    raw = b"serial,type,facility\nSN-C-1,EB-2,Markt S\xc3\xbcd\n"
    response = client.post("/manage/devices/import/run/", {"file": SimpleUploadedFile("d.csv", raw)})
    assert response.status_code == 403
    assert not Device.objects.filter(serial="SN-C-1").exists()
    assert 'name="csrfmiddlewaretoken"' in client.get("/manage/devices/import/").content.decode()


def _api(client, token, raw: bytes, dry_run: bool = False):
    return client.post(
        "/api/v1/devices/bulk/",
        {"file": SimpleUploadedFile("d.csv", raw), "dry_run": "true" if dry_run else "false"},
        **bearer(token),
    )


def test_the_api_imports_the_same_file_and_returns_the_keys_once(client, park):
    facility, _ = park
    token = AccessTokenFactory(application__tenant=facility.tenant, scope=f"{FLEET_READ} {FLEET_WRITE}")
    raw = "serial;type;facility;name;channels\nSN-API-1;EB-2;Markt Süd;;0=Kühlung\n".encode("cp1252")
    preview = _api(client, token, raw, dry_run=True)
    assert preview.status_code == 200 and preview.json()["preview"][0]["channels"] == ["0=Kühlung"]
    assert not Device.objects.filter(serial="SN-API-1").exists()
    created = _api(client, token, raw)
    assert created.status_code == 201 and created.json()["devices"][0]["serial"] == "SN-API-1"
    again = _api(client, token, raw)
    assert again.status_code == 400 and "already exists" in again.json()["errors"][0]["messages"][0]


def test_the_api_refuses_another_tenants_facility_and_an_odd_file(client, park):
    facility, _ = park
    intruder = AccessTokenFactory(application__tenant=FacilityFactory().tenant, scope=f"{FLEET_READ} {FLEET_WRITE}")
    response = _api(client, intruder, "serial,type,facility\nSN-X-1,EB-2,Markt Süd\n".encode())
    assert response.status_code == 400 and "No facility" in str(response.json())
    empty = _api(client, intruder, b"")
    assert empty.status_code == 400
    assert not Device.objects.filter(serial="SN-X-1").exists()
