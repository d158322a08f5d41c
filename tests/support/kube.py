"""The session cluster as the tests see it, through the API (devcluster's Kube) and kubectl rather than
through promote: live objects and pods, edits as a person or a controller makes them, throwaway
namespaces, and snapshots of what a release owns.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

from devcluster.kube import Kube, KubeError
from tests.support.repo import PROD_RELEASE
from tests.support.wait import wait_for


def kubectl(*args: str) -> str:
    """Run kubectl against the session cluster (KUBECONFIG); its stdout."""
    out = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"kubectl {' '.join(args)} failed: {out.stderr}"
    return out.stdout


def b64(text: str) -> str:
    """Base64 of a UTF-8 string, as Secret data holds it."""
    return base64.b64encode(text.encode()).decode()


# --- live objects --------------------------------------------------------------------------------


def get(kube: Kube, path: str) -> dict[str, Any] | None:
    """A live object, or None when it does not exist."""
    try:
        obj: dict[str, Any] = kube.get(path)
    except KubeError as e:
        if e.status == 404:
            return None
        raise
    return obj


def namespace_exists(kube: Kube, name: str) -> bool:
    """True when the namespace exists (in any phase)."""
    return get(kube, f"/api/v1/namespaces/{name}") is not None


def deployment(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """A live Deployment, or None."""
    return get(kube, f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")


def lease(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """A live Lease, or None."""
    return get(kube, f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")


def available(dep: Mapping[str, Any] | None) -> tuple[int, int]:
    """(available replicas, wanted replicas) of a Deployment, the way `kubectl get` shows READY."""
    assert dep is not None, "the Deployment does not exist"
    return int(dep.get("status", {}).get("availableReplicas", 0)), int(dep["spec"]["replicas"])


def image_of(dep: Mapping[str, Any] | None) -> str:
    """The image of the Deployment's only container."""
    assert dep is not None, "the Deployment does not exist"
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return str(container["image"])


def patch_as(kube: Kube, path: str, patch: Mapping[str, Any], manager: str) -> dict[str, Any]:
    """A merge patch under an explicit field manager, as a controller (not a person) writes."""
    obj: dict[str, Any] = kube.request(
        "PATCH",
        path,
        body=dict(patch),
        content_type="application/merge-patch+json",
        query={"fieldManager": manager},
    )
    return obj


def managers(obj: Mapping[str, Any]) -> set[str]:
    """Every field manager recorded on a live object."""
    return {str(e.get("manager")) for e in (obj.get("metadata") or {}).get("managedFields") or []}


# --- pods ----------------------------------------------------------------------------------------


def pods(kube: Kube, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    """The pods of a namespace, all of them or those matching a label selector."""
    query = {"labelSelector": selector} if selector else {}
    items: list[dict[str, Any]] = kube.get(f"/api/v1/namespaces/{namespace}/pods", **query).get("items") or []
    return items


def release_pods(kube: Kube, namespace: str, release: str = PROD_RELEASE) -> list[dict[str, Any]]:
    """The live pods of a release's Deployment (by its selector labels): no hook pods, none being deleted."""
    return [
        p
        for p in pods(kube, namespace, f"app.kubernetes.io/instance={release}")
        if not p["metadata"].get("deletionTimestamp") and not _is_hook(p)
    ]


def _is_hook(pod: Mapping[str, Any]) -> bool:
    return "helm.sh/hook" in ((pod.get("metadata") or {}).get("annotations") or {})


def restarts(pod: Mapping[str, Any]) -> int:
    """Total container restarts of a pod."""
    return sum(int(c.get("restartCount", 0)) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def delete_a_pod(kube: Kube, namespace: str) -> tuple[str, str]:
    """Delete one pod of the prod Deployment and wait for its replacement: (deleted, replacement) names."""
    before = {p["metadata"]["name"] for p in release_pods(kube, namespace)}
    victim = sorted(before)[0]
    kube.delete(f"/api/v1/namespaces/{namespace}/pods/{victim}")

    def replacement() -> str | None:
        now = {p["metadata"]["name"] for p in release_pods(kube, namespace)}
        new = now - before
        return next(iter(new)) if new and victim not in now else None

    found: str = wait_for(f"a pod replacing {victim}", replacement)
    return victim, found


# --- namespaces ----------------------------------------------------------------------------------


def create_namespace(kube: Kube, prefix: str = "t") -> str:
    """A fresh namespace `<prefix>-<8 hex>`, labelled as the tests'."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    kube.post(
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"promote.dev/test": "true"}},
        },
    )
    return name


def delete_namespace(kube: Kube, name: str) -> None:
    """Start deleting a namespace, if it exists."""
    # Deletion finishes in the background; waiting would only slow the suite down.
    with contextlib.suppress(KubeError):
        kube.delete(f"/api/v1/namespaces/{name}", {"propagationPolicy": "Background"})


@contextlib.contextmanager
def namespaces(kube: Kube, count: int) -> Iterator[list[str]]:
    """`count` fresh namespaces for a whole module's scenario, deleted afterwards."""
    names: list[str] = []
    try:
        for _ in range(count):
            names.append(create_namespace(kube))
        yield names
    finally:
        for name in names:
            delete_namespace(kube, name)


# --- what a release owns, live -------------------------------------------------------------------

# The kinds python-app renders (hooks aside), with their REST collections.
KINDS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
}
_SERVER_METADATA = ("resourceVersion", "uid", "selfLink", "creationTimestamp", "generation", "managedFields")
_CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)


def strip_server_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without status and the metadata the apiserver and controllers own."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    md = out.get("metadata", {})
    for k in _SERVER_METADATA:
        md.pop(k, None)
    ann = md.get("annotations") or {}
    for k in _CONTROLLER_ANNOTATIONS:
        ann.pop(k, None)
    return out


def snapshot(kube: Kube, namespace: str, release: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every live object helm manages for `release` in the namespace, server fields stripped."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, path in KINDS.items():
        try:
            items = kube.get(path.format(ns=namespace)).get("items") or []
        except KubeError as e:
            if e.status == 404:
                continue
            raise
        for item in items:
            md = item.get("metadata", {})
            if (md.get("annotations") or {}).get("meta.helm.sh/release-name") == release:
                out[(kind, md["name"])] = strip_server_fields(item)
    return out
