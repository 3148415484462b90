"""The users page and invitation links, mounted in the portal under /manage/."""

from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("users/", views.user_list, name="users"),
    path(
        "users/invitations/<int:invitation_id>/resend/",
        views.invitation_action,
        {"action": "resend"},
        name="invitation_resend",
    ),
    path(
        "users/invitations/<int:invitation_id>/revoke/",
        views.invitation_action,
        {"action": "revoke"},
        name="invitation_revoke",
    ),
    path("users/<int:membership_id>/role/", views.member_action, {"action": "role"}, name="member_role"),
    path("users/<int:membership_id>/remove/", views.member_action, {"action": "remove"}, name="member_remove"),
    path("audit/", views.audit_log, name="audit"),
    path("invite/<str:token>/", views.invitation_accept, name="accept"),
    path("verify-email/", views.email_verification_send, name="email_verification_send"),
    path("verify-email/<str:token>/", views.email_verify, name="email_verify"),
]
