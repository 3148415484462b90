"""Epoch milliseconds → ISO 8601 strings with the local offset, for whole arrays at once.

A 30-day 15-minute series has 5,760 interval bounds; formatting them one `datetime` at a time cost
more than the query itself. Offsets only change at DST transitions, so they are looked up once per
UTC day and element by element only on the rare days with a transition.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

DAY_MS = 86_400_000


def _offset_s(ms: int, tz: dt.tzinfo) -> int:
    offset = dt.datetime.fromtimestamp(ms / 1000, tz=tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _suffix(offset_s: int) -> str:
    sign = "+" if offset_s >= 0 else "-"
    hours, rest = divmod(abs(offset_s), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")


def iso_strings(ms: npt.NDArray[np.int64] | list[int], tz: ZoneInfo | dt.tzinfo) -> list[str]:
    """The same strings as `datetime.isoformat()` in `tz` (seconds, or milliseconds when there are any)."""
    stamps = np.asarray(ms, dtype=np.int64)
    if not len(stamps):
        return []
    days = stamps // DAY_MS
    offsets = np.empty(len(stamps), dtype=np.int64)
    for day in np.unique(days).tolist():
        in_day = days == day
        first, last = _offset_s(day * DAY_MS, tz), _offset_s((day + 1) * DAY_MS - 1, tz)
        if first == last:
            offsets[in_day] = first
        else:  # a transition day: exact, element by element
            offsets[in_day] = [_offset_s(int(m), tz) for m in stamps[in_day].tolist()]
    local = (stamps + offsets * 1000).astype("datetime64[ms]")
    whole = np.datetime_as_string(local, unit="s")
    if np.any(stamps % 1000):
        fine = np.datetime_as_string(local, unit="ms")
        whole = np.where(stamps % 1000 != 0, fine, whole)
    suffixes = {int(o): _suffix(int(o)) for o in np.unique(offsets).tolist()}
    return [text + suffixes[o] for text, o in zip(whole.tolist(), offsets.tolist(), strict=True)]
