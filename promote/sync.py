"""Syncing one release: `helm upgrade --install` through pyhelm3, watched while it runs.

helm runs the chart's own hooks in order: pre-* before the resources, post-* after them. Only when the
chart has post-* hooks must helm itself `--wait` (atomically) for readiness, so that those hooks run
against ready resources. Otherwise helm applies and returns, and we wait with our own health table, which
sees readiness within a fraction of a second where helm's `--wait` polls every 2 s; the caller then rolls
a failure back to the last good revision, as `--atomic` would. Either way, while helm works, a watcher
reports each hook pod and workload as it changes, one line per event, and says what it waits for when a
wait lasts longer than two seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from promote import diff, health
from promote.chart import ChartInfo, hook_annotation
from promote.cluster import BUILTIN_GROUPS, ApiError, Cluster, Unreachable
from promote.errors import ClusterError, HealthError, PromoteError
from promote.plan import Action, HookPhase, ResourceChange
from promote.results import Event

if TYPE_CHECKING:
    from promote.helm.client import Helm

WAIT_ANNOUNCE_AFTER = 2.0  # seconds a wait lasts before we say what it waits for
POLL_INTERVAL = 0.5
# Our own readiness wait polls fast at first (a small rollout is ready in well under a second), then
# backs off, so a long rollout does not cost the cluster a request storm.
HEALTH_POLL_FIRST, HEALTH_POLL_MAX = 0.1, 1.0


Emit = Callable[[Event], None]


def hook_phase(obj: dict[str, Any]) -> str:
    """promote's name of a hook object's phase (PreSync, PostSync...), "" for a non-hook."""
    ann = hook_annotation(obj) or ""
    for upgrade in (True, False):
        phase = HookPhase.from_helm(ann, upgrade=upgrade)
        if phase:
            return phase.value
    return ""


class Watcher:
    """Reports hook pods (from a watch), hook Jobs and workloads (polled) of one release while helm runs.

    Hook Jobs are how most real charts write migrations; their pods carry no hook annotation, so the
    Job itself is what is shown.
    """

    def __init__(
        self,
        cluster: Cluster,
        env: str,
        namespace: str,
        workloads: list[tuple[str, str, str]],
        emit: Emit,
        hook_jobs: Sequence[tuple[str, str, str]] = (),
        watch_pods: bool = True,
    ):
        self.cluster, self.env, self.namespace = cluster, env, namespace
        self.workloads = workloads
        self.hook_jobs = list(hook_jobs)  # (apiVersion, name, hook phase)
        self.emit = emit
        self.stop = threading.Event()
        self._seen: dict[tuple[str, str], tuple[str, str]] = {}
        self._waiting_since: dict[tuple[str, str], float] = {}
        self._announced: dict[tuple[str, str], str] = {}  # what was last said a wait waits for
        self._active_hooks: dict[str, tuple[str, str, health.Health]] = {}  # name -> (phase, pod phase, health)
        # States read before helm starts: what the sync changes is news, what was there before is not.
        self._recording = False
        self._unsaid: set[tuple[str, str]] = set()  # objects whose only state known is that one
        # All of the state above is shared by the watch and the poll: one re-entrant lock guards it.
        self._lock = threading.RLock()
        self._threads = [threading.Thread(target=self._poll_workloads, daemon=True, name="poll-workloads")]
        if watch_pods:
            # Only with hooks: a watch of the namespace's pods streams every pod of every release there.
            self._threads.append(threading.Thread(target=self._watch_hooks, daemon=True, name="watch-hooks"))

    def __enter__(self) -> Watcher:
        with self._lock:
            self._recording = True
            try:
                self._poll_once()
            finally:
                self._recording = False
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        # Both are joined: the watch's read is ended by the stream closing on `stop` (Cluster.stream).
        for t in self._threads:
            t.join(timeout=5)
        # A rollout can end between two polls: one last look, so every workload's final state is shown.
        with self._lock:
            self._poll_once(final=True)

    def _report(
        self, kind: str, name: str, status: str, h: health.Health, hook: str, message: str = "", final: bool = False
    ) -> None:
        key = (kind, name)
        state = (status, h.status.value)
        with self._lock:
            if self._recording:
                self._seen[key] = state
                self._unsaid.add(key)
                return
            # The last look says the final state of an object nothing was said of since the sync began.
            unsaid = final and key in self._unsaid
            if (self.stop.is_set() and not final) or (self._seen.get(key) == state and not unsaid):
                return
            self._seen[key] = state
            self._unsaid.discard(key)
            self._emit(kind, name, status, h.status, hook, message or h.message)

    def _emit(
        self, kind: str, name: str, status: str, health_status: health.HealthStatus, hook: str, message: str
    ) -> None:
        self.emit(
            Event(
                at=datetime.now(UTC),
                env=self.env,
                kind=kind,
                namespace=self.namespace,
                name=name,
                status=status,
                health=health_status,
                hook=hook,
                message=message,
            )
        )

    def _watch_hooks(self) -> None:
        while not self.stop.is_set():
            try:
                for ev in self.cluster.watch("v1", "Pod", self.namespace, timeout=30, stop=self.stop):
                    pod = ev.get("object") or {}
                    hook = hook_phase(pod)
                    if not hook:
                        continue
                    with self._lock:
                        self._hook_event(ev.get("type"), pod, hook)
            except PromoteError:
                self.stop.wait(1.0)

    def _hook_event(self, kind: str | None, pod: dict[str, Any], hook: str) -> None:
        if self.stop.is_set():
            return  # the sync is over: its last look (__exit__) has said what is final
        name = pod.get("metadata", {}).get("name", "")
        if hook == HookPhase.POST_SYNC.value and ("Pod", name) not in self._seen:
            # helm runs post-* hooks once the workloads are ready: show them before the hook.
            self._poll_once()
        h = health.check(pod)
        if kind == "DELETED":
            self._active_hooks.pop(name, None)
            self._report("Pod", name, "Deleted", h, hook, "hook pod deleted by its policy")
            return
        phase = pod.get("status", {}).get("phase", "Pending")
        if h.status == health.HealthStatus.PROGRESSING:
            self._active_hooks[name] = (hook, phase, h)
        else:
            self._active_hooks.pop(name, None)
        self._report("Pod", name, phase, h, hook)

    def _announce(self, key: tuple[str, str], progressing: bool, message: str) -> bool:
        """True when a wait on `key` has lasted over WAIT_ANNOUNCE_AFTER and what it waits for is news:
        said once, then again only when the reason changes (a wait of minutes is not minutes of lines)."""
        now = time.monotonic()
        if not progressing:
            self._waiting_since.pop(key, None)
            self._announced.pop(key, None)
            return False
        since = self._waiting_since.setdefault(key, now)
        if now - since >= WAIT_ANNOUNCE_AFTER and self._announced.get(key) != message:
            self._announced[key] = message
            return True
        return False

    def _poll_workloads(self) -> None:
        while not self.stop.wait(POLL_INTERVAL):
            with self._lock:
                for name, (hook, phase, h) in list(self._active_hooks.items()):
                    if self._announce(("Pod", name), True, h.message):
                        message = f"waiting for {hook} hook pod {name}: {h.message}"
                        self._emit("Pod", name, phase, h.status, hook, message)
                self._poll_once()

    def _poll_hook_jobs(self, final: bool) -> None:
        for api_version, name, phase in self.hook_jobs:
            try:
                job = self.cluster.get(api_version, "Job", self.namespace, name)
            except PromoteError:
                continue
            if job is None:
                continue  # not created yet, or deleted by its hook-delete-policy
            h = health.check(job)
            status = {health.HealthStatus.HEALTHY: "Succeeded", health.HealthStatus.DEGRADED: "Failed"}
            self._report("Job", name, status.get(h.status, "Running"), h, phase, final=final)
            if not final and self._announce(("Job", name), h.status == health.HealthStatus.PROGRESSING, h.message):
                self._emit("Job", name, "Running", h.status, phase, f"waiting for {phase} hook job {name}: {h.message}")

    def _poll_once(self, final: bool = False) -> None:
        self._poll_hook_jobs(final)
        seen: list[tuple[str, str, dict[str, Any] | None]] = []
        for api_version, kind, name in self.workloads:
            try:
                seen.append((kind, name, self.cluster.get(api_version, kind, self.namespace, name)))
            except PromoteError:
                continue
        if any(obj is not None for _, _, obj in seen):
            self._settle_pre_hooks(final)
        for kind, name, obj in seen:
            h = health.check(obj)
            status = "Missing" if obj is None else "Synced"
            self._report(kind, name, status, h, "", final=final)
            if not final and self._announce((kind, name), h.status == health.HealthStatus.PROGRESSING, h.message):
                self._emit(kind, name, status, h.status, "", f"waiting for {kind} {name}: {h.message}")

    def _settle_pre_hooks(self, final: bool) -> None:
        """Report how the pre-sync hooks ended before anything about the workloads they came before.

        A GET is current while a watch may lag behind it on a busy apiserver, so without this a workload
        could show as Healthy before its migration hook shows as done. helm creates the resources only once
        every pre-* hook succeeded, so a hook pod gone by then was deleted by its policy after success.
        """
        for name, (hook, _, _) in list(self._active_hooks.items()):
            if hook != HookPhase.PRE_SYNC.value:
                continue
            try:
                pod = self.cluster.get("v1", "Pod", self.namespace, name)
            except PromoteError:
                continue
            if pod is None:
                done = health.Health(health.HealthStatus.HEALTHY, "completed, then deleted by its hook-delete-policy")
                self._report("Pod", name, "Succeeded", done, hook, final=final)
                self._active_hooks.pop(name, None)
                continue
            h = health.check(pod)
            if h.status != health.HealthStatus.PROGRESSING:
                self._active_hooks.pop(name, None)
            self._report("Pod", name, pod.get("status", {}).get("phase", "Pending"), h, hook, final=final)


def workload_pods(cluster: Cluster, namespace: str, workload: dict[str, Any]) -> list[dict[str, Any]]:
    """The pods a workload runs: those its matchLabels select that a controller owns, read live.

    Charts commonly give their hook pods the app's labels, so a selector alone would count a failed
    migration hook of an earlier attempt as one of the Deployment's pods, and keep the release Degraded
    long after helm and the rollout moved on. Hook pods are reported apart (see leftover_hooks).
    """
    labels = (workload.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        return []
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return [
        p
        for p in cluster.list("v1", "Pod", namespace, label_selector=selector)
        if not hook_annotation(p) and any(o.get("controller") for o in p["metadata"].get("ownerReferences") or [])
    ]


def leftover_hooks(cluster: Cluster, namespace: str, hooks: list[dict[str, Any]]) -> list[str]:
    """Hook Pods and Jobs of a release's earlier attempts that failed and are still there, with the
    command that cleans each: they are not the release's health, but a person should know of them."""
    out = []
    seen: set[tuple[str, str]] = set()
    for h in hooks:
        kind, name = h.get("kind", ""), (h.get("metadata") or {}).get("name", "")
        if kind not in ("Pod", "Job") or (kind, name) in seen:
            continue
        seen.add((kind, name))
        live = cluster.get(h.get("apiVersion", "v1"), kind, namespace, name)
        verdict = health.check(live)
        if live is not None and verdict.status == health.HealthStatus.DEGRADED:
            out.append(
                f"leftover hook {kind} {name} from an earlier attempt failed ({verdict.message}); "
                f"clean it with `kubectl delete {kind.lower()} {name} -n {namespace}`"
            )
    return out


