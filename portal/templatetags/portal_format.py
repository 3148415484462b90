"""Figures as the portal shows them, formatted for the active language ("1.234,5 kW" in German)."""

from __future__ import annotations

from django import template
from django.utils.formats import number_format

register = template.Library()


@register.filter
def power(kw: float | None, digits: int = 1) -> str:
    """kW with `digits` decimals; below 1 kW in whole W, so a household at 45 W does not read 0.0 kW."""
    if kw is None:
        return "–"
    if abs(kw) < 1:
        return f"{number_format(kw * 1000, 0, use_l10n=True)} W"
    return f"{number_format(kw, digits, use_l10n=True, force_grouping=True)} kW"


@register.filter
def figure(value: float | None, digits: int = 1) -> str:
    """A number with grouping and `digits` decimals, or a dash when there is none."""
    if value is None:
        return "–"
    return number_format(value, digits, use_l10n=True, force_grouping=True)


@register.filter
def unit(value: str) -> str:
    """A unit as shown beside a figure; a unitless quantity ("1") shows none."""
    return "" if value == "1" else value
