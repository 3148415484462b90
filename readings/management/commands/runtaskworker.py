"""`manage.py runtaskworker`: the Celery worker for ingest and the store's periodic work.

With a broker configured it is a plain worker on the `readings` and `celery` queues (add --beat on
exactly one of them, or run `celery -A energybox beat`). In the embedded mode there is no broker:
ingest runs in-process in the gateway, and this worker runs the periodic tasks (rollups,
compaction, retention) from an embedded beat over kombu's filesystem transport in the data
folder. The tasks are the same code in both modes.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the Celery worker for readings ingest, rollups, compaction and retention."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queues", default="readings,celery", help="Comma-separated queues to consume.")
        parser.add_argument("--concurrency", type=int, default=None, help="Worker processes (default: CPUs).")
        parser.add_argument("--beat", action="store_true", help="Also schedule the periodic tasks (one worker only).")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args: Any, **options: Any) -> None:
        from energybox.celery import app

        argv = ["worker", "-Q", options["queues"], "--loglevel", options["loglevel"], "--without-gossip"]
        if options["concurrency"]:
            argv += ["--concurrency", str(options["concurrency"])]
        beat = options["beat"]
        if settings.CELERY_TASK_ALWAYS_EAGER:
            folder = settings.DATA_DIR / "queue"
            folder.mkdir(parents=True, exist_ok=True)
            app.conf.update(
                broker_url="filesystem://",
                broker_transport_options={
                    "data_folder_in": str(folder),
                    "data_folder_out": str(folder),
                    # kombu's default control folder is ./control, which would land in the working tree.
                    "control_folder": str(folder / "control"),
                    "store_processed": False,
                },
                task_always_eager=False,
                result_backend=None,
            )
            argv += ["--pool", "solo"]
            beat = True
            self.stdout.write(f"embedded mode: periodic store tasks over the filesystem queue in {folder}")
        if beat:
            argv += ["--beat", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")]
        app.worker_main(argv)