def release_health(cluster: Cluster, namespace: str, objs: list[dict[str, Any]]) -> health.Health:
    """Worst health over a release's (non-hook) objects and the pods of its workloads, read live."""
    results = []
    for o in objs:
        md = o.get("metadata", {})
        live = cluster.get(o["apiVersion"], o["kind"], md.get("namespace") or namespace, md["name"])
        h = health.check(live)
        results.append(health.Health(h.status, f"{o['kind']} {md['name']}: {h.message}"))
        if live is not None and health.kind_of(o).long_running:
            for pod in workload_pods(cluster, namespace, live):
                ph = health.check(pod)
                if ph.status == health.HealthStatus.DEGRADED:
                    results.append(health.Health(ph.status, f"Pod {pod['metadata']['name']}: {ph.message}"))
    h = health.worst(results)
    if h.status == health.HealthStatus.HEALTHY:
        return health.Health(h.status, f"{len(results)} resources healthy")
    return h


def wait_healthy(cluster: Cluster, namespace: str, objs: list[dict[str, Any]], timeout: float) -> health.Health:
    """Poll until the release is Healthy or the timeout passes; returns the last health seen."""
    deadline = time.monotonic() + timeout
    interval = HEALTH_POLL_FIRST
    while True:
        try:
            h = release_health(cluster, namespace, objs)
        except (Unreachable, ApiError) as e:
            if isinstance(e, ApiError) and not e.transient:
                raise  # e.g. forbidden: waiting will not change it
            # A blip of the API is no verdict on the release: ask again until the deadline.
            h = health.Health(health.HealthStatus.PROGRESSING, f"cannot read the release's objects: {e}")
        if h.status == health.HealthStatus.HEALTHY or time.monotonic() >= deadline:
            return h
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, HEALTH_POLL_MAX)


