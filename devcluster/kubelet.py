"""A simulated kubelet (kwok-style) for the dev cluster: no container ever runs, but nodes and pods
look to the control plane, helm and kubectl as if they did.

Why not kwok itself (sigs.k8s.io/kwok, which the Go module proxy serves): its Stages select a pod by
the pod's own fields only, so "a pod whose ConfigMap or Secret does not exist waits in
CreateContainerConfigError until it appears" cannot be said in a Stage, and the failed-rollout tests
rely on exactly that; it would also add a Go build to every fresh machine's set-up.

It registers ``--nodes`` Ready nodes (``sim-node-1`` ...), keeps them alive by renewing their
``kube-node-lease`` Leases and refreshing the Ready heartbeat, and drives every pod bound to them
through a believable lifecycle by writing the pod ``status`` subresource:

* a new pod becomes Running and Ready (IP, hostIP, conditions, container statuses);
* a pod whose ConfigMap/Secret references (env ``valueFrom``, ``envFrom``, ``configMap``/``secret``/
  ``projected`` volumes) are missing and not ``optional`` stays Pending with the container waiting
  in ``CreateContainerConfigError``; it is re-checked every ~2 s and starts once the object appears;
* run-to-completion pods (``restartPolicy`` Never/OnFailure: helm hooks, Job pods) become Succeeded
  about a second after starting;
* pods with a deletion timestamp are finalized with a zero grace period, as a kubelet does once
  the containers are gone, so that namespaces can finish terminating.

Fault injection, by pod annotation (values are strings):

``sim.promote.dev/fail: "true"``
    Containers exit with code 1. A run-to-completion pod ends Failed (terminated, exitCode 1,
    reason Error); a ``restartPolicy: Always`` pod crash-loops: restartCount grows, the container
    waits in CrashLoopBackOff and never becomes Ready.
``sim.promote.dev/never-ready: "true"``
    Running and started, but containers are not ready and the pod's Ready condition is False.
``sim.promote.dev/crash-loop: "true"``
    Running, but every ~3 s the container "crashes": restartCount increments, lastState.terminated
    is set (exitCode 1) and Ready flaps to False for about a second before returning to True.
``sim.promote.dev/delay: "5s"``
    Delays startup (and therefore completion) by a Go-style duration (``500ms``, ``5s``, ``1m``).

The process is restart-safe: on start it re-registers its nodes and re-lists all pods, adopting
the IPs, start times and restart counts already recorded in their status.

Usage: ``python -m devcluster.kubelet --kubeconfig PATH [--nodes 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devcluster.kube import JSON, Kube, KubeError

ANN_FAIL = "sim.promote.dev/fail"
ANN_NEVER_READY = "sim.promote.dev/never-ready"
ANN_CRASH_LOOP = "sim.promote.dev/crash-loop"
ANN_DELAY = "sim.promote.dev/delay"

# A real kubelet admits 110 pods; a simulated one runs no container, and the bench's 1,000 releases
# (about 1,750 pods, twice that with the raw-helm copies) must fit: at 110 a node, the 331st pod stayed
# Pending ("Too many pods") and a `helm --wait` hung for its whole timeout. CPU and memory likewise: the
# bench's svc chart requests 50m and 64Mi a pod, and at 8 CPUs a node the 481st pod stayed Pending
# ("Insufficient cpu"); 128 CPUs and 256Gi hold 2,560 such pods a node.
NODE_CAPACITY = {"cpu": "128", "memory": "256Gi", "pods": "1500", "ephemeral-storage": "100Gi"}
KUBELET_VERSION = "v1.36.3"
HEARTBEAT_INTERVAL = 10.0
LEASE_DURATION = 40
CONFIG_RECHECK = 2.0
COMPLETE_AFTER = 1.0
CRASH_PERIOD = 3.0
CRASH_RECOVER = 1.0
RUN_TO_COMPLETION = ("Never", "OnFailure")

log = logging.getLogger("sim-kubelet")


# --------------------------------------------------------------------------------------------
# Pure helpers


def now_rfc3339() -> str:
    """Second-precision UTC timestamp, the format metav1.Time round-trips unchanged."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1", "yes", "y", "on")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float:
    """Parse a Go-style duration (``1m30s``, ``500ms``) or bare seconds; invalid text means 0."""
    if not text:
        return 0.0
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        log.warning("ignoring unparseable %s value %r", ANN_DELAY, text)
        return 0.0
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class ObjectRef:
    """A ConfigMap or Secret (and optionally one key in it) that a container needs to start."""

    kind: str  # "configmap" or "secret"
    name: str
    key: str | None = None


