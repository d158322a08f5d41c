"""Waiting: the one polling loop of the suite, and the wait for a clock past a sync stamp."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from devcluster.kube import Kube
from tests.support.helm import synced_at
from tests.support.repo import PROD_RELEASE

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll until `check()` is truthy and return that value; fail after `timeout` seconds, saying what was awaited.

    `check` runs once more at the deadline, so a slow last poll still counts.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def wait_past_sync_second(kube: Kube, namespace: str, release: str = PROD_RELEASE) -> None:
    """Sleep until the wall clock is in a later whole second than the sync stamp.

    Pods' creationTimestamp has one-second resolution while the stamp has microseconds, so a pod
    recreated in the very second of the stamp reads as older than the sync (see the report on
    runtime_notes); waiting makes the scenario unambiguous.
    """
    boundary = synced_at(kube, namespace, release).replace(microsecond=0) + timedelta(seconds=1)
    delay = (boundary - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay + 0.05)