def server_validated(
    changes: Sequence[ResourceChange], rendered: list[dict[str, Any]], *, rendered_as_install: bool = False
) -> bool:
    """Whether the plan's strict dry runs (cluster.DRY_RUN) checked what helm will write: every object
    new or changed since the last revision (an unchanged one was accepted before, and helm's patch of it
    is empty). Then helm's own OpenAPI check of the upgrade, two thirds of its CPU, would only repeat them.

    Not so for a release whose namespace does not exist yet (nothing could be dry-run there); with custom
    resources (their CRD may change during this apply, by this chart or an earlier release); with install
    or upgrade hooks (plan does not dry-run hooks); or rendered as an install while helm will upgrade
    (`rendered_as_install`: only failed revisions so far, where templates may branch on .Release.IsUpgrade).
    There helm keeps its check.
    """
    if rendered_as_install or any(c.kind == "Namespace" and c.action == Action.CREATE for c in changes):
        return False
    for o in rendered:
        group = str(o.get("apiVersion", "")).rpartition("/")[0]
        if group not in BUILTIN_GROUPS or (hook_annotation(o) and hook_phase(o)):
            return False
    return True


def runs_post_hooks(rendered: list[dict[str, Any]]) -> bool:
    """Whether a render has post-install/post-upgrade hooks, which must run only once resources are ready."""
    for obj in rendered:
        events = {e.strip() for e in (hook_annotation(obj) or "").split(",")}
        if events & {"post-install", "post-upgrade"}:
            return True
    return False


