"""The dev cluster against a real apiserver: rollouts, helm hooks, fault injection, lifecycle."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devcluster import ClusterHandle, cluster_status, restart_kubelet, start_cluster, stop_cluster
from devcluster.cluster import read_state, stray_pids
from devcluster.kube import Kube
from tests.support.helm import helm_run
from tests.support.kube import pods
from tests.support.paths import TESTDATA
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster

CHART = TESTDATA / "charts" / "hooked"
IMAGE = "registry.k8s.io/pause:3.2"


def deployment(
    name: str, replicas: int = 1, annotations: dict[str, str] | None = None, container: dict[str, Any] | None = None
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations or {}},
                "spec": {"containers": [container or {"name": "app", "image": IMAGE}]},
            },
        },
    }


def test_three_replica_deployment_becomes_available(kube: Kube, namespace: str) -> None:
    kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("web", 3))

    def available() -> int:
        dep = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
        return int(dep.get("status", {}).get("availableReplicas") or 0) == 3

    wait_for("3/3 available", available, timeout=30)
    running = pods(kube, namespace, "app=web")
    assert [p["status"]["phase"] for p in running] == ["Running"] * 3
    ips = {p["status"]["podIP"] for p in running}
    assert len(ips) == 3, "every pod gets its own IP"
    assert all(p["spec"]["nodeName"].startswith("sim-node-") for p in running)


def test_kubectl_sees_three_ready_nodes(dev_cluster: ClusterHandle) -> None:
    out = subprocess.run(
        ["kubectl", "get", "nodes", "--no-headers"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "KUBECONFIG": str(dev_cluster.kubeconfig)},
    )
    rows = [line.split() for line in out.stdout.splitlines()]
    assert len(rows) == 3 and all(r[1] == "Ready" for r in rows), out.stdout


def test_the_nodes_hold_the_pods_of_a_thousand_releases(kube: Kube) -> None:
    # bench/run.py --sizes 100,500,1000 runs about 1,750 pods, and 3,500 with its raw-helm copies.
    nodes = kube.get("/api/v1/nodes")["items"]
    assert sum(int(n["status"]["allocatable"]["pods"]) for n in nodes) >= 3500


def test_helm_install_with_pre_install_hook_completes(kube: Kube, namespace: str) -> None:
    result = helm_run(
        "install", "hooked", str(CHART), "-n", namespace, "--wait", "--timeout", "90s", "--set", "replicas=2"
    )
    assert result.returncode == 0, result.stderr
    status = helm_run("status", "hooked", "-n", namespace, "-o", "json")
    assert '"status":"deployed"' in status.stdout.replace(" ", "")
    # hook-succeeded: the hook pod was deleted once it completed.
    names = [p["metadata"]["name"] for p in pods(kube, namespace)]
    assert "hooked-pre-install" not in names
    assert len([n for n in names if n.startswith("hooked-")]) == 2


def test_failing_hook_pod_fails_helm_install(kube: Kube, namespace: str) -> None:
    result = helm_run(
        "install",
        "hooked",
        str(CHART),
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "60s",
        "--set-string",
        r"hook.annotations.sim\.promote\.dev/fail=true",
    )
    assert result.returncode != 0
    assert "pre-install" in result.stderr
    hook = kube.get(f"/api/v1/namespaces/{namespace}/pods/hooked-pre-install")
    assert hook["status"]["phase"] == "Failed"
    assert hook["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


def test_helm_hook_in_namespace_created_by_helm(kube: Kube, make_namespace: Callable[[], str]) -> None:
    """ServiceAccount admission must not race with a namespace created a moment before the hook pod."""
    ns = f"helm-created-{os.urandom(4).hex()}"
    try:
        result = helm_run("install", "hooked", str(CHART), "-n", ns, "--create-namespace", "--wait", "--timeout", "60s")
        assert result.returncode == 0, result.stderr
    finally:
        kube.delete(f"/api/v1/namespaces/{ns}", {"propagationPolicy": "Background"})


def test_missing_configmap_gives_create_container_config_error(kube: Kube, namespace: str) -> None:
    container = {"name": "app", "image": IMAGE, "envFrom": [{"configMapRef": {"name": "settings"}}]}
    kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("cfg", container=container))

    def waiting_reason() -> dict[str, Any] | None:
        for pod in pods(kube, namespace, "app=cfg"):
            for cs in pod.get("status", {}).get("containerStatuses") or []:
                waiting = cs.get("state", {}).get("waiting")
                if waiting and waiting.get("reason") == "CreateContainerConfigError":
                    return dict(waiting)
        return None

    waiting = wait_for("CreateContainerConfigError", waiting_reason, timeout=30)
    assert waiting["message"] == 'configmap "settings" not found'
    assert pods(kube, namespace, "app=cfg")[0]["status"]["phase"] == "Pending"

    # Like the real kubelet, the pod starts once the ConfigMap appears.
    kube.post(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "b"}},
    )
    wait_for(
        "pod Running after ConfigMap created",
        lambda: all(p["status"].get("phase") == "Running" for p in pods(kube, namespace, "app=cfg")),
        15,
    )


def test_crash_loop_annotation_increments_restart_count(kube: Kube, namespace: str) -> None:
    kube.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        deployment("flaky", annotations={"sim.promote.dev/crash-loop": "true"}),
    )

    def restarts() -> int:
        found = pods(kube, namespace, "app=flaky")
        statuses = found[0].get("status", {}).get("containerStatuses") if found else None
        return int(statuses[0]["restartCount"]) if statuses else 0

    wait_for("restartCount >= 2", lambda: restarts() >= 2, timeout=20)
    cs = pods(kube, namespace, "app=flaky")[0]["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 1


def test_fail_annotation_on_long_running_pod_crash_loops_never_ready(kube: Kube, namespace: str) -> None:
    kube.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        deployment("broken", annotations={"sim.promote.dev/fail": "true"}),
    )

    def backoff() -> dict[str, Any] | None:
        for pod in pods(kube, namespace, "app=broken"):
            for cs in pod.get("status", {}).get("containerStatuses") or []:
                if cs.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
                    return dict(cs)
        return None

    cs = wait_for("CrashLoopBackOff", backoff, timeout=20)
    assert cs["ready"] is False and cs["restartCount"] >= 1


def test_never_ready_annotation(kube: Kube, namespace: str) -> None:
    kube.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        deployment("lazy", annotations={"sim.promote.dev/never-ready": "true"}),
    )
    pod = wait_for(
        "pod Running",
        lambda: next((p for p in pods(kube, namespace, "app=lazy") if p["status"].get("phase") == "Running"), None),
        timeout=30,
    )
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Ready"] == "False"
    assert pod["status"]["containerStatuses"][0]["started"] is True
    time.sleep(2)
    dep = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/lazy")
    assert not dep.get("status", {}).get("availableReplicas")


def test_delay_annotation_postpones_start(kube: Kube, namespace: str) -> None:
    kube.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        deployment("slow", annotations={"sim.promote.dev/delay": "4s"}),
    )
    pod = wait_for(
        "pod bound",
        lambda: next((p for p in pods(kube, namespace, "app=slow") if p["spec"].get("nodeName")), None),
        timeout=30,
    )
    created = time.monotonic()
    time.sleep(1.5)
    assert pods(kube, namespace, "app=slow")[0]["status"].get("phase") == "Pending"
    wait_for("pod Running", lambda: pods(kube, namespace, "app=slow")[0]["status"].get("phase") == "Running", 15)
    assert time.monotonic() - created >= 2.0, pod["metadata"]["name"]


def test_kubelet_restart_keeps_pods_and_nodes(dev_cluster: ClusterHandle, kube: Kube, namespace: str) -> None:
    kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("steady", 2))
    wait_for(
        "2 pods Running",
        lambda: (
            [p for p in pods(kube, namespace, "app=steady") if p["status"].get("phase") == "Running"]
            if len(pods(kube, namespace, "app=steady")) == 2
            else None
        ),
        timeout=30,
    )
    before = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods(kube, namespace, "app=steady")}
    old_pid = read_state(dev_cluster.state_dir)["pids"]["kubelet"]

    new_pid = restart_kubelet(dev_cluster.state_dir)
    assert new_pid != old_pid
    assert cluster_status(dev_cluster.state_dir)["kubelet"]

    # A pod created after the restart is served by the new kubelet, with a fresh IP.
    kube.post(
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "after"},
            "spec": {"containers": [{"name": "app", "image": IMAGE}]},
        },
    )
    after = wait_for(
        "new pod Running",
        lambda: (lambda p: p if p["status"].get("phase") == "Running" else None)(
            kube.get(f"/api/v1/namespaces/{namespace}/pods/after")
        ),
        timeout=30,
    )
    assert after["status"]["podIP"] not in before.values()

    time.sleep(1)
    now = {p["metadata"]["name"]: p for p in pods(kube, namespace, "app=steady")}
    assert {n: p["status"]["podIP"] for n, p in now.items()} == before
    assert all(p["status"]["phase"] == "Running" for p in now.values())
    assert all(p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in now.values())
    nodes = kube.get("/api/v1/nodes")["items"]
    assert len(nodes) == 3
    for node in nodes:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert not [t for t in node["spec"].get("taints") or [] if "unreachable" in t["key"]]


def test_second_cluster_side_by_side_and_down_leaves_no_process(dev_cluster: ClusterHandle, tmp_path: Path) -> None:
    state_dir = tmp_path / "prod"
    handle = start_cluster(state_dir, "prod")
    try:
        pids = [int(p) for p in read_state(handle.state_dir)["pids"].values()]
        assert len(pids) == 5 and all(cluster_status(handle.state_dir).values())
        assert handle.kubeconfig.read_text().count("prod") >= 3

        merged = f"{dev_cluster.kubeconfig}{os.pathsep}{handle.kubeconfig}"
        env = {**os.environ, "KUBECONFIG": merged}
        for context in (dev_cluster.context, "prod"):
            out = subprocess.run(
                ["kubectl", "--context", context, "get", "nodes", "--no-headers"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
                env=env,
            )
            assert len(out.stdout.splitlines()) == 3
        assert dev_cluster.api_url != handle.api_url
    finally:
        stop_cluster(state_dir)

    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert stray_pids(handle.state_dir) == []
    lingering = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(handle.state_dir) in cmdline:
                lingering.append(entry.name)
    assert lingering == []
    assert not any(cluster_status(handle.state_dir).values())
