from __future__ import annotations

from typing import Any

import django_filters
from auditlog.context import auditlog_value, set_actor
from django import forms
from django.db import connection
from django.db.models import Model, QuerySet
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.metadata import SimpleMetadata
from rest_framework.request import Request

from accounts.access import Access
from integrations.api.pagination import MAX_ID
from integrations.api.permissions import request_access

__all__ = ["MAX_ID", "IdFilter", "TenantApiView", "filter_json_tag"]


class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class ApiMetadata(SimpleMetadata):
    """OPTIONS for every /api/v1/ view. A singleton resource (a setting, "me") has no queryset: DRF would
    look up an object to check PUT permission on and fail with a server error, so it gets no actions."""

    def determine_actions(self, request: Request, view: Any) -> dict[str, Any]:
        kind = type(view)
        no_object = (
            kind.get_queryset is generics.GenericAPIView.get_queryset and kind.get_object is TenantApiView.get_object
        )
        if getattr(view, "queryset", None) is None and no_object:
            return {}
        return dict(super().determine_actions(request, view))


class TenantApiView(generics.GenericAPIView):  # type: ignore[type-arg]
    """Base of every /api/v1/ view: `self.access` comes from the bearer token, never from input."""

    metadata_class = ApiMetadata
    read_scope: str = ""
    write_scope: str | None = None
    model: type[Model] | None = None

    @property
    def access(self) -> Access:
        return request_access(self.request)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # DRF authenticates inside the view, after auditlog's middleware named the (anonymous) session user,
        # so the token's user is named here for the audit log's entries of this request.
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            self._audit_outer = auditlog_value.get(None)
            self._audit_actor = set_actor(user, remote_addr=request.META.get("REMOTE_ADDR"))
            self._audit_actor.__enter__()

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        actor = getattr(self, "_audit_actor", None)
        if actor is not None:
            self._audit_actor = None
            actor.__exit__(None, None, None)
            # auditlog keeps its state in one context variable: give the middleware's back, or its receiver
            # would never be disconnected.
            if self._audit_outer is not None:
                auditlog_value.set(self._audit_outer)
        return super().finalize_response(request, response, *args, **kwargs)

    @property
    def is_schema_generation(self) -> bool:
        return bool(getattr(self, "swagger_fake_view", False))

    def empty(self) -> QuerySet[Any]:
        assert self.model is not None
        return self.model._default_manager.none()

    def get_object(self) -> Any:
        pk = self.kwargs.get("pk")
        if pk is not None and not 0 < int(pk) <= MAX_ID:
            raise NotFound()
        return super().get_object()

    def parse(self, serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[type-arg]
        serializer = serializer_class(data=data, context={"access": self.access, "view": self}, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def require(self, allowed: bool, message: str) -> None:
        if not allowed:
            raise PermissionDenied(message)


def filter_json_tag(qs: QuerySet[Any], *, field: str, tag: str) -> QuerySet[Any]:
    """Rows whose JSON list `field` holds `tag`. SQLite has no JSON containment, so it filters ids."""
    if connection.features.supports_json_field_contains:
        return qs.filter(**{f"{field}__contains": [tag]})
    ids = [pk for pk, tags in qs.values_list("pk", field) if isinstance(tags, list) and tag in tags]
    return qs.filter(pk__in=ids)
