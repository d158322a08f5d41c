"""Health of live objects: one small check per kind, picked from a registry by (API group, kind).

As in Argo CD's gitops-engine, a kind without a check is not an error: it is healthy once it exists.
Keyed by group as well as kind, so that a Knative `Service` (serving.knative.dev) does not get the core
Service's check. The same registry says which kinds run pods and which an autoscaler may scale, so no
other module keeps its own list. Each check reads only the object (spec and status), so it is a pure
function tested with fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The vocabulary lives with the results that carry it (the data layer); re-exported as this concern's own.
from promote.results import HealthStatus as HealthStatus


@dataclass(frozen=True)
class Health:
    """A status and the reason a person needs to act on it."""

    status: HealthStatus
    message: str = ""


def worst(items: list[Health]) -> Health:
    """The most severe health of several (Healthy when empty)."""
    return max(items, key=lambda h: h.status.rank, default=Health(HealthStatus.HEALTHY))


def _generation_observed(obj: dict[str, Any]) -> bool:
    return int(obj.get("status", {}).get("observedGeneration", 0)) >= int(obj.get("metadata", {}).get("generation", 0))


def _deployment(obj: dict[str, Any]) -> Health:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    if spec.get("paused"):
        return Health(HealthStatus.SUSPENDED, "deployment is paused")
    want = int(spec.get("replicas", 1))
    for cond in st.get("conditions", []) or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Health(HealthStatus.DEGRADED, f"rollout exceeded its progress deadline: {cond.get('message', '')}")
    if not _generation_observed(obj):
        return Health(HealthStatus.PROGRESSING, "waiting for the controller to observe the new spec")
    updated, avail = int(st.get("updatedReplicas", 0)), int(st.get("availableReplicas", 0))
    total = int(st.get("replicas", 0))
    if updated < want:
        return Health(HealthStatus.PROGRESSING, f"{updated} of {want} replicas updated")
    if total > updated:
        return Health(HealthStatus.PROGRESSING, f"{total - updated} old replicas pending termination")
    if avail < want:
        return Health(HealthStatus.PROGRESSING, f"{avail} of {want} replicas available")
    return Health(HealthStatus.HEALTHY, f"{avail}/{want} available")


def _statefulset(obj: dict[str, Any]) -> Health:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    want = int(spec.get("replicas", 1))
    if not _generation_observed(obj):
        return Health(HealthStatus.PROGRESSING, "waiting for the controller to observe the new spec")
    ready = int(st.get("readyReplicas", 0))
    if ready < want:
        return Health(HealthStatus.PROGRESSING, f"{ready} of {want} replicas ready")
    if st.get("updateRevision") and st.get("currentRevision") != st.get("updateRevision"):
        return Health(HealthStatus.PROGRESSING, "rolling update in progress")
    return Health(HealthStatus.HEALTHY, f"{ready}/{want} ready")


def _daemonset(obj: dict[str, Any]) -> Health:
    st = obj.get("status", {})
    if not _generation_observed(obj):
        return Health(HealthStatus.PROGRESSING, "waiting for the controller to observe the new spec")
    want = int(st.get("desiredNumberScheduled", 0))
    updated, avail = int(st.get("updatedNumberScheduled", 0)), int(st.get("numberAvailable", 0))
    if updated < want or avail < want:
        return Health(HealthStatus.PROGRESSING, f"{avail} of {want} pods available")
    return Health(HealthStatus.HEALTHY, f"{avail}/{want} available")


def _job(obj: dict[str, Any]) -> Health:
    st = obj.get("status", {})
    for cond in st.get("conditions", []) or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Failed":
            return Health(HealthStatus.DEGRADED, f"job failed: {cond.get('message') or cond.get('reason', '')}")
        if cond.get("type") == "Complete":
            return Health(HealthStatus.HEALTHY, "job completed")
    if obj.get("spec", {}).get("suspend"):
        return Health(HealthStatus.SUSPENDED, "job is suspended")
    return Health(
        HealthStatus.PROGRESSING, f"{int(st.get('active', 0))} active, {int(st.get('succeeded', 0))} succeeded"
    )


RESTART_WINDOW = 300.0  # seconds: a container that crashed this recently makes its pod Degraded


def _recent_crash(cs: dict[str, Any], now: datetime) -> bool:
    term = (cs.get("lastState") or {}).get("terminated") or {}
    if not cs.get("restartCount") or not term or term.get("exitCode", 0) == 0:
        return False
    try:
        finished = datetime.fromisoformat(str(term.get("finishedAt", "")).replace("Z", "+00:00"))
    except ValueError:
        return True
    return (now - finished).total_seconds() <= RESTART_WINDOW


def _pod(obj: dict[str, Any]) -> Health:
    st = obj.get("status", {})
    phase = st.get("phase", "Pending")
    statuses = (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or [])
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in (
            "CrashLoopBackOff",
            "CreateContainerConfigError",
            "ErrImagePull",
            "ImagePullBackOff",
            "InvalidImageName",
            "CreateContainerError",
        ):
            return Health(
                HealthStatus.DEGRADED, f"container {cs.get('name')}: {reason} {waiting.get('message', '')}".strip()
            )
    now = datetime.now(UTC)
    for cs in statuses:
        if _recent_crash(cs, now):
            code = cs["lastState"]["terminated"].get("exitCode")
            return Health(
                HealthStatus.DEGRADED,
                f"container {cs.get('name')} keeps crashing: {cs['restartCount']} restarts, last exit code {code}",
            )
    if phase == "Succeeded":
        return Health(HealthStatus.HEALTHY, "completed")
    if phase == "Failed":
        return Health(HealthStatus.DEGRADED, st.get("message") or st.get("reason") or "pod failed")
    restart = obj.get("spec", {}).get("restartPolicy", "Always")
    if phase == "Running" and restart == "Always":
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions", []) or [])
        return Health(HealthStatus.HEALTHY, "running") if ready else Health(HealthStatus.PROGRESSING, "not ready")
    return Health(HealthStatus.PROGRESSING, phase.lower())


def _pvc(obj: dict[str, Any]) -> Health:
    phase = obj.get("status", {}).get("phase")
    if phase == "Bound":
        return Health(HealthStatus.HEALTHY, "bound")
    if phase == "Lost":
        return Health(HealthStatus.DEGRADED, "volume lost")
    return Health(HealthStatus.PROGRESSING, "waiting to be bound")


def _service(obj: dict[str, Any]) -> Health:
    # As helm's --wait and Argo CD: a LoadBalancer is ready once it has an address (or has external IPs).
    spec = obj.get("spec", {})
    if spec.get("type") != "LoadBalancer":
        return Health(HealthStatus.HEALTHY, "exists")
    if spec.get("externalIPs"):
        return Health(HealthStatus.HEALTHY, "external IPs set")
    if (obj.get("status", {}).get("loadBalancer") or {}).get("ingress"):
        return Health(HealthStatus.HEALTHY, "load balancer ready")
    return Health(HealthStatus.PROGRESSING, "waiting for a load balancer address")


@dataclass(frozen=True)
class Kind:
    """What promote knows of one kind."""

    check: Callable[[dict[str, Any]], Health] | None = None
    runs_pods: bool = False  # owns pods whose state is its health (helm's --wait waits for them too)
    long_running: bool = False  # keeps its pods running (not run to completion, as a Job)
    scales: bool = False  # has spec.replicas, which an autoscaler may own


KINDS: dict[tuple[str, str], Kind] = {
    ("apps", "Deployment"): Kind(_deployment, runs_pods=True, long_running=True, scales=True),
    ("apps", "StatefulSet"): Kind(_statefulset, runs_pods=True, long_running=True, scales=True),
    ("apps", "DaemonSet"): Kind(_daemonset, runs_pods=True, long_running=True),
    ("apps", "ReplicaSet"): Kind(scales=True),
    ("batch", "Job"): Kind(_job, runs_pods=True),
    ("", "Pod"): Kind(_pod),
    ("", "PersistentVolumeClaim"): Kind(_pvc),
    ("", "Service"): Kind(_service),
}
_UNKNOWN = Kind()


def group_kind(obj: dict[str, Any]) -> tuple[str, str]:
    """(API group, kind) of a manifest or live object; the core group is ""."""
    api_version = str(obj.get("apiVersion", ""))
    return (api_version.rpartition("/")[0], str(obj.get("kind", "")))


def kind_of(obj: dict[str, Any]) -> Kind:
    """The registry's entry for an object's kind (one with no check and no pods when unknown)."""
    return KINDS.get(group_kind(obj), _UNKNOWN)


def check(obj: dict[str, Any] | None) -> Health:
    """Health of one live object; None (absent) is Missing, a kind without a check is Healthy."""
    if obj is None:
        return Health(HealthStatus.MISSING, "does not exist")
    fn = kind_of(obj).check
    return fn(obj) if fn else Health(HealthStatus.HEALTHY, "exists")
