"""An ingest worker rebuilds its rule lookup only when the rules or channels changed, not on a timer."""

from __future__ import annotations

import pytest
from django.utils import timezone

from alerts import evaluation, evaluation_cache
from alerts.models import AlertRule
from alerts.tests.factories import cold_room, rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def builds(monkeypatch, settings):
    settings.ALERTS_RULE_CACHE_S = 0  # check the fingerprint on every lookup
    settings.ALERTS_RULE_REBUILD_S = 3600
    calls = []
    real = evaluation.rule_index_build

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(evaluation, "rule_index_build", counting)
    evaluation_cache.invalidate()
    return calls


def test_the_lookup_is_not_rebuilt_while_nothing_changed(builds):
    rule(cold_room())
    evaluation_cache.invalidate()
    first = evaluation.rule_index()
    for _ in range(5):
        assert evaluation.rule_index() is first
    assert len(builds) == 1


def test_a_rule_changed_by_another_process_is_seen_at_the_next_check(builds):
    watched = rule(cold_room())
    evaluation_cache.invalidate()
    before = evaluation.rule_index()
    channel_id = next(iter(before.by_channel))
    assert before.by_channel[channel_id][0].threshold == 5.0
    # What another web process's edit looks like here: no invalidate in this process, only the row.
    AlertRule.objects.filter(pk=watched.pk).update(threshold=8.0, changed_at=timezone.now())
    after = evaluation.rule_index()
    assert after is not before and after.by_channel[channel_id][0].threshold == 8.0
    assert len(builds) == 2


def test_a_new_watched_device_is_seen_at_the_next_check(builds):
    room = cold_room()
    rule(room)
    evaluation_cache.invalidate()
    before = evaluation.rule_index()
    cold_room(facility=room.facility)  # a new device's channels: the channel fingerprint changes
    assert evaluation.rule_index() is not before
    assert len(builds) == 2
