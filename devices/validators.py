from __future__ import annotations

import re
import zoneinfo
from typing import Any

from django.core.exceptions import ValidationError

from devices.quantities import QUANTITY_SPECS, Phase, allowed_units

SERIAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")
TAG_MAX_LENGTH = 64
TAGS_MAX = 32


def validate_timezone(value: str) -> None:
    if not value or value not in zoneinfo.available_timezones():
        raise ValidationError(
            "%(value)r is not an IANA time zone name, such as Europe/Berlin or America/New_York.",
            code="invalid_timezone",
            params={"value": value},
        )


def validate_serial(value: str) -> None:
    if not SERIAL_RE.match(value or ""):
        raise ValidationError(
            "A serial is 3 to 64 letters, digits, '-' or '_', starting with a letter or digit.",
            code="invalid_serial",
        )


def validate_tags(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError("Tags must be a list of strings.", code="invalid_tags")
    if len(value) > TAGS_MAX:
        raise ValidationError(f"At most {TAGS_MAX} tags are allowed.", code="too_many_tags")
    for tag in value:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > TAG_MAX_LENGTH:
            raise ValidationError(
                f"Each tag must be a non-empty string of at most {TAG_MAX_LENGTH} characters; got {tag!r}.",
                code="invalid_tag",
            )


def validate_metadata(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("Metadata must be an object of key/value pairs.", code="invalid_metadata")


def validate_quantity_unit(quantity: str, unit: str) -> dict[str, str]:
    """Errors keyed by field, empty when the pair is valid."""
    if quantity not in QUANTITY_SPECS:
        known = ", ".join(sorted(QUANTITY_SPECS))
        return {"quantity": f"Unknown quantity {quantity!r}. Known quantities: {known}."}
    units = allowed_units(quantity)
    if unit not in units:
        return {"unit": f"Unit {unit!r} is not valid for {quantity}; use one of: {', '.join(units)}."}
    return {}


def validate_channel_template(value: Any) -> None:
    """A device type's channel list: [{name, quantity, unit, phase?, scale?, min?, max?}, ...].

    `min` and `max` are the rated range in the channel's unit; channels copy it as their plausible range.
    """
    if not isinstance(value, list) or not value:
        raise ValidationError("A device type needs a non-empty list of channels.", code="invalid_channels")
    if len(value) > 64:
        raise ValidationError("A device type may have at most 64 channels.", code="too_many_channels")
    for index, spec in enumerate(value):
        if not isinstance(spec, dict):
            raise ValidationError(f"Channel {index} must be an object.", code="invalid_channel")
        errors = validate_quantity_unit(str(spec.get("quantity", "")), str(spec.get("unit", "")))
        if errors:
            raise ValidationError(f"Channel {index}: {' '.join(errors.values())}", code="invalid_channel")
        if spec.get("phase", "") not in Phase.values:
            raise ValidationError(f"Channel {index}: unknown phase {spec.get('phase')!r}.", code="invalid_phase")
        if not str(spec.get("name", "")).strip():
            raise ValidationError(f"Channel {index} needs a name.", code="invalid_channel")
        bounds = [spec.get(key) for key in ("min", "max")]
        for bound in bounds:
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int | float)):
                raise ValidationError(f"Channel {index}: min and max must be numbers.", code="invalid_range")
        if None not in bounds and bounds[0] > bounds[1]:  # type: ignore[operator]
            raise ValidationError(f"Channel {index}: min must not exceed max.", code="invalid_range")


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")


def validate_opening_hours(value: Any) -> None:
    """Opening hours in the facility's local time: {"mon": [["07:00", "21:00"]], ..., "sun": []}.

    Days left out are closed. Each interval is [start, end) with start < end, "24:00" allowed as an end.
    """
    if not isinstance(value, dict):
        raise ValidationError("Opening hours must be an object keyed by weekday (mon … sun).", code="invalid_hours")
    for day, intervals in value.items():
        if day not in WEEKDAYS:
            raise ValidationError(
                "Unknown weekday %(day)r; use mon, tue, wed, thu, fri, sat, sun.",
                code="invalid_hours",
                params={"day": day},
            )
        if not isinstance(intervals, list) or len(intervals) > 4:
            raise ValidationError("Each day holds a list of at most 4 [start, end] intervals.", code="invalid_hours")
        for interval in intervals:
            if (
                not isinstance(interval, list | tuple)
                or len(interval) != 2
                or not all(isinstance(t, str) and _HHMM_RE.match(t) for t in interval)
                or interval[0] >= interval[1]
                or interval[0] == "24:00"
            ):
                raise ValidationError(
                    'Opening interval %(interval)r on %(day)s must be ["HH:MM", "HH:MM"] with start before end.',
                    code="invalid_hours",
                    params={"interval": interval, "day": day},
                )
