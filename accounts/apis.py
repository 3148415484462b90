"""The tenant's people under /api/v1/: read with `users:read`, write with `users:write`, through `accounts.services`."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import selectors, services
from accounts.models import Invitation, Membership, Role
from integrations.api.fields import OffsetDateTimeField
from integrations.api.views import TenantApiView
from integrations.scopes import USERS_READ, USERS_WRITE


class InvitationOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    created_at = OffsetDateTimeField(read_only=True)
    expires_at = OffsetDateTimeField(read_only=True)
    facilities: Any = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "facilities", "created_at", "expires_at"]


class MemberOutput(serializers.ModelSerializer):  # type: ignore[type-arg]
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True)
    facilities: Any = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "role", "facilities"]


class RoleInput(serializers.Serializer):  # type: ignore[type-arg]
    role = serializers.ChoiceField(choices=Role.choices)
    facilities = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, default=list, help_text="For facility managers."
    )


class InvitationInput(RoleInput):
    email = serializers.EmailField()


class PeopleApi(TenantApiView):
    read_scope = USERS_READ
    write_scope = USERS_WRITE

    def accept_url(self, token: str) -> str:
        return self.request.build_absolute_uri(reverse("accounts:accept", args=[token]))


class InvitationListApi(PeopleApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Invitation
    serializer_class = InvitationOutput

    def get_queryset(self) -> QuerySet[Invitation]:
        return self.empty() if self.is_schema_generation else selectors.invitation_list(access=self.access)

    @extend_schema(request=InvitationInput, responses={201: InvitationOutput}, description="Sends the invitation mail.")
    def post(self, request: Request) -> Response:
        data = self.parse(InvitationInput, request.data)
        invitation = services.invitation_create(
            access=self.access,
            email=data["email"],
            role=data["role"],
            facility_ids=data["facilities"],
            accept_url=self.accept_url,
        )
        return Response(InvitationOutput(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailApi(PeopleApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Invitation
    serializer_class = InvitationOutput

    def get_queryset(self) -> QuerySet[Invitation]:
        return self.empty() if self.is_schema_generation else selectors.invitation_list(access=self.access)

    @extend_schema(responses={204: None}, description="Withdraw: the link stops working.")
    def delete(self, request: Request, pk: int) -> Response:
        services.invitation_revoke(access=self.access, invitation=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationResendApi(InvitationDetailApi):
    # An action on the detail view's object: POST only, not the detail's GET, PATCH or DELETE.
    http_method_names = ["post", "options"]

    @extend_schema(request=None, responses={200: InvitationOutput}, description="A new link by mail; the old one ends.")
    def post(self, request: Request, pk: int) -> Response:
        invitation = services.invitation_resend(
            access=self.access, invitation=self.get_object(), accept_url=self.accept_url
        )
        return Response(InvitationOutput(invitation).data)


class MemberListApi(PeopleApi, generics.ListAPIView):  # type: ignore[type-arg]
    model = Membership
    serializer_class = MemberOutput

    def get_queryset(self) -> QuerySet[Membership]:
        return self.empty() if self.is_schema_generation else selectors.member_list(access=self.access)


class MemberDetailApi(PeopleApi, generics.RetrieveAPIView):  # type: ignore[type-arg]
    model = Membership
    serializer_class = MemberOutput

    def get_queryset(self) -> QuerySet[Membership]:
        return self.empty() if self.is_schema_generation else selectors.member_list(access=self.access)

    @extend_schema(request=RoleInput, responses={200: MemberOutput})
    def patch(self, request: Request, pk: int) -> Response:
        membership = self.get_object()
        data = self.parse(RoleInput, request.data)
        services.membership_change_role(
            access=self.access, membership=membership, role=data["role"], facility_ids=data["facilities"]
        )
        return Response(MemberOutput(self.get_object()).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.membership_remove(access=self.access, membership=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
