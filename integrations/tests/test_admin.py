"""The OAuth application admin refuses an owner from outside the application's tenant (issue 18)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.tests.factories import MembershipFactory, UserFactory
from integrations.models import Application

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def _application_form(*, tenant, user, name):
    return {
        "client_id": f"client-{name}",
        "client_secret": "s3cret-s3cret-s3cret",
        "client_type": Application.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": Application.GRANT_CLIENT_CREDENTIALS,
        "name": name,
        "tenant": tenant.pk,
        "user": user.pk,
        "scope": "fleet:read",
        "algorithm": "",
        "redirect_uris": "",
        "post_logout_redirect_uris": "",
        "allowed_origins": "",
    }


def test_the_application_admin_refuses_an_owner_who_is_not_a_member_of_its_tenant(staff_client):
    tenant_a = MembershipFactory().tenant
    outsider = MembershipFactory().user  # a member of tenant B only

    response = staff_client.post(
        reverse("admin:integrations_application_add"), _application_form(tenant=tenant_a, user=outsider, name="x")
    )

    assert response.status_code == 200
    assert "member of the application" in response.content.decode()
    assert not Application.objects.filter(name="x").exists()


def test_the_application_admin_saves_an_owner_who_is_a_member(staff_client):
    member = MembershipFactory()
    response = staff_client.post(
        reverse("admin:integrations_application_add"),
        _application_form(tenant=member.tenant, user=member.user, name="y"),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Application.objects.get(name="y").tenant_id == member.tenant_id
