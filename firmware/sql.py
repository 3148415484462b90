"""Small SQL helpers for the gateway's rounds of firmware work, where Django's query building was the cost.

A round covers up to a thousand transfers or every device connected to a gateway. `pk__in=[...]` with a
thousand ids prepares and renders a thousand parameters, and `bulk_update` builds a `CASE WHEN` per row
and per field: in bench/rollout.py's profile those two were over half of the gateway process's samples,
on the firmware thread, which holds the GIL the event loop needs to serve acks. On PostgreSQL the same
statements take the ids as one array; other databases (the embedded SQLite) keep Django's own SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Lookup


class IdIn(Lookup):  # type: ignore[type-arg]
    """`column = ANY(%s::bigint[])`: an id column against one array parameter, whatever its length.

    Used as an expression, `queryset.filter(IdIn(F("device_id"), ids))`; the ids must be integers.
    """

    lookup_name = "id_in"
    prepare_rhs = False  # the list is one parameter, not a value of the column's type

    def __init__(self, lhs: Any, rhs: Iterable[int]) -> None:
        super().__init__(lhs, [int(i) for i in rhs])

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        if not self.rhs:
            return "FALSE", []
        return f"{lhs} = ANY(%s::bigint[])", [*lhs_params, list(self.rhs)]

    def as_sqlite(self, compiler: Any, connection: Any) -> Any:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        if not self.rhs:
            return "0", []
        return f"{lhs} IN ({', '.join(['%s'] * len(self.rhs))})", [*lhs_params, *self.rhs]
