"""Results of apply, rollback, history, status and watch: frozen data, serialised by views."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from promote.plan import SCHEMA_VERSION, Action, ResourceChange


class HealthStatus(StrEnum):
    """Closed set of health states, worst last for aggregation."""

    HEALTHY = "Healthy"
    SUSPENDED = "Suspended"
    PROGRESSING = "Progressing"
    MISSING = "Missing"
    DEGRADED = "Degraded"

    @property
    def rank(self) -> int:
        """Severity, for picking the worst of several."""
        return list(HealthStatus).index(self)


def _health_value(health: HealthStatus | None) -> str:
    """A health in JSON: its value, or "" when there is none (as the schemas have it)."""
    return health.value if health is not None else ""


class Outcome(StrEnum):
    """How a release (synced | unchanged | failed | rolled-back | skipped) or an environment ended.

    An environment also ends blocked (by its gate) or not-reached (an earlier one stopped the chain).
    """

    SYNCED = "synced"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    SKIPPED = "skipped"
    BLOCKED = "blocked"
    NOT_REACHED = "not-reached"


class GateResult(StrEnum):
    """Verdict of one gate check."""

    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class GateCheck:
    """One check with its reason."""

    name: str
    result: GateResult
    reason: str
    app: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """JSON form."""
        return {"name": self.name, "app": self.app, "result": self.result.value, "reason": self.reason}

    @staticmethod
    def reasons(checks: list[GateCheck]) -> str:
        """Failed checks as one clause each, for an error message."""
        return "; ".join(f"{c.app + ': ' if c.app else ''}{c.reason}" for c in checks)


class SyncStatus(StrEnum):
    """Whether live matches Git for a release."""

    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    MISSING = "Missing"


@dataclass(frozen=True, kw_only=True)
class Event:
    """One row of apply's progress (views.progress lays it out): when, which environment and object,
    its status, health, hook phase and message.

    `status` is free text (a pod phase, a helm release status, "Waiting"); `health` is None for an event
    about something that has no health, such as the environment's lock.
    """

    at: datetime
    env: str
    kind: str
    namespace: str
    name: str
    status: str
    health: HealthStatus | None = None
    hook: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, str]:
        """JSON form."""
        return {
            "time": self.at.isoformat(),
            "env": self.env,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "status": self.status,
            "health": _health_value(self.health),
            "hook": self.hook,
            "message": self.message,
        }


@dataclass(frozen=True, kw_only=True)
class ReleaseResult:
    """What happened to one release."""

    app: str
    release: str
    namespace: str
    outcome: Outcome  # synced | unchanged | failed | rolled-back | skipped
    revision: int | None = None
    health: HealthStatus | None = None
    message: str = ""
    changes: tuple[ResourceChange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "app": self.app,
            "release": self.release,
            "namespace": self.namespace,
            "outcome": self.outcome.value,
            "revision": self.revision,
            "health": _health_value(self.health),
            "message": self.message,
            "changes": [c.to_dict() for c in self.changes],
        }


@dataclass(frozen=True, kw_only=True)
class EnvResult:
    """One environment of the chain."""

    name: str
    context: str | None
    outcome: Outcome  # synced | unchanged | blocked | failed | not-reached | rolled-back
    synced_to: str = ""
    health: HealthStatus | None = None
    duration: float = 0.0
    releases: tuple[ReleaseResult, ...] = ()
    gate: tuple[GateCheck, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "context": self.context,
            "outcome": self.outcome.value,
            "syncedTo": self.synced_to,
            "health": _health_value(self.health),
            "durationSeconds": round(self.duration, 3),
            "releases": [r.to_dict() for r in self.releases],
            "gate": [g.to_dict() for g in self.gate],
        }


@dataclass(frozen=True, kw_only=True)
class ApplyResult:
    """The whole apply (or rollback): per environment, the events seen, and how it ended."""

    target: str
    revision: str
    environments: tuple[EnvResult, ...] = ()
    not_reached: tuple[str, ...] = ()  # the chain's environments after the one that stopped it
    events: tuple[Event, ...] = ()
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The published JSON form (schemas/apply-result.schema.json)."""
        return {
            "schemaVersion": SCHEMA_VERSION,
            "target": self.target,
            "revision": self.revision,
            "environments": [e.to_dict() for e in self.environments],
            "notReached": list(self.not_reached),
            "events": [e.to_dict() for e in self.events],
            "error": self.error,
            "exitCode": self.exit_code,
        }


