"""Reading a bulk-provisioning CSV as Excel writes it: comma or semicolon, UTF-8 with or without BOM, or
Windows-1252 (German Excel's "CSV (Trennzeichen-getrennt)"). Pure parsing; `device_bulk_provision` validates."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

MAX_ROWS = 10_000
# 10,000 rows of 12 allocations each stay well below this; anything bigger is refused before parsing.
MAX_BYTES = 8 * 1024 * 1024
COLUMNS = ("serial", "type", "facility", "name", "channels")
REQUIRED = ("serial", "type", "facility")


class CsvImportError(ValueError):
    """The file as a whole cannot be read (size, encoding, header, row count)."""


@dataclass(frozen=True, slots=True)
class BulkRow:
    line: int  # the line number in the file, for error messages
    serial: str
    device_type: str
    facility: str
    name: str = ""
    # (channel index or name, load name); an empty load name leaves the channel unallocated
    allocations: tuple[tuple[str, str], ...] = field(default=())


def decode(raw: bytes) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Windows-1252 decodes almost any byte, so it is the fallback, never the first guess.
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise CsvImportError(_("The file is neither UTF-8 nor Windows-1252 text.")) from exc


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (";", ",", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def parse_allocations(text: str) -> tuple[tuple[str, str], ...]:
    """ "0=Freezers|1=Freezers|P L3=Lighting" → (("0", "Freezers"), ...)."""
    pairs = []
    for part in text.split("|"):
        part = part.strip()
        if not part:
            continue
        channel, sep, load = part.partition("=")
        if not sep or not channel.strip():
            raise ValueError(part)
        pairs.append((channel.strip(), load.strip()))
    return tuple(pairs)


def parse(raw: bytes) -> tuple[list[BulkRow], dict[int, list[str]]]:
    """The rows of the file and the errors of rows that cannot even be read, by line number."""
    if len(raw) > MAX_BYTES:
        raise CsvImportError(_("The file is larger than %(mb)d MB.") % {"mb": MAX_BYTES // (1024 * 1024)})
    text = decode(raw)
    first_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration as exc:
        raise CsvImportError(_("The file is empty.")) from exc
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CsvImportError(
            _("The header lacks the column(s) %(missing)s; expected %(columns)s.")
            % {"missing": ", ".join(missing), "columns": ", ".join(COLUMNS)}
        )
    position = {name: header.index(name) for name in COLUMNS if name in header}
    rows: list[BulkRow] = []
    errors: dict[int, list[str]] = {}
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(rows) + len(errors) >= MAX_ROWS:
            raise CsvImportError(_("The file has more than %(max)d rows.") % {"max": MAX_ROWS})

        def cell(name: str, values: list[str] = values) -> str:
            index = position.get(name)
            return values[index].strip() if index is not None and index < len(values) else ""

        try:
            allocations = parse_allocations(cell("channels"))
        except ValueError as exc:
            errors[line] = [_("Channel allocation %(part)r is not channel=load.") % {"part": str(exc)}]
            continue
        rows.append(
            BulkRow(
                line=line,
                serial=cell("serial"),
                device_type=cell("type"),
                facility=cell("facility"),
                name=cell("name"),
                allocations=allocations,
            )
        )
    if not rows and not errors:
        raise CsvImportError(_("The file has a header but no rows."))
    return rows, errors
