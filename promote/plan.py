"""A plan is data: what an apply would do to the live cluster, per environment, release and resource.

Plans are frozen and serialisable so that views, saved plans and pipelines all read the same thing.
Nothing here talks to helm or Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1


class Action(StrEnum):
    """What apply does to one resource."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    UNCHANGED = "unchanged"


class ApplyMethod(StrEnum):
    """How helm writes a release's objects: Helm 3, and Helm 4 for releases Helm 3 installed, patch
    client-side (a three-way merge); Helm 4 applies server-side, with field ownership."""

    CLIENT_SIDE = "client-side"
    SERVER_SIDE = "server-side"


class ConflictPolicy(StrEnum):
    """What apply does with a field another field manager owns (server-side apply only)."""

    TAKE = "take"  # helm takes the field over (--force-conflicts): Git wins, the hand edit is reverted
    STOP = "stop"  # apply refuses before helm runs, naming the fields and their managers


@dataclass(frozen=True)
class Conflict:
    """A field the upgrade would change that another field manager owns."""

    field: str
    manager: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"field": self.field, "manager": self.manager}


class HookPhase(StrEnum):
    """When a helm hook runs relative to the sync, in Argo CD's words."""

    PRE_SYNC = "PreSync"
    POST_SYNC = "PostSync"

    @staticmethod
    def from_helm(annotation: str, *, upgrade: bool) -> HookPhase | None:
        """The phase a helm hook annotation fires in, for an install or an upgrade; None if it doesn't fire."""
        events = {e.strip() for e in annotation.split(",")}
        verb = "upgrade" if upgrade else "install"
        if f"pre-{verb}" in events:
            return HookPhase.PRE_SYNC
        if f"post-{verb}" in events:
            return HookPhase.POST_SYNC
        return None


@dataclass(frozen=True)
class FieldChange:
    """One field: its path, the live value and the value apply sets (None when absent)."""

    path: str
    before: Any
    after: Any
    sensitive: bool = False
    # The raw path (keys, and (merge key, value) pairs for keyed list items), for matching managedFields.
    segments: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with `from`/`to` as users read them."""
        d: dict[str, Any] = {"path": self.path, "from": self.before, "to": self.after}
        if self.sensitive:
            d["sensitive"] = True
        return d


@dataclass(frozen=True)
class ResourceChange:
    """One resource and what happens to it."""

    action: Action
    api_version: str
    kind: str
    namespace: str | None
    name: str
    hook: HookPhase | None = None
    fields: tuple[FieldChange, ...] = ()
    resource_version: str | None = None  # live resourceVersion the change was computed against
    note: str | None = None  # why apply leaves it as it is although Git differs
    conflicts: tuple[Conflict, ...] = ()  # server-side apply: fields another manager owns

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identity across plans and live reads."""
        return (self.api_version, self.kind, self.namespace or "", self.name)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "action": self.action.value,
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "hook": self.hook.value if self.hook else None,
            "fields": [f.to_dict() for f in self.fields],
            "resourceVersion": self.resource_version,
            **({"note": self.note} if self.note else {}),
            **({"conflicts": [c.to_dict() for c in self.conflicts]} if self.conflicts else {}),
        }


