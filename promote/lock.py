"""One apply per environment at a time: a Kubernetes Lease with a TTL renewed while working.

Unlike helm's `pending-upgrade` state, a Lease left by a crashed apply expires by itself once its holder
stops renewing it, so no one has to clean up by hand.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from promote.cluster import ApiError, Cluster
from promote.errors import LockError

LEASE_API = "coordination.k8s.io/v1"
# Clock difference between hosts up to which a lease's own timestamps are not trusted to say it expired.
MAX_CLOCK_SKEW = 120.0
# On the Lease: the release its holder syncs. A crashed holder's leftovers are then known per release.
SUBJECT_ANNOTATION = "promote.dev/release"


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.strptime(ts.replace("Z", ""), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


def holder_of(lease: dict[str, Any] | None, now: datetime) -> str | None:
    """Who holds an unexpired lease, or None."""
    if not lease:
        return None
    spec = lease.get("spec", {})
    holder = spec.get("holderIdentity")
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    ttl = int(spec.get("leaseDurationSeconds") or 0)
    if not holder or renewed is None or renewed + timedelta(seconds=ttl) < now:
        return None
    return str(holder)


class EnvLock:
    """The Lease `promote-<env>` in the environment's namespace."""

    def __init__(
        self, cluster: Cluster, namespace: str, env: str, identity: str, ttl: float = 30.0, subject: str = ""
    ) -> None:
        self.cluster, self.namespace, self.env = cluster, namespace, env
        self.name = f"promote-{env}"
        self.identity, self.ttl = identity, ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.waited = 0.0  # seconds spent waiting for another holder
        # The holder of an expired lease we took: an apply that crashed, since a finished one deletes it.
        self.took_over: str | None = None
        self.subject = subject
        self.took_over_subject: str | None = None  # what the crashed holder was syncing (None: not said)
        self._observed: str | None = None  # the other holder's lease version last seen, and when (monotonic)
        self._observed_at = 0.0
        self._renewed_at = 0.0  # when our last renewal went through (monotonic)
        self.lost: str | None = None  # why we no longer hold the lease, once that is known

    def current_holder(self) -> str | None:
        """The holder of the lock right now, if any (read-only, for `promote gate`)."""
        lease = self.cluster.get(LEASE_API, "Lease", self.namespace, self.name)
        return holder_of(lease, datetime.now(UTC))

    def _live_holder(self, lease: dict[str, Any] | None, now: datetime) -> str | None:
        """Who holds the lease, judged as client-go's leader election does: a lease is live until it has
        gone unchanged for its duration on *our* clock, so a host whose clock runs ahead does not take
        a live lease. Only a lease whose own timestamps are stale by more than MAX_CLOCK_SKEW besides
        (a crash long ago) is taken at once."""
        spec = (lease or {}).get("spec", {})
        holder = spec.get("holderIdentity")
        if not holder or holder == self.identity:
            return None
        ttl = float(spec.get("leaseDurationSeconds") or 0)
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        if renewed is None or renewed + timedelta(seconds=ttl + MAX_CLOCK_SKEW) < now:
            return None
        version = str((lease or {}).get("metadata", {}).get("resourceVersion", ""))
        seen = time.monotonic()
        if self._observed != version:
            self._observed, self._observed_at = version, seen
            return str(holder)
        return None if seen - self._observed_at >= ttl else str(holder)

    def _try(self) -> str | None:
        now = datetime.now(UTC)
        lease = self.cluster.get(LEASE_API, "Lease", self.namespace, self.name)
        holder = self._live_holder(lease, now)
        if holder:
            return holder
        previous = (lease or {}).get("spec", {}).get("holderIdentity")
        body: dict[str, Any] = {
            "apiVersion": LEASE_API,
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "annotations": {SUBJECT_ANNOTATION: self.subject} if self.subject else {},
            },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": math.ceil(self.ttl),
                "acquireTime": _ts(now),
                "renewTime": _ts(now),
            },
        }
        try:
            if lease is None:
                self.cluster.create(body, self.namespace)
            else:
                # Optimistic concurrency: the resourceVersion makes a racing taker lose with 409.
                body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
                self.cluster.request(
                    "PUT",
                    self.cluster.resource(LEASE_API, "Lease").path(self.namespace, self.name),
                    body=body,
                    what=f"take the lock of environment {self.env}",
                )
        except ApiError as e:
            if e.status in (409, 422):
                return "another apply (it just took the lock)"
            raise
        if previous and previous != self.identity:
            self.took_over = str(previous)
            annotations = (lease or {}).get("metadata", {}).get("annotations") or {}
            self.took_over_subject = annotations.get(SUBJECT_ANNOTATION)
        return None

    def crashed_on(self, subject: str) -> str | None:
        """The holder of a crashed apply whose lock we took, if it was changing `subject` (one of the
        comma-separated releases its Lease named), or did not say what."""
        if self.took_over and (not self.took_over_subject or subject in self.took_over_subject.split(",")):
            return self.took_over
        return None

    def acquire(self, timeout: float, on_wait: Any = None) -> None:
        """Take the lock, waiting up to `timeout` seconds for another holder to finish."""
        start = time.monotonic()
        announced = False
        while True:
            holder = self._try()
            if holder is None:
                break
            if time.monotonic() - start >= timeout:
                raise LockError(
                    f"environment {self.env} is locked by {holder} (Lease {self.namespace}/{self.name}); "
                    f"gave up after {timeout:.0f}s (--lock-timeout)"
                )
            if not announced and on_wait:
                on_wait(holder)
            announced = True
            time.sleep(1.0)
        # Zero when the lock was free at once: the caller's plan is then still current.
        self.waited = (time.monotonic() - start) if announced else 0.0
        self._renewed_at = time.monotonic()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.env}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                lease = self.cluster.get(LEASE_API, "Lease", self.namespace, self.name)
                if not lease or lease.get("spec", {}).get("holderIdentity") != self.identity:
                    holder = (lease or {}).get("spec", {}).get("holderIdentity")
                    self.lost = f"the lease was taken by {holder}" if holder else "the lease was deleted"
                    return
                lease["spec"]["renewTime"] = _ts(datetime.now(UTC))
                self.cluster.request(
                    "PUT",
                    self.cluster.resource(LEASE_API, "Lease").path(self.namespace, self.name),
                    body=lease,
                    what=f"renew the lock of environment {self.env}",
                )
                self._renewed_at = time.monotonic()
            except Exception:  # a missed renewal is retried every ttl/3; ensure_held says when it is too late
                if time.monotonic() - self._renewed_at >= self.ttl:
                    self.lost = f"it could not be renewed for {self.ttl:.0f}s"

    def ensure_held(self) -> None:
        """Before each change: stop if the lease was lost (taken, deleted, or not renewed within its
        duration), since another apply may now be working on the same environment."""
        # Two thirds of the duration: another host may take the lease once it has seen it unchanged for
        # the whole duration, and our last renewal may have landed later than we noted.
        if self.lost is None and self._thread is not None and time.monotonic() - self._renewed_at >= self.ttl * 2 / 3:
            self.lost = f"it was not renewed for {self.ttl:.0f}s"
        if self.lost is not None:
            raise LockError(
                f"lost the lock of environment {self.env} ({self.lost}); stopped before changing anything more"
            )

    def release(self) -> None:
        """Stop renewing and give the lock up."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            lease = self.cluster.get(LEASE_API, "Lease", self.namespace, self.name)
            if lease and lease.get("spec", {}).get("holderIdentity") == self.identity:
                self.cluster.delete(LEASE_API, "Lease", self.namespace, self.name)
        except Exception:  # the lease expires by itself anyway
            pass