def _env_refs(container: JSON) -> list[ObjectRef]:
    refs: list[ObjectRef] = []
    for env in container.get("env") or []:
        source = env.get("valueFrom") or {}
        for field_name, kind in (("configMapKeyRef", "configmap"), ("secretKeyRef", "secret")):
            ref = source.get(field_name)
            if ref and not ref.get("optional") and ref.get("name"):
                refs.append(ObjectRef(kind, ref["name"], ref.get("key")))
    for env_from in container.get("envFrom") or []:
        for field_name, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
            ref = env_from.get(field_name)
            if ref and not ref.get("optional") and ref.get("name"):
                refs.append(ObjectRef(kind, ref["name"]))
    return refs


def _volume_refs(spec: JSON) -> list[ObjectRef]:
    refs: list[ObjectRef] = []
    for volume in spec.get("volumes") or []:
        cm = volume.get("configMap")
        if cm and not cm.get("optional") and cm.get("name"):
            refs.append(ObjectRef("configmap", cm["name"]))
        secret = volume.get("secret")
        if secret and not secret.get("optional") and secret.get("secretName"):
            refs.append(ObjectRef("secret", secret["secretName"]))
        for source in (volume.get("projected") or {}).get("sources") or []:
            cm = source.get("configMap")
            if cm and not cm.get("optional") and cm.get("name"):
                refs.append(ObjectRef("configmap", cm["name"]))
            secret = source.get("secret")
            if secret and not secret.get("optional") and secret.get("name"):
                refs.append(ObjectRef("secret", secret["name"]))
    return refs


def referenced_objects(spec: JSON) -> dict[str, list[ObjectRef]]:
    """Map each container name (init containers included) to the non-optional objects it needs.

    Volumes are pod-level, so every container needs them; env references are per container.
    """
    volume_refs = _volume_refs(spec)
    result: dict[str, list[ObjectRef]] = {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        refs = volume_refs + _env_refs(container)
        result[container["name"]] = list(dict.fromkeys(refs))
    return result


def missing_message(ref: ObjectRef, namespace: str, obj: JSON | None) -> str | None:
    """The kubelet's error text for ``ref`` given the object fetched for it (None if absent)."""
    if obj is None:
        return f'{ref.kind} "{ref.name}" not found'
    if ref.key is not None:
        data = {**(obj.get("data") or {}), **(obj.get("binaryData") or obj.get("stringData") or {})}
        if ref.key not in data:
            kind = "ConfigMap" if ref.kind == "configmap" else "Secret"
            return f"couldn't find key {ref.key} in {kind} {namespace}/{ref.name}"
    return None


def node_object(name: str, index: int) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "type": "sim-kubelet",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": node_status(name, index),
    }


def node_host_ip(index: int) -> str:
    return f"10.240.0.{10 + index}"


def node_conditions() -> list[JSON]:
    now = now_rfc3339()

    def cond(type_: str, status: str, reason: str, message: str) -> JSON:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        cond("Ready", "True", "KubeletReady", "simulated kubelet is posting ready status"),
    ]


