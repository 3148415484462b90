"""Users and invitations: mails go through Django's SMTP backend to a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
import socket
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from django.test import Client

from accounts.models import Invitation, Membership, Role, User
from accounts.tests.factories import MembershipFactory, UserFactory
from devices.tests.factories import FacilityFactory
from integrations.scopes import USERS_READ, USERS_WRITE
from integrations.tests.factories import AccessTokenFactory, bearer

pytestmark = pytest.mark.django_db


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802  (aiosmtpd's hook name)
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp(settings):
    """A real SMTP server on a free local port; Django's SMTP backend sends to it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def admin_client():
    facility = FacilityFactory(name="Filiale 7")
    membership = MembershipFactory(tenant=facility.tenant, role=Role.ADMIN)
    client = Client()
    client.force_login(membership.user)
    return client, membership, facility


def invite_link(inbox: Inbox, to: str) -> str:
    rcpts, message = next((r, m) for r, m in reversed(inbox.messages) if to in r)
    body = message.get_payload(decode=True).decode()
    return re.search(r"https?://\S+/manage/invite/\S+/", body).group(0)


def test_an_invitation_mail_arrives_and_the_invitee_sets_a_password_and_joins_as_facility_manager(
    smtp, admin_client, django_capture_on_commit_callbacks
):
    client, admin, facility = admin_client
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/manage/users/", {"email": "Anna@Example.com", "role": "facility_manager", "facilities": [facility.pk]}
        )
    assert response.status_code == 302
    assert len(smtp.messages) == 1
    rcpts, message = smtp.messages[0]
    assert rcpts == ["anna@example.com"] and admin.tenant.name in message["Subject"]
    link = invite_link(smtp, "anna@example.com")
    path = link.split("testserver", 1)[1]
    invitee = Client()
    assert invitee.get(path).status_code == 200
    weak = invitee.post(path, {"username": "anna", "password": "123"})
    assert weak.status_code == 400 and not User.objects.filter(username="anna").exists()
    joined = invitee.post(path, {"username": "anna", "password": "kühl-Regal-42"})
    assert joined.status_code == 302
    membership = Membership.objects.get(user__username="anna", tenant=admin.tenant)
    assert membership.role == Role.FACILITY_MANAGER and list(membership.facilities.all()) == [facility]
    assert "Filiale 7" in invitee.get("/").content.decode()
    # The link works once.
    assert Client().get(path).status_code == 404


def test_a_signed_in_user_for_example_by_sso_joins_without_a_new_password(
    smtp, admin_client, django_capture_on_commit_callbacks
):
    client, admin, _ = admin_client
    existing = UserFactory(email="bob@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/manage/users/", {"email": "bob@example.com", "role": "viewer"})
    path = invite_link(smtp, "bob@example.com").split("testserver", 1)[1]
    bob = Client()
    bob.force_login(existing)
    assert bob.post(path, {"as_current": "1"}).status_code == 302
    assert Membership.objects.get(user=existing, tenant=admin.tenant).role == Role.VIEWER


def test_resending_sends_a_new_link_and_the_old_one_stops_working(
    smtp, admin_client, django_capture_on_commit_callbacks
):
    client, admin, _ = admin_client
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/manage/users/", {"email": "cem@example.com", "role": "viewer"})
    old = invite_link(smtp, "cem@example.com").split("testserver", 1)[1]
    invitation = Invitation.objects.get(email="cem@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/manage/users/invitations/{invitation.pk}/resend/")
    new = invite_link(smtp, "cem@example.com").split("testserver", 1)[1]
    assert len(smtp.messages) == 2 and new != old
    assert Client().get(old).status_code == 404 and Client().get(new).status_code == 200
    client.post(f"/manage/users/invitations/{invitation.pk}/revoke/")
    assert Client().get(new).status_code == 404


def test_a_bad_address_a_member_and_a_foreign_facility_grant_are_refused(smtp, admin_client):
    client, admin, _ = admin_client
    foreign = FacilityFactory()
    for data in [
        {"email": "not-an-address", "role": "viewer"},
        {"email": admin.user.email, "role": "viewer"},
        {"email": "dora@example.com", "role": "facility_manager", "facilities": [foreign.pk]},
        {"email": "dora@example.com", "role": "facility_manager"},
    ]:
        assert client.post("/manage/users/", data).status_code == 400, data
    assert not Invitation.objects.exists() and smtp.messages == []


def test_an_admin_changes_a_role_and_removes_a_member_but_never_the_last_admin(admin_client):
    client, admin, facility = admin_client
    viewer = MembershipFactory(tenant=admin.tenant, role=Role.VIEWER)
    client.post(
        f"/manage/users/{viewer.pk}/role/",
        {f"m{viewer.pk}-role": "facility_manager", f"m{viewer.pk}-facilities": [facility.pk]},
    )
    viewer.refresh_from_db()
    assert viewer.role == Role.FACILITY_MANAGER and list(viewer.facilities.all()) == [facility]
    client.post(f"/manage/users/{admin.pk}/role/", {f"m{admin.pk}-role": "viewer"})
    admin.refresh_from_db()
    assert admin.role == Role.ADMIN
    client.post(f"/manage/users/{viewer.pk}/remove/")
    assert not Membership.objects.filter(pk=viewer.pk).exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.FACILITY_MANAGER])
