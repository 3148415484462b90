"""`manage.py deadletters list|replay`: the ingest messages a worker could never store.

    manage.py deadletters list [--json] [--limit N]
    manage.py deadletters replay [--id TASK_ID ...]

`list` leaves every message in the dead-letter queue. `replay` moves them (all, or the given ids)
back into the `readings` queue, for instance after deploying a worker that understands a new
message version; one that still cannot be stored comes back as a dead letter.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from readings import deadletters


class Command(BaseCommand):
    help = "List or replay the ingest messages in the dead-letter queue (RabbitMQ)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "replay"])
        parser.add_argument("--limit", type=int, default=100, help="At most this many messages (list).")
        parser.add_argument("--id", action="append", dest="ids", help="Only this task id (replay; repeatable).")
        parser.add_argument("--json", action="store_true", help="Print the list as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "replay":
                replayed = deadletters.deadletters_replay(task_ids=options["ids"])
                self.stdout.write(f"replayed {replayed} dead letter(s) into the readings queue")
                return
            letters = deadletters.deadletters_list(limit=options["limit"])
        except deadletters.DeadLettersUnavailable as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(deadletters.deadletters_to_json(letters))
            return
        self.stdout.write(f"{len(letters)} dead letter(s)")
        for letter in letters:
            self.stdout.write(
                f"{letter.task_id}  {letter.task}  reason={letter.reason}  deaths={letter.deaths}  {letter.size} bytes"
            )