def node_status(name: str, index: int) -> JSON:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "capacity": dict(NODE_CAPACITY),
        "allocatable": dict(NODE_CAPACITY),
        "addresses": [
            {"type": "InternalIP", "address": node_host_ip(index)},
            {"type": "Hostname", "address": name},
        ],
        "conditions": node_conditions(),
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": digest[:32],
            "systemUUID": digest[32:64],
            "bootID": digest[:32],
            "kernelVersion": "simulated",
            "osImage": "promote dev-cluster simulated node",
            "containerRuntimeVersion": "sim://1.0.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def normalize(value: Any) -> Any:
    """Drop nulls and empty containers so that a desired status compares equal to its round trip."""
    if isinstance(value, dict):
        out = {k: normalize(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Pod lifecycle


@dataclass
class PodRecord:
    """What this kubelet remembers about one pod between reconciles."""

    uid: str
    first_seen: float
    start_time: str
    ip: str
    started_at: float | None = None
    started_wall: str = ""
    restarts: int = 0
    next_event: float | None = None
    last_crash: float | None = None
    last_crash_wall: str = ""
    crash_started_wall: str = ""
    prev_started_wall: str = ""


@dataclass
class PodView:
    """The parts of a pod's status this kubelet computes, plus when to look again."""

    status: JSON
    recheck: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _container_id(uid: str, name: str, restarts: int) -> str:
    return "sim://" + hashlib.sha256(f"{uid}/{name}/{restarts}".encode()).hexdigest()


def _image_id(image: str) -> str:
    return f"sim-pullable://{image}@sha256:" + hashlib.sha256(image.encode()).hexdigest()


def _base_container_status(container: JSON, uid: str, restarts: int) -> JSON:
    image = container.get("image", "")
    return {
        "name": container["name"],
        "image": image,
        "imageID": _image_id(image),
        "restartCount": restarts,
    }


def _condition(type_: str, ok: bool, reason: str = "", message: str = "") -> JSON:
    cond: JSON = {"type": type_, "status": "True" if ok else "False"}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def stamp_conditions(conditions: list[JSON], previous: Iterable[JSON], now: str) -> list[JSON]:
    """Carry lastTransitionTime over from the previous status when a condition did not change."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in conditions:
        old = before.get(cond["type"])
        stamped = dict(cond)
        if old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
            stamped["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            stamped["lastTransitionTime"] = now
        out.append(stamped)
    return out


def compute_status(pod: JSON, rec: PodRecord, now: float, missing: dict[str, str], host_ip: str) -> PodView:
    """Decide the pod's status at monotonic time ``now``; may advance ``rec`` (start, crashes).

    ``missing`` maps container names to the CreateContainerConfigError message, if any.
    """
    spec = pod.get("spec") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    uid = rec.uid
    containers: list[JSON] = spec.get("containers") or []
    init_containers: list[JSON] = spec.get("initContainers") or []
    policy = spec.get("restartPolicy") or "Always"
    fail = is_true(annotations.get(ANN_FAIL))
    never_ready = is_true(annotations.get(ANN_NEVER_READY))
    crash_loop = is_true(annotations.get(ANN_CRASH_LOOP))
    delay = parse_duration(annotations.get(ANN_DELAY))
    wall = now_rfc3339()
    names = " ".join(c["name"] for c in containers)

    status: JSON = {
        "hostIP": host_ip,
        "podIP": rec.ip,
        "podIPs": [{"ip": rec.ip}],
        "startTime": rec.start_time,
    }

    def init_statuses(done: bool) -> list[JSON]:
        out = []
        for c in init_containers:
            cs = _base_container_status(c, uid, 0)
            if done:
                cs.update(
                    ready=True,
                    state={
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": rec.started_wall,
                            "finishedAt": rec.started_wall,
                            "containerID": _container_id(uid, c["name"], 0),
                        }
                    },
                    containerID=_container_id(uid, c["name"], 0),
                )
            else:
                cs.update(ready=False, state={"waiting": {"reason": "PodInitializing"}})
            out.append(cs)
        return out

    def pending(reason_for: dict[str, tuple[str, str]], recheck: float) -> PodView:
        statuses = []
        for c in containers:
            reason, message = reason_for.get(c["name"], ("ContainerCreating", ""))
            waiting: JSON = {"reason": reason}
            if message:
                waiting["message"] = message
            cs = _base_container_status(c, uid, 0)
            cs.update(ready=False, started=False, state={"waiting": waiting})
            statuses.append(cs)
        status.update(
            phase="Pending",
            conditions=[
                _condition("Initialized", True),
                _condition("Ready", False, "ContainersNotReady", f"containers with unready status: [{names}]"),
                _condition(
                    "ContainersReady", False, "ContainersNotReady", f"containers with unready status: [{names}]"
                ),
                _condition("PodScheduled", True),
            ],
            containerStatuses=statuses,
        )
        if init_containers:
            status["initContainerStatuses"] = init_statuses(False)
        return PodView(status, recheck)

    # --- not started yet: delay, then missing references -------------------------------------
    if rec.started_at is None:
        if now < rec.first_seen + delay:
            return pending({}, rec.first_seen + delay - now)
        if missing:
            return pending({name: ("CreateContainerConfigError", msg) for name, msg in missing.items()}, CONFIG_RECHECK)
        rec.started_at = now
        rec.started_wall = wall

    started_at = rec.started_at
    if init_containers:
        status["initContainerStatuses"] = init_statuses(True)

    def running_state() -> JSON:
        return {"running": {"startedAt": rec.crash_started_wall or rec.started_wall}}

    def terminated(code: int, started: str, finished: str, restarts: int, name: str) -> JSON:
        return {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started,
                "finishedAt": finished,
                "containerID": _container_id(uid, name, restarts),
            }
        }

    def finish(ready: bool, state_for: Any, last_state_for: Any, phase: str, recheck: float | None) -> PodView:
        statuses = []
        for c in containers:
            cs = _base_container_status(c, uid, rec.restarts)
            state = state_for(c)
            cs.update(
                ready=ready,
                started="running" in state,
                state=state,
                containerID=_container_id(uid, c["name"], rec.restarts),
            )
            last = last_state_for(c)
            if last:
                cs["lastState"] = last
            statuses.append(cs)
        done = phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if done else ("" if ready else "ContainersNotReady")
        message = "" if ready or done else f"containers with unready status: [{names}]"
        status.update(
            phase=phase,
            conditions=[
                _condition("Initialized", True, "PodCompleted" if done and init_containers else ""),
                _condition("Ready", ready, reason, message),
                _condition("ContainersReady", ready, reason, message),
                _condition("PodScheduled", True),
            ],
            containerStatuses=statuses,
        )
        return PodView(status, recheck)

    def no_last(_c: JSON) -> JSON | None:
        return None

    # --- run to completion ---------------------------------------------------------------------
    if policy in RUN_TO_COMPLETION:
        done_at = started_at + COMPLETE_AFTER
        if now < done_at:
            return finish(not never_ready, lambda c: running_state(), no_last, "Running", done_at - now)
        code = 1 if fail else 0
        finished = rec.last_crash_wall or wall
        rec.last_crash_wall = finished
        return finish(
            False,
            lambda c: terminated(code, rec.started_wall, finished, rec.restarts, c["name"]),
            no_last,
            "Failed" if fail else "Succeeded",
            None,
        )

    # --- restartPolicy Always: crash loops ----------------------------------------------------
    if fail or crash_loop:
        if rec.next_event is None:
            rec.next_event = started_at + (COMPLETE_AFTER if fail else CRASH_PERIOD)
        if now >= rec.next_event:
            rec.prev_started_wall = rec.crash_started_wall or rec.started_wall
            rec.restarts += 1
            rec.last_crash = now
            rec.last_crash_wall = wall
            rec.crash_started_wall = wall
            rec.next_event = now + CRASH_PERIOD
        prev = rec.prev_started_wall or rec.started_wall

        def last_state(c: JSON) -> JSON | None:
            if rec.restarts == 0:
                return None
            return terminated(1, prev, rec.last_crash_wall, rec.restarts - 1, c["name"])

        if fail:

            def waiting(c: JSON) -> JSON:
                if rec.restarts == 0:
                    return running_state()
                return {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off 10s restarting failed container={c['name']} "
                        f"pod={pod['metadata']['name']}_{pod['metadata']['namespace']}({uid})",
                    }
                }

            return finish(False, waiting, last_state, "Running", rec.next_event - now)
        recovered_at = (rec.last_crash or 0.0) + CRASH_RECOVER
        ready = (rec.last_crash is None or now >= recovered_at) and not never_ready
        recheck = rec.next_event - now
        if rec.last_crash is not None and now < recovered_at:
            recheck = min(recheck, recovered_at - now)
        return finish(ready, lambda c: running_state(), last_state, "Running", recheck)

    return finish(not never_ready, lambda c: running_state(), no_last, "Running", None)


# --------------------------------------------------------------------------------------------
# The kubelet process


class SimKubelet:
    """Owns a set of simulated nodes and every pod the scheduler binds to them."""

    def __init__(self, kube: Kube, node_names: list[str]) -> None:
        self.kube = kube
        self.nodes = {name: i + 1 for i, name in enumerate(node_names)}
        self.stop_event = threading.Event()
        self._lock = threading.Condition()
        self._pods: dict[str, JSON] = {}  # "ns/name" -> latest pod object
        self._due: dict[str, float] = {}  # "ns/name" -> monotonic time to reconcile
        self._records: dict[str, PodRecord] = {}  # uid -> record
        self._used_ips: set[str] = set()
        self._ip_counter = 0

    # --- nodes -----------------------------------------------------------------------------
    def register_nodes(self) -> None:
        for name, index in self.nodes.items():
            try:
                self.kube.post("/api/v1/nodes", node_object(name, index))
                log.info("registered node %s", name)
            except KubeError as exc:
                if exc.status != 409:
                    raise
                self.kube.patch(f"/api/v1/nodes/{name}/status", {"status": node_status(name, index)})
                log.info("re-registered existing node %s", name)
            self._renew_lease(name)

    def _renew_lease(self, name: str) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": now_micro()}
        try:
            self.kube.patch(path, {"spec": spec})
        except KubeError as exc:
            if exc.status != 404:
                raise
            self.kube.post(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": spec,
                },
            )

    def _heartbeat_once(self) -> None:
        for name, index in self.nodes.items():
            try:
                self._renew_lease(name)
                self.kube.patch(f"/api/v1/nodes/{name}/status", {"status": {"conditions": node_conditions()}})
            except KubeError as exc:
                if exc.status == 404:
                    log.warning("node %s disappeared; registering it again", name)
                    self.kube.post("/api/v1/nodes", node_object(name, index))
                else:
                    log.warning("heartbeat for node %s failed: %s", name, exc)

    def heartbeat_loop(self) -> None:
        while not self.stop_event.wait(HEARTBEAT_INTERVAL):
            try:
                self._heartbeat_once()
            except Exception:
                log.exception("node heartbeat failed")

    # --- pod cache and scheduling of reconciles -----------------------------------------------
    def _key(self, pod: JSON) -> str:
        meta = pod["metadata"]
        return f"{meta['namespace']}/{meta['name']}"

    def _ours(self, pod: JSON) -> bool:
        return (pod.get("spec") or {}).get("nodeName") in self.nodes

    def _enqueue(self, key: str, delay: float = 0.0) -> None:
        with self._lock:
            due = time.monotonic() + delay
            if key not in self._due or self._due[key] > due:
                self._due[key] = due
            self._lock.notify()

    def _observe(self, event_type: str, pod: JSON) -> None:
        key = self._key(pod)
        with self._lock:
            if event_type == "DELETED" or not self._ours(pod):
                old = self._pods.pop(key, None)
                if old is not None:
                    self._forget(old)
                self._due.pop(key, None)
                return
            self._pods[key] = pod
            ip = (pod.get("status") or {}).get("podIP")
            if ip:
                self._used_ips.add(ip)
        self._enqueue(key)

    def _forget(self, pod: JSON) -> None:
        uid = pod["metadata"].get("uid", "")
        rec = self._records.pop(uid, None)
        if rec is not None:
            self._used_ips.discard(rec.ip)

    def _allocate_ip(self) -> str:
        with self._lock:
            for _ in range(254 * 250):
                k = self._ip_counter
                self._ip_counter = (self._ip_counter + 1) % (254 * 250)
                ip = f"10.244.{k // 254}.{k % 254 + 1}"
                if ip not in self._used_ips:
                    self._used_ips.add(ip)
                    return ip
        raise RuntimeError("cannot allocate a pod IP: 10.244.0.0/16 is exhausted")

    def relist(self) -> str:
        """Replace the pod cache with a fresh list and return its resourceVersion."""
        listing = self.kube.get("/api/v1/pods")
        pods = [p for p in listing.get("items") or [] if self._ours(p)]
        with self._lock:
            fresh = {self._key(p): p for p in pods}
            for key, old in list(self._pods.items()):
                if key not in fresh or fresh[key]["metadata"].get("uid") != old["metadata"].get("uid"):
                    self._forget(old)
                    self._due.pop(key, None)
            self._pods = fresh
            for p in pods:
                ip = (p.get("status") or {}).get("podIP")
                if ip:
                    self._used_ips.add(ip)
        for key in fresh:
            self._enqueue(key)
        log.info("listed %d pods on simulated nodes", len(pods))
        return str(listing["metadata"]["resourceVersion"])

    def watch_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                rv = self.relist()
                while not self.stop_event.is_set():
                    gone = False
                    for event in self.kube.watch("/api/v1/pods", rv, timeout_seconds=240):
                        etype, obj = event.get("type"), event.get("object") or {}
                        if etype == "ERROR":
                            if obj.get("code") == 410:
                                log.info("watch expired (410 Gone); re-listing")
                                gone = True
                                break
                            raise KubeError(int(obj.get("code") or 0), f"watch pods: {obj.get('message')}")
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if etype in ("ADDED", "MODIFIED", "DELETED"):
                            self._observe(etype, obj)
                        if self.stop_event.is_set():
                            return
                    if gone:
                        break
            except Exception as exc:
                log.warning("pod watch failed, re-listing in 2s: %s", exc)
                self.stop_event.wait(2.0)

    def worker_loop(self) -> None:
        while not self.stop_event.is_set():
            with self._lock:
                now = time.monotonic()
                ready = [k for k, t in self._due.items() if t <= now]
                if not ready:
                    wait = min(self._due.values(), default=now + 1.0) - now
                    self._lock.wait(timeout=min(max(wait, 0.01), 1.0))
                    continue
                for k in ready:
                    del self._due[k]
                pods = [(k, self._pods.get(k)) for k in ready]
            for key, pod in pods:
                if pod is None:
                    continue
                try:
                    recheck = self.reconcile(pod)
                except KubeError as exc:
                    if exc.status == 404:
                        continue
                    log.warning("reconciling pod %s failed, retrying: %s", key, exc)
                    recheck = 1.0
                except Exception:
                    log.exception("reconciling pod %s failed, retrying", key)
                    recheck = 2.0
                if recheck is not None:
                    self._enqueue(key, recheck)

    # --- pod reconcile --------------------------------------------------------------------------
    def _record_for(self, pod: JSON) -> PodRecord:
        uid = pod["metadata"]["uid"]
        rec = self._records.get(uid)
        if rec is not None:
            return rec
        status = pod.get("status") or {}
        now = time.monotonic()
        ip = status.get("podIP") or self._allocate_ip()
        rec = PodRecord(uid=uid, first_seen=now, start_time=status.get("startTime") or now_rfc3339(), ip=ip)
        statuses = status.get("containerStatuses") or []
        if status.get("phase") == "Running" and statuses and any(cs.get("started") for cs in statuses):
            # Adopted after a kubelet restart: keep restart counts and start times.
            rec.started_at = now - COMPLETE_AFTER
            rec.restarts = max(int(cs.get("restartCount") or 0) for cs in statuses)
            running = (statuses[0].get("state") or {}).get("running") or {}
            rec.started_wall = str(running.get("startedAt") or rec.start_time)
            if rec.restarts:
                rec.crash_started_wall = rec.started_wall
                terminated = (statuses[0].get("lastState") or {}).get("terminated") or {}
                rec.last_crash_wall = str(terminated.get("finishedAt") or "")
                rec.prev_started_wall = str(terminated.get("startedAt") or rec.start_time)
        self._records[uid] = rec
        return rec

    def _missing(self, pod: JSON) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        fetched: dict[tuple[str, str], JSON | None] = {}
        missing: dict[str, str] = {}
        for container, refs in referenced_objects(pod.get("spec") or {}).items():
            for ref in refs:
                if (ref.kind, ref.name) not in fetched:
                    plural = "configmaps" if ref.kind == "configmap" else "secrets"
                    try:
                        fetched[(ref.kind, ref.name)] = self.kube.get(
                            f"/api/v1/namespaces/{namespace}/{plural}/{ref.name}"
                        )
                    except KubeError as exc:
                        if exc.status != 404:
                            raise
                        fetched[(ref.kind, ref.name)] = None
                message = missing_message(ref, namespace, fetched[(ref.kind, ref.name)])
                if message:
                    missing[container] = message
                    break
        return missing

    def reconcile(self, pod: JSON) -> float | None:
        """Bring one pod's status in line with the simulation; return seconds until next look."""
        meta = pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        if meta.get("deletionTimestamp"):
            try:
                self.kube.delete(
                    path, {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}, gracePeriodSeconds=0
                )
                log.info("finalized deleted pod %s/%s", namespace, name)
            except KubeError as exc:
                if exc.status not in (404, 409):
                    raise
            return None
        current = pod.get("status") or {}
        if current.get("phase") in ("Succeeded", "Failed"):
            return None
        rec = self._record_for(pod)
        missing = self._missing(pod) if rec.started_at is None else {}
        host_ip = node_host_ip(self.nodes[pod["spec"]["nodeName"]])
        view = compute_status(pod, rec, time.monotonic(), missing, host_ip)
        desired = view.status
        desired["conditions"] = stamp_conditions(desired["conditions"], current.get("conditions") or [], now_rfc3339())
        if normalize({k: current.get(k) for k in desired}) != normalize(desired):
            updated = self.kube.patch(f"{path}/status", {"status": desired})
            log.info("pod %s/%s -> %s", namespace, name, _summary(desired))
            with self._lock:
                key = f"{namespace}/{name}"
                if key in self._pods and self._pods[key]["metadata"].get("uid") == meta["uid"]:
                    self._pods[key] = updated
        return view.recheck

    def run(self) -> None:
        self.register_nodes()
        threads = [
            threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True),
            threading.Thread(target=self.worker_loop, name="worker", daemon=True),
        ]
        for t in threads:
            t.start()
        self.watch_loop()


def _summary(status: JSON) -> str:
    parts = [status.get("phase", "?")]
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        detail = next(iter(state), "?")
        reason = (state.get(detail) or {}).get("reason", "")
        parts.append(
            f"{cs['name']}={detail}{'/' + reason if reason else ''} ready={cs.get('ready')} "
            f"restarts={cs.get('restartCount')}"
        )
    return " ".join(parts)


def wait_for_apiserver(kube: Kube, timeout: float) -> None:
    """Block until the apiserver answers, because the kubelet is started alongside it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            kube.get("/api/v1/namespaces/kube-node-lease")
            return
        except KubeError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"apiserver not reachable after {timeout:.0f}s: {exc}") from exc
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.kubelet", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--context", default=None)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--node-prefix", default="sim-node")
    parser.add_argument(
        "--wait-timeout", type=float, default=120.0, help="seconds to wait for the apiserver at startup"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(threadName)s %(message)s"
    )
    kube = Kube.from_kubeconfig(args.kubeconfig, args.context)
    kubelet = SimKubelet(kube, [f"{args.node_prefix}-{i}" for i in range(1, args.nodes + 1)])

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        kubelet.stop_event.set()
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    wait_for_apiserver(kube, args.wait_timeout)
    kubelet.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
