"""Snapshot: live objects found by identity, listed per kind for many releases, read one by one for few.

Both ways must find exactly the same objects; only the requests differ. A run that plans one app must
not list every Secret of a busy namespace (helm's release storage included) to find its five objects.
"""

from __future__ import annotations

from typing import Any

import pytest

from promote.cluster import Cluster
from promote.devcluster.kube import Kube
from promote.snapshot import Snapshot


def _configmap(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": name}}


class Recording(Cluster):
    """The real client, remembering which paths it asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, str]] = []

    def request(self, method: str, path: str, **kw: Any) -> Any:
        self.asked.append((method, path))
        return super().request(method, path, **kw)


@pytest.mark.parametrize("sparse", [False, True])
def test_find_returns_the_live_objects_asked_for(kube: Kube, namespace: str, sparse: bool) -> None:
    for name in ("a", "b", "c"):
        kube.post(f"/api/v1/namespaces/{namespace}/configmaps", _configmap(namespace, name))
    cluster = Recording()
    snap = Snapshot(cluster, sparse=[namespace] if sparse else [])
    wanted = {("v1", "ConfigMap", namespace, "a"), ("v1", "ConfigMap", namespace, "gone")}

    found = snap.find(wanted)

    assert set(found) == {("v1", "ConfigMap", namespace, "a")}
    assert found["v1", "ConfigMap", namespace, "a"]["data"] == {"k": "a"}
    assert found["v1", "ConfigMap", namespace, "a"]["kind"] == "ConfigMap"
    paths = [p for m, p in cluster.asked if m == "GET" and "/configmaps" in p]
    if sparse:
        assert sorted(paths) == [
            f"/api/v1/namespaces/{namespace}/configmaps/a",
            f"/api/v1/namespaces/{namespace}/configmaps/gone",
        ]
    else:
        assert paths == [f"/api/v1/namespaces/{namespace}/configmaps"]
    # Asked again, nothing is read twice.
    before = len(cluster.asked)
    assert snap.find(wanted) == found
    assert len(cluster.asked) == before
