from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from integrations.api.fields import isoformat
from readings.timestamps import iso_strings


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"])
def test_array_formatting_matches_datetime_isoformat_across_dst_changes(zone):
    tz = ZoneInfo(zone)
    rng = np.random.default_rng(3)
    # two years of random instants, some with milliseconds, plus every 15 minutes around each transition
    randoms = rng.integers(1_735_689_600_000, 1_798_761_600_000, 3000)
    randoms[::3] -= randoms[::3] % 1000
    quarter_hours = np.arange(1_735_689_600_000, 1_798_761_600_000, 900_000)
    stamps = np.concatenate([randoms, quarter_hours])
    expected = [isoformat(dt.datetime.fromtimestamp(m / 1000, tz=dt.UTC), tz) for m in stamps.tolist()]
    assert iso_strings(stamps, tz) == expected


def test_an_empty_array_gives_no_strings():
    assert iso_strings(np.empty(0, dtype=np.int64), ZoneInfo("UTC")) == []
