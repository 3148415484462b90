"""Celery tasks of the firmware app: thin wrappers around one service each."""

from __future__ import annotations

from celery import shared_task

from firmware.services.rollouts import rollout_tick


@shared_task(name="firmware.rollouts_advance", ignore_result=True)
def rollouts_advance() -> int:
    """Beat runs this every few seconds. Safe to run on several workers at once: each rollout is
    advanced under its row lock, and a worker that finds it locked leaves it to the holder."""
    return rollout_tick()
