from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from accounts.tests.factories import TenantFactory
from integrations.models import Application

pytestmark = pytest.mark.django_db


def test_the_command_registers_a_tenant_application_and_prints_its_credentials():
    tenant = TenantFactory(slug="acme")
    out = io.StringIO()
    call_command("oauth_application", "--tenant", "acme", "--name", "ERP", "--scopes", "readings:read", stdout=out)
    app = Application.objects.get(name="ERP")
    assert app.tenant == tenant and app.scope == "readings:read"
    assert f"client_id={app.client_id}" in out.getvalue() and "client_secret=" in out.getvalue()


def test_an_unknown_tenant_or_a_missing_scope_is_a_clear_error():
    with pytest.raises(CommandError, match="No tenant"):
        call_command("oauth_application", "--tenant", "nope", "--name", "X", "--scopes", "fleet:read")
    TenantFactory(slug="acme")
    with pytest.raises(CommandError, match="scopes"):
        call_command("oauth_application", "--tenant", "acme", "--name", "X")


def test_a_platform_sso_client_has_no_tenant_and_no_api_scope():
    call_command(
        "oauth_application",
        "--platform",
        "--name",
        "Portal",
        "--redirect-uri",
        "https://p.example/cb",
        stdout=io.StringIO(),
    )
    app = Application.objects.get(name="Portal")
    assert app.tenant is None and app.scope == "" and app.skip_authorization
