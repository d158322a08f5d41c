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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from promote import health
from promote.chart import ChartInfo, hook_annotation
from promote.cluster import ApiError, Cluster, Unreachable
from promote.errors import HealthError, HelmError, PromoteError
from promote.plan import HookPhase
from promote.results import Event

if TYPE_CHECKING:
    from promote.helm.client import Helm

WAIT_ANNOUNCE_AFTER = 2.0  # seconds a wait lasts before we say what it waits for
POLL_INTERVAL = 0.5
# Our own readiness wait polls fast at first (a small rollout is ready in well under a second), then
# backs off, so a long rollout does not cost the cluster a request storm.
HEALTH_POLL_FIRST, HEALTH_POLL_MAX = 0.1, 1.0


Emit = Callable[[Event], None]


def _hook_phase(pod: dict[str, Any]) -> str:
    ann = (pod.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook", "")
    for upgrade in (True, False):
        phase = HookPhase.from_helm(ann, upgrade=upgrade)
        if phase:
            return phase.value
    return ""


class Watcher:
    """Reports hook pods (from a watch) and workloads (polled) of one release while helm runs."""

    def __init__(self, cluster: Cluster, env: str, namespace: str, workloads: list[tuple[str, str, str]], emit: Emit):
        self.cluster, self.env, self.namespace = cluster, env, namespace
        self.workloads = workloads
        self.emit = emit
        self.stop = threading.Event()
        self._seen: dict[tuple[str, str], tuple[str, str]] = {}
        self._waiting_since: dict[tuple[str, str], float] = {}
        self._announced: dict[tuple[str, str], float] = {}
        self._active_hooks: dict[str, tuple[str, str, health.Health]] = {}  # name -> (phase, pod phase, health)
        self._lock = threading.Lock()  # the watch and the poll both report
        self._threads = [
            threading.Thread(target=self._watch_hooks, daemon=True, name="watch-hooks"),
            threading.Thread(target=self._poll_workloads, daemon=True, name="poll-workloads"),
        ]

    def __enter__(self) -> Watcher:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        # Only the poller is joined: the hook watcher may sit in a blocking read until the next pod event
        # or the server's timeout, and it emits nothing once stopped, so waiting for it would only cost time.
        self._threads[1].join(timeout=2)
        # A rollout can end between two polls: one last look, so every workload's final state is shown.
        self._poll_once(final=True)

    def _report(
        self, kind: str, name: str, status: str, h: health.Health, hook: str, message: str = "", final: bool = False
    ) -> None:
        key = (kind, name)
        state = (status, h.status.value)
        with self._lock:
            if (self.stop.is_set() and not final) or self._seen.get(key) == state:
                return
            self._seen[key] = state
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
                    hook = _hook_phase(pod)
                    if not hook:
                        continue
                    name = pod.get("metadata", {}).get("name", "")
                    if hook == HookPhase.POST_SYNC.value and ("Pod", name) not in self._seen:
                        # helm runs post-* hooks once the workloads are ready: show them before the hook.
                        self._poll_once()
                    h = health.check(pod)
                    if ev.get("type") == "DELETED":
                        self._active_hooks.pop(name, None)
                        self._report("Pod", name, "Deleted", h, hook, "hook pod deleted by its policy")
                    else:
                        phase = pod.get("status", {}).get("phase", "Pending")
                        if h.status == health.HealthStatus.PROGRESSING:
                            self._active_hooks[name] = (hook, phase, h)
                        else:
                            self._active_hooks.pop(name, None)
                        self._report("Pod", name, phase, h, hook)
            except PromoteError:
                self.stop.wait(1.0)

    def _announce(self, key: tuple[str, str], progressing: bool) -> bool:
        """True when a wait on `key` has lasted over WAIT_ANNOUNCE_AFTER and was not said in the last 5 s."""
        now = time.monotonic()
        if not progressing:
            self._waiting_since.pop(key, None)
            return False
        since = self._waiting_since.setdefault(key, now)
        if now - since >= WAIT_ANNOUNCE_AFTER and now - self._announced.get(key, 0) >= 5:
            self._announced[key] = now
            return True
        return False

    def _poll_workloads(self) -> None:
        while not self.stop.wait(POLL_INTERVAL):
            for name, (hook, phase, h) in list(self._active_hooks.items()):
                if self._announce(("Pod", name), True):
                    self._emit("Pod", name, phase, h.status, hook, f"waiting for {hook} hook pod {name}: {h.message}")
            self._poll_once()

    def _poll_once(self, final: bool = False) -> None:
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
            if not final and self._announce((kind, name), h.status == health.HealthStatus.PROGRESSING):
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
    """The pods a workload selects (by its matchLabels), read live."""
    labels = (workload.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        return []
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return cluster.list("v1", "Pod", namespace, label_selector=selector)


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
) -> int:
    """helm upgrade --install, rolling back and waiting when `wait`; returns the new helm revision.

    Without `wait`, a failure leaves the release `failed` for the caller to roll back.
    """
    try:
        return await helm.upgrade(
            chart,
            release=release,
            namespace=namespace,
            values=values,
            description=description,
            timeout=timeout,
            wait=wait,
        )
    except HelmError as e:
        if not wait:
            raise
        raise type(e)(f"sync of release {release} in {namespace} failed and helm rolled it back: {e}") from e


def health_error(release: str, namespace: str, h: health.Health, timeout: float, done: str = "") -> HealthError:
    """The error for a release that did not become healthy in time (and what was done about it)."""
    then = f"; {done}" if done else ""
    return HealthError(f"release {release} in {namespace} is {h.status.value} after {timeout:.0f}s: {h.message}{then}")