async def helm_upgrade(
    helm: Helm,
    *,
    chart: ChartInfo,
    release: str,
    namespace: str,
    values: dict[str, Any],
    description: str,
    timeout: float,
    wait: bool,
    server_side: bool = False,
    server_validated: bool = False,
) -> int:
    """helm upgrade --install, waiting for readiness when `wait`; returns the new helm revision.

    A failure leaves the release `failed` for the caller to explain and roll back.
    """
    return await helm.upgrade(
        chart,
        release=release,
        namespace=namespace,
        values=values,
        description=description,
        timeout=timeout,
        wait=wait,
        server_side=server_side,
        server_validated=server_validated,
    )


def health_error(
    release: str, namespace: str, h: health.Health, timeout: float, done: str = "", why: str = ""
) -> HealthError:
    """The error for a release that did not become healthy in time: what holds it back (`why`, from
    `explain`, when it says more than the health message) and what was done about it."""
    cause = why if why and h.message not in why else "; ".join(m for m in (h.message, why) if m)
    then = f"; {done}" if done else ""
    return HealthError(f"release {release} in {namespace} is {h.status.value} after {timeout:.0f}s: {cause}{then}")


def explain(
    cluster: Cluster,
    namespace: str,
    objs: list[dict[str, Any]],
    hooks: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> str:
    """Why a release is not healthy, read live: the first hook Pod or Job that failed, else the first
    object that is not healthy, and for a workload the pod that holds it back and why (container state,
    scheduling, readiness, the last warning event).

    Read before anything is rolled back: afterwards the pods that would say it are gone.
    """
    try:
        for o in [*(h for h in hooks if h.get("kind") in ("Pod", "Job")), *objs]:
            md = o.get("metadata", {})
            live = cluster.get(o["apiVersion"], o["kind"], md.get("namespace") or namespace, md["name"])
            h = health.check(live)
            if h.status == health.HealthStatus.HEALTHY or (live is None and hook_annotation(o)):
                continue
            what = f"{o['kind']} {md['name']}: {h.message}"
            if live is not None and health.kind_of(o).runs_pods:
                pods = [p for p in workload_pods(cluster, namespace, live) if not pod_ready(p)]
                if pods:
                    return f"{what}; {describe_pod(cluster, namespace, pods[0])}"
            event = last_warning(cluster, namespace, o["kind"], md["name"]) if live is not None else ""
            return f"{what}{'; last event ' + event if event else ''}"
    except PromoteError as e:
        return f"(could not read why: {e})"
    return ""


def pod_ready(pod: dict[str, Any]) -> bool:
    """Whether a pod is Ready (or ran to completion)."""
    conditions = pod.get("status", {}).get("conditions") or []
    return pod.get("status", {}).get("phase") == "Succeeded" or any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def describe_pod(cluster: Cluster, namespace: str, pod: dict[str, Any]) -> str:
    """One line on why a pod is not ready: its container's state, else its scheduling or readiness
    condition, and the last warning event about it."""
    name, st = pod["metadata"]["name"], pod.get("status", {})
    why = ""
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if waiting := state.get("waiting"):
            why = f"container {cs.get('name')} {waiting.get('reason', 'waiting')}: {waiting.get('message', '')}"
        elif (term := state.get("terminated")) and term.get("exitCode", 0) != 0:
            why = f"container {cs.get('name')} exited with code {term.get('exitCode')} ({term.get('reason', '')})"
        if why:
            break
    for cond in st.get("conditions") or []:
        if why:
            break
        if cond.get("type") in ("PodScheduled", "Ready") and cond.get("status") != "True":
            detail = cond.get("message") or cond.get("reason") or ""
            why = f"{'not scheduled' if cond['type'] == 'PodScheduled' else 'not ready'}: {detail}"
    why = why.rstrip(": ") or f"phase {st.get('phase', 'Pending')}"
    event = last_warning(cluster, namespace, "Pod", name)
    return f"Pod {name} {why}{'; last event ' + event if event else ''}"


def last_warning(cluster: Cluster, namespace: str, kind: str, name: str) -> str:
    """The newest warning event about an object, as "Reason: message" ("" when none)."""
    try:
        events = cluster.list(
            "v1",
            "Event",
            namespace,
            field_selector=f"involvedObject.kind={kind},involvedObject.name={name},type=Warning",
        )
    except PromoteError:
        return ""
    if not events:
        return ""
    ev = max(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return f"{ev.get('reason', '')}: {ev.get('message', '')}".strip()


CRD_ESTABLISHED_TIMEOUT = 60.0


def apply_crds(cluster: Cluster, crds: list[dict[str, Any]], replace_existing: bool) -> list[tuple[str, str]]:
    """The chart's CRDs made live before helm runs (helm creates them only on install, and never one a
    later chart version adds): missing ones created, differing ones replaced when `replace_existing`.
    Each is Established before this returns, so the chart's custom resources apply. (name, what was done).
    """
    done: list[tuple[str, str]] = []
    for crd in crds:
        name = str(crd["metadata"]["name"])
        live = cluster.get(str(crd["apiVersion"]), "CustomResourceDefinition", None, name)
        if live is None:
            cluster.create(crd, None)
            done.append((name, "created"))
        elif replace_existing and not diff.crd_current(live, crd):
            rv = live["metadata"]["resourceVersion"]
            cluster.replace({**crd, "metadata": {**crd["metadata"], "resourceVersion": rv}}, None)
            done.append((name, "replaced"))
    for name, _ in done:
        _wait_established(cluster, name)
    for crd in crds:
        spec = crd.get("spec") or {}
        for version in spec.get("versions") or []:
            cluster.forget(f"{spec.get('group')}/{version.get('name')}")
    return done


def _wait_established(cluster: Cluster, name: str) -> None:
    deadline = time.monotonic() + CRD_ESTABLISHED_TIMEOUT
    while True:
        live = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name) or {}
        conditions = (live.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        if time.monotonic() > deadline:
            raise ClusterError(
                f"CustomResourceDefinition {name} is not Established after {CRD_ESTABLISHED_TIMEOUT:.0f}s: "
                + "; ".join(f"{c.get('type')}={c.get('status')} {c.get('message', '')}".strip() for c in conditions)
            )
        time.sleep(0.2)
