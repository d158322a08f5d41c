"""The harness's Kube adapter over promote's Cluster, against the real dev cluster.

The cluster suite relies on what is checked here: KubeError statuses (0 when unreachable), error text
with the HTTP status, query values spelled as the API wants them, and watches that end with the server
and leave the connection pool usable.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from devcluster.kube import Kube, KubeError


def _configmap(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def test_query_values_reach_the_server(kube: Kube, namespace: str) -> None:
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(configmaps, _configmap("plain"))
    kube.post(configmaps, {**_configmap("labelled"), "metadata": {"name": "labelled", "labels": {"tier": "x"}}})

    # dryRun=All must reach the server as such: the object survives a dry-run delete. (Without a body:
    # the apiserver reads DELETE options from a body when there is one, and ignores the query then.)
    assert kube.delete(f"{configmaps}/plain", dryRun="All")["details"]["name"] == "plain"
    assert kube.get(f"{configmaps}/plain")["data"] == {"k": "v"}

    # A selector and a number; None leaves a parameter out.
    picked = kube.get(configmaps, labelSelector="tier=x", fieldSelector=None)
    assert [o["metadata"]["name"] for o in picked["items"]] == ["labelled"]
    page = kube.get(configmaps, limit=1)
    assert len(page["items"]) == 1 and page["metadata"].get("continue")


def test_an_error_status_is_a_kube_error_that_names_it(kube: Kube) -> None:
    with pytest.raises(KubeError) as caught:
        kube.get("/api/v1/namespaces/promote-no-such-namespace")

    assert (caught.value.status, caught.value.reason) == (404, "NotFound")
    assert str(caught.value) == (
        'GET /api/v1/namespaces/promote-no-such-namespace: 404 namespaces "promote-no-such-namespace" not found'
    )


def test_an_unreachable_server_is_status_zero(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "kubeconfig"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "gone", "user": {"token": "t"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone"}}],
        "current-context": "gone",
    }
    path.write_text(yaml.safe_dump(doc))
    kube = Kube.from_kubeconfig(path)

    with pytest.raises(KubeError) as caught:
        kube.get("/api/v1/nodes")
    assert caught.value.status == 0


def test_a_watch_ends_with_the_server_and_leaves_the_pool_usable(kube: Kube, namespace: str) -> None:
    # The server ends a watch at timeoutSeconds: the stream ends too, without an error. (Whether a watch
    # from an old resourceVersion gets 410 Gone depends on etcd's compaction, so it is not asked here.)
    # The controller-manager adds the CA bundle to a new namespace shortly after: wait for it, so that
    # nothing but bookmarks can arrive.
    deadline = time.monotonic() + 30
    while not kube.get(f"/api/v1/namespaces/{namespace}/configmaps", fieldSelector="metadata.name=kube-root-ca.crt")[
        "items"
    ]:
        assert time.monotonic() < deadline, "the CA bundle ConfigMap never appeared"
        time.sleep(0.1)
    current = kube.get(f"/api/v1/namespaces/{namespace}/configmaps")["metadata"]["resourceVersion"]
    quiet = [e for e in kube.watch(f"/api/v1/namespaces/{namespace}/configmaps", current, timeout_seconds=1)]
    assert all(e["type"] == "BOOKMARK" for e in quiet)

    current = kube.get(f"/api/v1/namespaces/{namespace}/configmaps")["metadata"]["resourceVersion"]
    stream = kube.watch(f"/api/v1/namespaces/{namespace}/configmaps", current, timeout_seconds=30)
    kube.post(f"/api/v1/namespaces/{namespace}/configmaps", _configmap("watched"))
    first = next(e for e in stream if e["type"] != "BOOKMARK")
    stream.close()  # left early, as the kubelet does on 410: the next request still gets its own answer
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "watched")
    assert kube.get(f"/api/v1/namespaces/{namespace}/configmaps/watched")["data"] == {"k": "v"}


def test_the_product_watch_is_the_same_stream(kube: Kube, namespace: str) -> None:
    kube.post(f"/api/v1/namespaces/{namespace}/configmaps", _configmap("seen"))
    stop = threading.Event()
    seen = []
    for event in kube.cluster.watch("v1", "ConfigMap", namespace, timeout=30, stop=stop):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if len(seen) == 2:
            break

    # Without a resourceVersion, a watch starts with the objects that exist (the CA bundle and ours).
    assert sorted(seen) == [("ADDED", "kube-root-ca.crt"), ("ADDED", "seen")]
