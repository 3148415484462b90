from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db import connection
from django.db.models import Model, QuerySet
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound, PermissionDenied

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


class TenantApiView(generics.GenericAPIView):  # type: ignore[type-arg]
    """Base of every /api/v1/ view: `self.access` comes from the bearer token, never from input."""

    read_scope: str = ""
    write_scope: str | None = None
    model: type[Model] | None = None

    @property
    def access(self) -> Access:
        return request_access(self.request)

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
