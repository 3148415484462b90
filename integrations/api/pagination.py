from __future__ import annotations

import binascii
from base64 import b64decode

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

# Ids are 64-bit: a bigger number can name no row, and would overflow the database driver.
MAX_ID = 2**63 - 1
INVALID_CURSOR = "This cursor is not valid; follow the `next` or `previous` link."


class IdCursorPagination(CursorPagination):
    """Opaque cursors over a stable order, so pages never skip or repeat rows while data changes."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    invalid_cursor_message = INVALID_CURSOR

    def decode_cursor(self, request: Request) -> Cursor | None:
        # A cursor is client input: DRF checks its offset but hands its position straight to the
        # queryset, so a forged one ("p=6 OR 1=1") would fail in the database as a 500.
        encoded = request.query_params.get(self.cursor_query_param)
        try:
            if encoded is not None:
                b64decode(encoded.encode("ascii"), validate=True)  # DRF skips stray characters silently
            cursor = super().decode_cursor(request)
        except (NotFound, UnicodeEncodeError, binascii.Error) as exc:
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]}) from exc
        if cursor is None or cursor.position is None:
            return cursor
        position = str(cursor.position)
        if not position.isascii() or not position.isdigit() or not 0 < int(position) <= MAX_ID:
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]})
        return cursor
