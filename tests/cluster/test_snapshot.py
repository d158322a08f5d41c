"""Snapshot: live objects found by identity, listed per kind for many releases, read one by one for few.

Both ways must find exactly the same objects, with no more requests; only what is read differs. A run
that plans one app must not list every Secret of a busy namespace (helm's release storage included) to
find its one Secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devcluster.kube import Kube
from promote import engine
from promote.cluster import Cluster
from promote.engine.workspace import Options
from promote.plan import Action
from promote.snapshot import Snapshot
from tests.support.helm import helm_apply
from tests.support.repo import make_repo


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
    kube.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "sa"}})
    cluster = Recording()
    snap = Snapshot(cluster, sparse=[namespace] if sparse else [])
    wanted = {
        ("v1", "ConfigMap", namespace, "a"),
        ("v1", "ConfigMap", namespace, "gone"),
        ("v1", "ServiceAccount", namespace, "sa"),
    }

    found = snap.find(wanted)

    assert set(found) == {("v1", "ConfigMap", namespace, "a"), ("v1", "ServiceAccount", namespace, "sa")}
    assert found["v1", "ConfigMap", namespace, "a"]["data"] == {"k": "a"}
    assert found["v1", "ConfigMap", namespace, "a"]["kind"] == "ConfigMap"
    assert found["v1", "ServiceAccount", namespace, "sa"]["kind"] == "ServiceAccount"
    paths = sorted(p for m, p in cluster.asked if m == "GET" and ("/configmaps" in p or "/serviceaccounts" in p))
    # Two ConfigMaps wanted: one list either way. One ServiceAccount: a GET where the namespace is sparse.
    sa = f"/api/v1/namespaces/{namespace}/serviceaccounts" + ("/sa" if sparse else "")
    assert paths == [f"/api/v1/namespaces/{namespace}/configmaps", sa]
    # Asked again, nothing is read twice.
    before = len(cluster.asked)
    assert snap.find(wanted) == found
    assert len(cluster.asked) == before


def test_a_plan_of_one_app_reads_its_objects_without_listing_the_namespace(
    tmp_path: Path, two_namespaces: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One release per namespace: each kind it has one object of is read by name, nothing is listed
    # whole (helm's release Secrets are listed by their labels, as before).
    repo = make_repo(tmp_path, *two_namespaces)
    helm_apply(repo, "default", "prod")
    asked: list[tuple[str, str, bool]] = []
    real = Cluster.request

    def request(self: Cluster, method: str, path: str, **kw: Any) -> Any:
        asked.append((method, path, bool(kw.get("query"))))
        return real(self, method, path, **kw)

    monkeypatch.setattr(Cluster, "request", request)
    plan = engine.plan(Options(root=repo), "prod")

    assert [c.action for e in plan.environments for r in e.releases for c in r.changes if not c.hook] == [
        Action.UNCHANGED
    ] * sum(1 for e in plan.environments for r in e.releases for c in r.changes if not c.hook)
    for ns in two_namespaces:
        whole = [p for m, p, q in asked if m == "GET" and p.startswith(f"/api/v1/namespaces/{ns}/") and not q]
        whole += [p for m, p, q in asked if m == "GET" and p.startswith(f"/apis/apps/v1/namespaces/{ns}/") and not q]
        # .../namespaces/NS/KIND/NAME only, never a whole .../namespaces/NS/KIND
        assert whole and all(p.split(f"/namespaces/{ns}/", 1)[1].count("/") == 1 for p in whole), whole
