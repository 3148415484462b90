"""Storage tables of the readings store. Rows are written by `readings.store`, never one reading at a time.

Channel and tenant are plain integers, not foreign keys: ingest writes tens of thousands of rows a
second with COPY, and a foreign-key check per row would cost more than the write. `tenant_id` is on
every row as the shard key (Citus could distribute the tables by it).
"""

from __future__ import annotations

from django.db import models


class Resolution(models.IntegerChoices):
    M15 = 1, "15m"
    H1 = 2, "1h"
    D1 = 3, "1d"
    MO1 = 4, "1mo"


class Bucket(models.Model):
    """Many readings of one channel, packed and compressed (see `readings/store/codec.py`).

    A bucket never crosses its window (one UTC day). Ingest appends small buckets; compaction
    merges a window's buckets into one.
    """

    id = models.BigAutoField(primary_key=True)
    tenant_id = models.BigIntegerField()
    channel_id = models.BigIntegerField()
    window_ms = models.BigIntegerField(help_text="Start of the UTC day the bucket belongs to, epoch ms.")
    first_ms = models.BigIntegerField()
    last_ms = models.BigIntegerField()
    count = models.IntegerField()
    # False for the plain buckets ingest writes; compaction finds them through a partial index.
    packed = models.BooleanField(default=False)
    data = models.BinaryField()

    class Meta:
        db_table = "readings_bucket"
        constraints = [
            # A redelivered batch produces byte-identical buckets: this key makes their insert a no-op.
            models.UniqueConstraint(
                fields=["channel_id", "window_ms", "first_ms", "last_ms", "count"], name="bucket_unique_span"
            )
        ]
        indexes = [
            models.Index(
                fields=["channel_id", "window_ms"], condition=models.Q(packed=False), name="bucket_to_compact"
            ),
        ]

    def __str__(self) -> str:
        return f"channel {self.channel_id}: {self.count} readings from {self.first_ms}"


class Rollup(models.Model):
    """Aggregates of one channel over one calendar interval in its facility's time zone."""

    id = models.BigAutoField(primary_key=True)
    tenant_id = models.BigIntegerField()
    channel_id = models.BigIntegerField()
    resolution = models.SmallIntegerField(choices=Resolution.choices)
    start_ms = models.BigIntegerField()
    end_ms = models.BigIntegerField()
    count = models.IntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()
    first_ms = models.BigIntegerField()
    first = models.FloatField()
    last_ms = models.BigIntegerField()
    last = models.FloatField()
    # Counters: consumption in the interval (sum of non-negative deltas), resets and gaps seen.
    delta = models.FloatField(default=0.0)
    resets = models.IntegerField(default=0)
    gaps = models.IntegerField(default=0)
    # A bit mask of readings.rollups.Flag: reset, gap, estimated, implausible, glitch.
    flags = models.IntegerField(default=0)

    class Meta:
        db_table = "readings_rollup"
        constraints = [
            models.UniqueConstraint(fields=["channel_id", "resolution", "start_ms"], name="rollup_unique_interval")
        ]
        indexes = [models.Index(fields=["tenant_id", "resolution", "start_ms"], name="rollup_tenant_res_start")]

    def __str__(self) -> str:
        return f"channel {self.channel_id}: {self.get_resolution_display()} from {self.start_ms}"