def test_only_tenant_admins_reach_the_users_page(role):
    facility = FacilityFactory()
    membership = MembershipFactory(
        tenant=facility.tenant, role=role, facilities=[facility] if role == Role.FACILITY_MANAGER else []
    )
    other = MembershipFactory(tenant=facility.tenant, role=Role.VIEWER)
    client = Client()
    client.force_login(membership.user)
    assert client.get("/manage/users/").status_code == 403
    assert client.post("/manage/users/", {"email": "x@example.com", "role": "admin"}).status_code == 403
    assert client.post(f"/manage/users/{other.pk}/remove/").status_code == 403
    assert 'href="/manage/users/"' not in client.get("/").content.decode()
    assert Membership.objects.filter(pk=other.pk).exists() and not Invitation.objects.exists()


def test_another_tenants_members_and_invitations_answer_404(admin_client, smtp, django_capture_on_commit_callbacks):
    client, _, _ = admin_client
    foreign_admin = MembershipFactory(role=Role.ADMIN)
    foreign_member = MembershipFactory(tenant=foreign_admin.tenant, role=Role.VIEWER)
    foreign = Client()
    foreign.force_login(foreign_admin.user)
    with django_capture_on_commit_callbacks(execute=True):
        foreign.post("/manage/users/", {"email": "eve@example.com", "role": "viewer"})
    invitation = Invitation.objects.get(email="eve@example.com")
    assert client.post(f"/manage/users/{foreign_member.pk}/remove/").status_code == 404
    assert client.post(f"/manage/users/invitations/{invitation.pk}/revoke/").status_code == 404
    assert (
        Membership.objects.filter(pk=foreign_member.pk).exists()
        and Invitation.objects.filter(pk=invitation.pk).exists()
    )


def test_every_users_form_needs_a_csrf_token(admin_client):
    _, admin, _ = admin_client
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin.user)
    for path in ["/manage/users/", f"/manage/users/{admin.pk}/role/", f"/manage/users/{admin.pk}/remove/"]:
        assert client.post(path, {}).status_code == 403
    html = client.get("/manage/users/").content.decode()
    assert html.count('<form method="post"') == html.count('name="csrfmiddlewaretoken"')


def test_the_api_invites_lists_resends_and_withdraws(client, smtp, django_capture_on_commit_callbacks):
    facility = FacilityFactory()
    token = AccessTokenFactory(application__tenant=facility.tenant, scope=f"{USERS_READ} {USERS_WRITE}")
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(
            "/api/v1/invitations/",
            {"email": "fay@example.com", "role": "viewer"},
            content_type="application/json",
            **bearer(token),
        )
    assert created.status_code == 201 and len(smtp.messages) == 1
    pk = created.json()["id"]
    assert [i["email"] for i in client.get("/api/v1/invitations/", **bearer(token)).json()["results"]] == [
        "fay@example.com"
    ]
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            client.post(
                f"/api/v1/invitations/{pk}/resend/", content_type="application/json", **bearer(token)
            ).status_code
            == 200
        )
    assert len(smtp.messages) == 2
    bad = client.post(
        "/api/v1/invitations/", {"email": "nope", "role": "viewer"}, content_type="application/json", **bearer(token)
    )
    assert bad.status_code == 400 and "email" in bad.json()["error"]["fields"]
    intruder = AccessTokenFactory(application__tenant=FacilityFactory().tenant, scope=f"{USERS_READ} {USERS_WRITE}")
    assert client.delete(f"/api/v1/invitations/{pk}/", **bearer(intruder)).status_code == 404
    assert client.delete(f"/api/v1/invitations/{pk}/", **bearer(token)).status_code == 204
    assert not Invitation.objects.filter(pk=pk).exists()


def test_the_api_changes_roles_and_removes_members(client):
    facility = FacilityFactory()
    member = MembershipFactory(tenant=facility.tenant, role=Role.VIEWER)
    MembershipFactory(tenant=facility.tenant, role=Role.ADMIN)
    token = AccessTokenFactory(application__tenant=facility.tenant, scope=f"{USERS_READ} {USERS_WRITE}")
    path = f"/api/v1/members/{member.pk}/"
    patched = client.patch(
        path,
        {"role": "facility_manager", "facilities": [facility.pk]},
        content_type="application/json",
        **bearer(token),
    )
    assert patched.status_code == 200 and patched.json()["facilities"] == [facility.pk]
    read_only = AccessTokenFactory(application__tenant=facility.tenant, scope=USERS_READ)
    assert client.delete(path, **bearer(read_only)).status_code == 403
    assert client.delete(path, **bearer(token)).status_code == 204
    assert not Membership.objects.filter(pk=member.pk).exists()
