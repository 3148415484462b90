"""Signals the readings store sends for the domains above it, which readings may not import."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that wrote a refresh's 15-minute rollups, with `spans`: a list of
# (channel_id, first interval start ms, last interval end ms). Billing keeps its demand series by it.
rollups_written = Signal()
