"""Timestamps in and out of the API: ISO 8601, always with an explicit UTC offset."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

UTC = dt.UTC


def isoformat(value: dt.datetime, tz: dt.tzinfo | ZoneInfo = UTC) -> str:
    local = value.astimezone(tz)
    return local.isoformat(timespec="milliseconds" if local.microsecond else "seconds")


def parse_timestamp(raw: str) -> dt.datetime:
    """Parse an ISO 8601 timestamp that carries its offset ("Z" or "+01:00"); a naive one is refused,
    since guessing its time zone would silently shift the answer."""
    try:
        value = dt.datetime.fromisoformat(raw.strip())
    except (ValueError, AttributeError) as exc:
        raise serializers.ValidationError(
            f"{raw!r} is not an ISO 8601 timestamp such as 2026-11-26T00:00:00+01:00."
        ) from exc
    if value.tzinfo is None or value.utcoffset() is None:
        raise serializers.ValidationError(
            f"{raw!r} has no UTC offset; add one, e.g. {raw}Z or {raw}+01:00.", code="naive_timestamp"
        )
    if not dt.datetime(1970, 1, 1, tzinfo=UTC) <= value <= dt.datetime(2200, 1, 1, tzinfo=UTC):
        raise serializers.ValidationError("Timestamps must lie between 1970 and 2200.", code="out_of_range")
    return value


@extend_schema_field(OpenApiTypes.DATETIME)
class OffsetDateTimeField(serializers.Field):
    """Reads and writes ISO 8601 with an explicit offset; output is in UTC (+00:00)."""

    def to_representation(self, value: dt.datetime) -> str:
        return isoformat(value)

    def to_internal_value(self, data: Any) -> dt.datetime:
        if not isinstance(data, str):
            raise serializers.ValidationError("Give an ISO 8601 timestamp string.")
        return parse_timestamp(data)