@dataclass(frozen=True, kw_only=True)
class HistoryEntry:
    """One helm revision of a release, with the promotion record if promote made it."""

    app: str
    release: str
    revision: int
    status: str
    chart: str
    updated: str
    git_revision: str | None = None
    artifact: str | None = None
    values: str | None = None
    by: str | None = None
    action: str | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form, camelCase like every other document."""
        return {
            "app": self.app,
            "release": self.release,
            "revision": self.revision,
            "status": self.status,
            "chart": self.chart,
            "updated": self.updated,
            "gitRevision": self.git_revision,
            "artifact": self.artifact,
            "values": self.values,
            "by": self.by,
            "action": self.action,
            "description": self.description,
        }


@dataclass(frozen=True, kw_only=True)
class ReleaseStatus:
    """Sync and health of one release, and the three ways it can depart from Git, kept apart.

    drift: live departs from the last promoted state (a manual change; reverted by self-heal).
    pending: Git departs from the last promoted state (a promotion not done yet; `pending_reason` says
    what holds it). runtime: pods restarted, recreated or unready (observed only; Kubernetes heals it).
    """

    env: str
    app: str
    release: str
    namespace: str
    sync: SyncStatus
    health: HealthStatus
    health_message: str
    revision: str | None
    promoted_revision: str | None
    helm_revision: int | None
    drift: tuple[ResourceChange, ...] = field(default=())
    pending: tuple[ResourceChange, ...] = field(default=())
    pending_reason: str = ""
    helm_status: str | None = None
    runtime: tuple[str, ...] = field(default=())
    errors: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "env": self.env,
            "app": self.app,
            "release": self.release,
            "namespace": self.namespace,
            "sync": self.sync.value,
            "health": self.health.value,
            "healthMessage": self.health_message,
            "revision": self.revision,
            "promotedRevision": self.promoted_revision,
            "helmRevision": self.helm_revision,
            "helmStatus": self.helm_status,
            "drift": [c.to_dict() for c in self.drift],
            "pending": [c.to_dict() for c in self.pending],
            "pendingReason": self.pending_reason,
            "runtime": list(self.runtime),
            "errors": list(self.errors),
        }


@dataclass(frozen=True, kw_only=True)
class ResourceDiff:
    """Git versus live for one drifted resource, as YAML texts with Secret values masked."""

    env: str
    app: str
    kind: str
    namespace: str | None
    name: str
    action: str
    git: str
    live: str


class WatchEventKind(StrEnum):
    """What one watch event reports: a check's error, a runtime note, a drift, Git content pending
    promotion (with what holds it), a revert, a failed self-heal."""

    ERROR = "error"
    RUNTIME = "runtime"
    DRIFT = "drift"
    PENDING = "pending"
    REVERTED = "reverted"
    HEAL_FAILED = "heal-failed"


@dataclass(frozen=True, kw_only=True)
class WatchEvent:
    """One thing `watch` saw or did, as data: views turn it into a log line, a JSON line or a YAML document.

    A drift is one event per drifted field (`path`, with the value Git declares and the live one), or one
    per resource missing live or no longer in Git (`path` None). A revert names the resource and the field
    paths the apply reset. `app` is None only for a failed self-heal, which is about the whole environment.
    A sensitive field's values (Secret data) are never held here, not even masked: only the path.
    """

    event: WatchEventKind
    at: datetime
    env: str
    app: str | None = None
    action: Action | None = None  # drift: what apply would do to the resource; reverted: what it did
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    path: str | None = None
    git: Any = None
    live: Any = None
    sensitive: bool = False
    paths: tuple[str, ...] = ()
    message: str = ""

    def __post_init__(self) -> None:
        # Refuse rather than mask: an event with a Secret value in it must not exist to be printed.
        if self.sensitive and (self.git is not None or self.live is not None):
            raise ValueError(f"a watch event for the sensitive field {self.path} cannot hold its values")

    def to_dict(self) -> dict[str, Any]:
        """The published JSON form (schemas/watch-event.schema.json): one document per event."""
        return {
            "schemaVersion": SCHEMA_VERSION,
            "time": self.at.isoformat(),
            "event": self.event.value,
            "env": self.env,
            "app": self.app,
            "action": self.action.value if self.action is not None else None,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "path": self.path,
            "git": self.git,
            "live": self.live,
            "sensitive": self.sensitive,
            "paths": list(self.paths),
            "message": self.message,
        }


@dataclass(frozen=True, kw_only=True)
class WatchCheck:
    """One check of `watch`, whole: the apps it looked at, every event it gave (what self-heal did
    included), and when the next check starts (None after the last). The human log compares checks."""

    at: datetime
    env: str
    apps: tuple[str, ...]
    events: tuple[WatchEvent, ...] = ()
    next_at: datetime | None = None
