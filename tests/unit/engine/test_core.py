"""The engine core over fake adapters: what reconcile decides, without a cluster or a helm binary.

These are fast checks of the engine's own logic (which objects it compares, when the render cache
proves a release unchanged, what a values error does, that it writes nothing). The real-cluster tests
under tests/cluster exercise the same paths against kube-apiserver and helm; a fake here stands in only
for what these tests do not examine.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from promote.engine import Options, Reconciled, Runtime, Workspace, plan, reconcile
from promote.plan import Action

Ident = tuple[str, str, str, str]
CLUSTER_SCOPED = {"Namespace", "ClusterRole"}


def _ident(obj: dict[str, Any]) -> Ident:
    md = obj["metadata"]
    return obj["apiVersion"], obj["kind"], md.get("namespace") or "", md["name"]


def _merge(doc: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386): all these tests' objects need."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


class FakeCluster:
    """Objects in a dict; reads answer from it, writes must be dry runs (reconcile never writes)."""

    context = "fake"
    local = True
    kubeconfig_option = None

    def __init__(self) -> None:
        self.objects: dict[Ident, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()

    def add(self, obj: dict[str, Any]) -> None:
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("resourceVersion", "1")
        self.objects[_ident(obj)] = obj

    def server_version(self) -> str:
        return "1.36.3"

    def resource(self, api_version: str, kind: str) -> Any:
        return SimpleNamespace(namespaced=kind not in CLUSTER_SCOPED)

    def namespace_exists(self, namespace: str) -> bool:
        self.calls["namespace_exists"] += 1
        return ("v1", "Namespace", "", namespace) in self.objects

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.calls["get"] += 1
        found = self.objects.get((api_version, kind, namespace or "", name))
        return copy.deepcopy(found) if found else None

    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self.calls["list"] += 1
        out = []
        for (av, k, ns, _), obj in self.objects.items():
            if (av, k) == (api_version, kind) and (namespace is None or ns == namespace):
                labels = obj["metadata"].get("labels") or {}
                if all(self._matches(labels, term) for term in (label_selector or "").split(",") if term):
                    out.append(copy.deepcopy(obj))
        return out

    @staticmethod
    def _matches(labels: dict[str, str], term: str) -> bool:
        if "!=" in term:
            key, value = term.split("!=")
            return labels.get(key) != value
        key, value = term.split("=")
        return labels.get(key) == value

    def create(self, obj: dict[str, Any], namespace: str | None, dry_run: bool = False) -> dict[str, Any]:
        assert dry_run, "reconcile must not write"
        self.calls["dry-run create"] += 1
        return copy.deepcopy(obj)

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        dry_run: bool = False,
    ) -> dict[str, Any]:
        assert dry_run, "reconcile must not write"
        self.calls["dry-run patch"] += 1
        live = self.objects[(api_version, kind, namespace or "", name)]
        merged: dict[str, Any] = _merge(live, patch)
        return merged


def config_map(release: str, namespace: str, greeting: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{release}-config", "namespace": namespace},
        "data": {"greeting": greeting},
    }


class FakeHelm:
    """`helm template` of a chart whose only object is a ConfigMap carrying the `greeting` value."""

    def __init__(self) -> None:
        self.renders: list[str] = []

    async def template(
        self, info: Any, *, release: str, namespace: str, values: dict[str, Any], is_upgrade: bool
    ) -> list[dict[str, Any]]:
        self.renders.append(release)
        return [config_map(release, namespace, str(values.get("greeting", "hello")))]


class FakeRuntime(Runtime):
    def helm_version(self) -> str:
        return "3.17.3"


def deployed(cluster: FakeCluster, release: str, namespace: str, greeting: str) -> None:
    """As after `helm install`: the live object and helm's storage Secret of revision 1."""
    cm = config_map(release, namespace, greeting)
    cluster.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    cluster.add(cm)
    doc = {
        "name": release,
        "namespace": namespace,
        "version": 1,
        "info": {"status": "deployed", "description": "Install complete"},
        "chart": {"metadata": {"name": "greeter", "version": "0.1.0"}},
        "manifest": yaml.safe_dump(cm),
    }
    data = base64.b64encode(base64.b64encode(gzip.compress(json.dumps(doc).encode()))).decode()
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"sh.helm.release.v1.{release}.v1",
                "namespace": namespace,
                "labels": {"owner": "helm", "name": release, "status": "deployed", "version": "1"},
            },
            "data": {"release": data},
        }
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An app with two environments and a chart that renders the same on any cluster."""
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    chart = tmp_path / "charts" / "greeter"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: greeter\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "cm.yaml").write_text("# rendered by the fake helm in these tests\n")
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "prod.json").write_text(
        json.dumps({"properties": {"greeting": {"type": "string", "minLength": 3}}})
    )
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "greeter.yaml").write_text(
        "app: greeter\n"
        "chart: ../charts/greeter\n"
        "environments:\n"
        "  - {name: default, namespace: dev}\n"
        "  - {name: prod, namespace: prod, policy: ../schemas/prod.json, values: {greeting: hi there}}\n"
    )
    return tmp_path


def run(repo: Path, cluster: FakeCluster, helm: FakeHelm, **kw: Any) -> list[Reconciled]:
    runtime = FakeRuntime(kube=lambda *_: cluster, helm=lambda **_: helm)  # type: ignore[arg-type]
    with Workspace(Options(root=repo, **kw)) as ws:
        targets = ws.targets(ws.defs.chain_to("prod"))
        return reconcile(targets, runtime, violations=ws.validate(targets))


def test_a_first_install_creates_namespace_and_objects_and_writes_nothing(repo: Path) -> None:
    cluster, helm = FakeCluster(), FakeHelm()
    done = run(repo, cluster, helm)
    assert [r.target.env.name for r in done] == ["default", "prod"]
    for r, ns in zip(done, ("dev", "prod"), strict=True):
        assert [(c.action, c.kind, c.name) for c in r.plan.changes] == [
            (Action.CREATE, "Namespace", ns),
            (Action.CREATE, "ConfigMap", "greeter-config"),
        ]
        assert r.history is not None and r.history.deployed is None
        assert r.rendered == [config_map("greeter", ns, "hello" if ns == "dev" else "hi there")]
    assert helm.renders == ["greeter", "greeter"]
    assert cluster.calls["dry-run patch"] == 0  # nothing live to patch; no namespace, so no dry-run create


def test_a_deployed_release_is_proven_unchanged_from_the_render_cache(repo: Path) -> None:
    cluster = FakeCluster()
    deployed(cluster, "greeter", "dev", "hello")
    deployed(cluster, "greeter", "prod", "hi there")
    first = run(repo, cluster, FakeHelm())
    assert [c.action for r in first for c in r.plan.changes] == [Action.UNCHANGED, Action.UNCHANGED]
    helm = FakeHelm()
    second = run(repo, cluster, helm)
    assert helm.renders == []  # both proven from the cache: no helm at all
    assert [c.action for r in second for c in r.plan.changes] == [Action.UNCHANGED, Action.UNCHANGED]
    assert [r.rendered for r in second] == [r.rendered for r in first]


def test_a_live_edit_is_a_field_change_and_the_cache_does_not_hide_it(repo: Path) -> None:
    cluster = FakeCluster()
    deployed(cluster, "greeter", "dev", "hello")
    deployed(cluster, "greeter", "prod", "hi there")
    run(repo, cluster, FakeHelm())  # fills the render cache
    cluster.objects[("v1", "ConfigMap", "prod", "greeter-config")]["data"]["greeting"] = "edited by hand"
    helm = FakeHelm()
    dev, prod = run(repo, cluster, helm)
    assert helm.renders == ["greeter"]  # dev proven from the cache; prod rendered for real
    assert [c.action for c in dev.plan.changes] == [Action.UNCHANGED]
    (change,) = prod.plan.changes
    assert change.action == Action.UPDATE
    assert [(f.path, f.before, f.after) for f in change.fields] == [("data.greeting", "edited by hand", "hi there")]


def test_objects_mode_dry_runs_everything_and_returns_both_sides(repo: Path) -> None:
    cluster = FakeCluster()
    deployed(cluster, "greeter", "dev", "hello")
    deployed(cluster, "greeter", "prod", "hi there")
    run(repo, cluster, FakeHelm())
    helm = FakeHelm()
    runtime = FakeRuntime(kube=lambda *_: cluster, helm=lambda **_: helm)  # type: ignore[arg-type]
    with Workspace(Options(root=repo)) as ws:
        done = reconcile(ws.targets(("prod",)), runtime, objects=True)
    assert helm.renders == ["greeter"]  # the cache proves nothing in this mode
    ((change, live, predicted),) = done[0].objects
    assert change.action == Action.UNCHANGED
    assert live is not None and predicted is not None
    assert live["data"] == predicted["data"] == {"greeting": "hi there"}


def test_a_values_violation_is_reported_and_that_target_is_not_rendered(repo: Path) -> None:
    cluster, helm = FakeCluster(), FakeHelm()
    dev, prod = run(repo, cluster, helm, set_values=("greeting=yo",))
    assert helm.renders == ["greeter"]  # only default: prod's policy wants at least 3 characters
    assert dev.plan.errors == ()
    assert prod.rendered is None and prod.history is None and prod.plan.changes == ()
    assert len(prod.plan.errors) == 1 and "greeting" in prod.plan.errors[0]


def test_the_runtime_connects_once_per_context_and_plan_uses_it(repo: Path) -> None:
    cluster, helm = FakeCluster(), FakeHelm()
    made: list[str | None] = []

    def kube(context: str | None, kubeconfig: str | None, qps: float) -> FakeCluster:
        made.append(context)
        return cluster

    runtime = FakeRuntime(kube=kube, helm=lambda **_: helm)  # type: ignore[arg-type]
    result = plan(Options(root=repo), "prod", runtime)
    assert made == [None]  # two environments on one (current) context: one client
    assert [e.name for e in result.environments] == ["default", "prod"]
    assert result.revision == "untracked"  # not a Git repository
    assert all(r.has_changes for e in result.environments for r in e.releases)
