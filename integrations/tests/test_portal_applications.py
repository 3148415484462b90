"""The portal page where tenant admins register OAuth applications and revoke tokens."""

from __future__ import annotations

import pytest
from oauth2_provider.models import AccessToken, RefreshToken

from accounts.models import Role
from accounts.tests.factories import MembershipFactory
from integrations.models import Application
from integrations.tests.factories import AccessTokenFactory, ApplicationFactory

pytestmark = pytest.mark.django_db

URL = "/integrations/"


@pytest.fixture
def admin_client(client):
    membership = MembershipFactory(role=Role.ADMIN)
    client.force_login(membership.user)
    client.tenant = membership.tenant
    return client


def test_an_admin_registers_a_client_credentials_application_and_sees_its_secret_once(admin_client):
    response = admin_client.post(
        URL,
        {
            "name": "ERP link",
            "grant_type": "client-credentials",
            "client_type": "confidential",
            "scopes": ["fleet:read", "readings:read"],
        },
    )
    assert response.status_code == 200
    application = Application.objects.get(name="ERP link")
    assert application.tenant == admin_client.tenant
    assert application.scope == "fleet:read readings:read"
    secret = response.context["registered"].client_secret
    assert secret in response.content.decode()
    assert application.client_secret != secret  # stored hashed
    assert secret not in admin_client.get(URL).content.decode()


def test_an_authorization_code_application_needs_a_redirect_uri(admin_client):
    response = admin_client.post(
        URL, {"name": "App", "grant_type": "authorization-code", "client_type": "public", "scopes": ["fleet:read"]}
    )
    assert response.status_code == 400
    assert not Application.objects.filter(name="App").exists()
    assert "redirect" in response.content.decode().lower()


def test_registering_without_a_scope_is_refused_with_a_message(admin_client):
    response = admin_client.post(URL, {"name": "X", "grant_type": "client-credentials", "client_type": "confidential"})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()


def test_the_page_lists_only_this_tenants_applications_and_tokens(admin_client):
    mine = ApplicationFactory(tenant=admin_client.tenant, name="Mine")
    AccessTokenFactory(application=mine)
    theirs = ApplicationFactory(name="Theirs")
    AccessTokenFactory(application=theirs)
    html = admin_client.get(URL).content.decode()
    assert "Mine" in html and "Theirs" not in html
    assert html.count("data-token-id=") == 1


def test_an_admin_revokes_a_token_and_its_refresh_token(admin_client):
    user = MembershipFactory(tenant=admin_client.tenant).user
    token = AccessTokenFactory(application__tenant=admin_client.tenant, user=user)
    refresh = RefreshToken.objects.create(application=token.application, user=user, token="r", access_token=token)
    response = admin_client.post(f"/integrations/tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    assert not AccessToken.objects.filter(pk=token.pk).exists()
    refresh.refresh_from_db()
    assert refresh.revoked is not None


def test_another_tenants_token_or_application_cannot_be_revoked_or_deleted(admin_client):
    foreign = AccessTokenFactory()
    assert admin_client.post(f"/integrations/tokens/{foreign.pk}/revoke/").status_code == 404
    assert admin_client.post(f"/integrations/applications/{foreign.application_id}/delete/").status_code == 404
    assert AccessToken.objects.filter(pk=foreign.pk).exists()


def test_deleting_an_application_removes_its_tokens(admin_client):
    token = AccessTokenFactory(application__tenant=admin_client.tenant)
    admin_client.post(f"/integrations/applications/{token.application_id}/delete/")
    assert not AccessToken.objects.filter(pk=token.pk).exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.FACILITY_MANAGER])
def test_non_admins_are_refused_every_action(client, role):
    membership = MembershipFactory(role=role)
    token = AccessTokenFactory(application__tenant=membership.tenant)
    client.force_login(membership.user)
    assert client.get(URL).status_code == 403
    body = {"name": "X", "grant_type": "client-credentials", "client_type": "confidential", "scopes": ["fleet:read"]}
    assert client.post(URL, body).status_code == 403
    assert client.post(f"/integrations/tokens/{token.pk}/revoke/").status_code == 403
    assert client.post(f"/integrations/applications/{token.application_id}/delete/").status_code == 403
    assert AccessToken.objects.filter(pk=token.pk).exists()
    assert not Application.objects.filter(name="X").exists()


def test_signed_out_visitors_are_sent_to_the_login_page(client):
    response = client.get(URL)
    assert response.status_code == 302 and response.url.startswith("/login/")