class RollupPack(models.Model):
    """A read copy of one channel's rollup rows at one resolution over one window, packed column by column.

    `readings_rollup` stays the table rollups are written to; a pack holds the same rows of a settled
    window as one blob, so a year of 15-minute values is a few dozen rows to read instead of 35,040.
    `data` is ROLLUP_FIELDS in order, each as `intervals` little-endian 8-byte values (int64 or
    float64), so a reader fetches only the fields it needs with `substr`. A rollup write marks its
    window's pack `stale` (readers then use the rows) until the packer rebuilds it.
    """

    id = models.BigAutoField(primary_key=True)
    tenant_id = models.BigIntegerField()
    channel_id = models.BigIntegerField()
    resolution = models.SmallIntegerField(choices=Resolution.choices)
    window_ms = models.BigIntegerField()
    window_end_ms = models.BigIntegerField()
    intervals = models.IntegerField(default=0)
    data = models.BinaryField(default=b"")
    stale = models.BooleanField(default=True)
    # Set by the packer so that readers fetch fewer of the blob's bytes (a month's bill read ~260 buffers
    # of packs for three channels, bench/billing.py); NULL in packs built before these columns, which are
    # then read in full. `grid_start_ms`: the first interval's start when the 15-minute intervals follow
    # each other without a hole, so start_ms need not be read and a range reads only its own intervals.
    grid_start_ms = models.BigIntegerField(null=True, blank=True)
    # The OR of the intervals' flags: 0 (the usual case) means the flags need not be read.
    flags_or = models.BigIntegerField(null=True, blank=True)

    class Meta:
        db_table = "readings_rollup_pack"
        constraints = [
            models.UniqueConstraint(fields=["channel_id", "resolution", "window_ms"], name="rollup_pack_unique_window")
        ]
        indexes = [
            models.Index(fields=["window_end_ms"], condition=models.Q(stale=True), name="rollup_pack_stale_end"),
        ]

    def __str__(self) -> str:
        return f"channel {self.channel_id}: {self.get_resolution_display()} pack from {self.window_ms}"


class DirtyInterval(models.Model):
    """A 15-minute interval of a device that received data since its channels' rollups were computed.

    Per device, not per channel: a batch carries all of a device's channels, so this is one mark
    per batch instead of one per channel, which keeps the ingest transaction short.
    """

    id = models.BigAutoField(primary_key=True)
    tenant_id = models.BigIntegerField()
    device_id = models.BigIntegerField()
    start_ms = models.BigIntegerField()

    class Meta:
        db_table = "readings_dirty"
        constraints = [models.UniqueConstraint(fields=["device_id", "start_ms"], name="dirty_unique_device_interval")]

    def __str__(self) -> str:
        return f"device {self.device_id}: interval from {self.start_ms}"


class CounterReset(models.Model):
    """A device reported that its energy counters restarted (protocol EVENT code COUNTER_RESET)."""

    id = models.BigAutoField(primary_key=True)
    tenant_id = models.BigIntegerField()
    device_id = models.BigIntegerField()
    at_ms = models.BigIntegerField(help_text="When the device says its counters restarted, epoch ms.")

    class Meta:
        db_table = "readings_counter_reset"
        constraints = [models.UniqueConstraint(fields=["device_id", "at_ms"], name="counter_reset_unique")]

    def __str__(self) -> str:
        return f"device {self.device_id}: counters reset at {self.at_ms}"


class ConfirmedSpan(models.Model):
    """A user confirmed a channel's readings in [start_ms, end_ms) although they lie outside its plausible range."""

    id = models.BigAutoField(primary_key=True)
    tenant_id = models.BigIntegerField()
    channel_id = models.BigIntegerField()
    start_ms = models.BigIntegerField()
    end_ms = models.BigIntegerField()
    confirmed_by = models.CharField(max_length=150, blank=True)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "readings_confirmed_span"
        indexes = [models.Index(fields=["channel_id", "start_ms"], name="confirmed_channel_start")]

    def __str__(self) -> str:
        return f"channel {self.channel_id}: confirmed from {self.start_ms} to {self.end_ms}"


class WorkerHeartbeat(models.Model):
    """The last time the beat-scheduled heartbeat task ran on a worker: proof that beat and a worker live.

    `/healthz` reads it; one row per name, overwritten every few seconds.
    """

    name = models.CharField(max_length=64, unique=True)
    at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        db_table = "readings_worker_heartbeat"

    def __str__(self) -> str:
        return f"{self.name} at {self.at.isoformat()}"