@dataclass(frozen=True)
class ReleasePlan:
    """One app's release in one environment."""

    app: str
    release: str
    namespace: str
    context: str | None
    chart: str
    chart_version: str | None = None
    chart_digest: str | None = None  # of a fetched chart: what was pulled (package or OCI manifest)
    artifact_digest: str | None = None
    values_digest: str | None = None
    manifest_digest: str | None = None
    current_revision: int | None = None
    current_status: str | None = None
    current_chart_version: str | None = None  # the chart version the current revision runs
    apply_method: ApplyMethod | None = None  # how the upgrade will apply (None: no cluster reached)
    errors: tuple[str, ...] = ()
    changes: tuple[ResourceChange, ...] = ()
    # promote made the current revision but never saw it healthy: its apply died while waiting.
    current_unverified: bool = False
    after: tuple[str, ...] = ()  # apps of this environment apply syncs first (dependsOn)

    @property
    def has_changes(self) -> bool:
        """True when apply would touch this release (any non-hook resource, or it isn't deployed)."""
        if self.errors:
            return False
        if self.current_status not in (None, "deployed"):
            return True
        return any(c.action != Action.UNCHANGED for c in self.changes if c.hook is None)

    @property
    def needs_apply(self) -> bool:
        """True when apply has work here: changes, or a current revision to check for health first."""
        return self.has_changes or (self.current_unverified and not self.errors)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "app": self.app,
            "release": self.release,
            "namespace": self.namespace,
            "chart": self.chart,
            "chartVersion": self.chart_version,
            "chartDigest": self.chart_digest,
            "artifactDigest": self.artifact_digest,
            "valuesDigest": self.values_digest,
            "manifestDigest": self.manifest_digest,
            "currentRevision": self.current_revision,
            "currentStatus": self.current_status,
            "currentChartVersion": self.current_chart_version,
            "applyMethod": self.apply_method.value if self.apply_method else None,
            "currentUnverified": self.current_unverified,
            "after": list(self.after),
            "errors": list(self.errors),
            "changes": [c.to_dict() for c in self.changes],
        }


@dataclass(frozen=True)
class EnvironmentPlan:
    """Every release of one environment of the chain."""

    name: str
    namespace: str
    context: str | None
    releases: tuple[ReleasePlan, ...] = ()

    @property
    def has_changes(self) -> bool:
        """True when apply has work in the environment (see ReleasePlan.needs_apply)."""
        return any(r.needs_apply for r in self.releases)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "context": self.context,
            "releases": [r.to_dict() for r in self.releases],
        }


@dataclass(frozen=True)
class Summary:
    """Counts over non-hook resources, terraform-style."""

    create: int = 0
    update: int = 0
    delete: int = 0
    unchanged: int = 0

    @property
    def changes(self) -> int:
        """Resources apply would touch."""
        return self.create + self.update + self.delete


@dataclass(frozen=True)
class Plan:
    """The whole plan for `promote plan TARGET`."""

    target: str
    revision: str
    environments: tuple[EnvironmentPlan, ...] = ()
    errors: tuple[str, ...] = field(default=())
    # Names the key of the manifest digests (fingerprint.key_id), so a saved plan's apply knows whether
    # it can check them.
    digest_key: str = ""
    helm_major: int | None = None  # the helm the plan predicts: a saved plan applies only with the same

    @property
    def summary(self) -> Summary:
        """Counts of resource actions, hooks excluded: they are transient."""
        counts = dict.fromkeys(Action, 0)
        for env in self.environments:
            for rel in env.releases:
                for c in rel.changes:
                    if c.hook is None:
                        counts[c.action] += 1
        return Summary(
            create=counts[Action.CREATE],
            update=counts[Action.UPDATE],
            delete=counts[Action.DELETE],
            unchanged=counts[Action.UNCHANGED],
        )

    @property
    def all_errors(self) -> list[str]:
        """Plan-level and release-level errors together."""
        out = list(self.errors)
        for env in self.environments:
            for rel in env.releases:
                out.extend(f"{env.name}/{rel.app}: {e}" for e in rel.errors)
        return out

    @property
    def has_changes(self) -> bool:
        """True when apply would change anything."""
        return any(e.has_changes for e in self.environments)

    def to_dict(self) -> dict[str, Any]:
        """The published JSON form (schemas/plan.schema.json)."""
        s = self.summary
        return {
            "schemaVersion": SCHEMA_VERSION,
            "target": self.target,
            "revision": self.revision,
            "digestKey": self.digest_key,
            "helmMajor": self.helm_major,
            "environments": [e.to_dict() for e in self.environments],
            "errors": list(self.errors),
            "summary": {"create": s.create, "update": s.update, "delete": s.delete, "unchanged": s.unchanged},
        }
