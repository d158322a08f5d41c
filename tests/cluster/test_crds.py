"""The CRDs of a chart's crds/ folder under an app's `crds` policy (issue 16), on the real cluster: helm itself
creates them on the first install only, never changes one, and never creates one a later chart version adds.
promote makes them live before helm runs: Create (the default) creates missing ones and says that a change to
an existing one is not applied; CreateReplace replaces it; Skip leaves CRDs alone."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.kube import Kube
from tests.support.charts import small_chart
from tests.support.cli import apply, cli, expect, plan_json, release_of
from tests.support.helm import helm_history
from tests.support.repo import commit


def _crd(group: str, plural: str, properties: dict[str, Any]) -> str:
    kind = plural.rstrip("s").capitalize()
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": properties}}}
    doc = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": plural.rstrip("s")},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }
    return yaml.safe_dump(doc)


@pytest.fixture
def group(namespace: str) -> Iterator[str]:
    """An API group of the test's own; its CRDs are deleted afterwards (they are cluster-scoped)."""
    name = f"{namespace}.example.com"
    yield name
    for plural in ("widgets", "gadgets", "gizmos"):
        subprocess.run(
            ["kubectl", "delete", "crd", f"{plural}.{name}", "--ignore-not-found", "--wait=false"],
            capture_output=True,
            timeout=60,
            check=False,
        )


def _repo(tmp_path: Path, namespace: str, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    small_chart(repo, files)
    (repo / "environments").mkdir(parents=True)
    (repo / "environments" / "w.yaml").write_text(
        f"app: w\nchart: ../chart\nenvironments:\n  - {{name: default, namespace: {namespace}}}\n"
    )
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    commit(repo, "w")
    return repo


def _crd_changes(plan: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {
        c["name"]: (c["action"], c.get("note"))
        for c in release_of(plan, "default")["changes"]
        if c["kind"] == "CustomResourceDefinition"
    }


def _properties(kube: Kube, name: str) -> set[str]:
    crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return set(schema["properties"]["spec"].get("properties", {}))


def _crd_exists(kube: Kube, name: str) -> bool:
    try:
        kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    except Exception:
        return False
    return True


def test_crds_under_each_policy(tmp_path: Path, kube: Kube, namespace: str, group: str) -> None:
    widget = "apiVersion: GROUP/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 1}\n".replace("GROUP", group)
    repo = _repo(
        tmp_path,
        namespace,
        {"crds/widgets.yaml": _crd(group, "widgets", {"size": {"type": "integer"}}), "templates/widget.yaml": widget},
    )
    assert _crd_changes(plan_json(repo, "default")) == {f"widgets.{group}": ("create", None)}
    apply(repo, "default", code=0)
    assert _properties(kube, f"widgets.{group}") == {"size"}
    assert kube.get(f"/apis/{group}/v1/namespaces/{namespace}/widgets/w1")["spec"] == {"size": 1}
    expect(cli(repo, "plan", "default", "--detailed-exitcode"), 0, "nothing to do after the install")

    # A changed CRD and a CRD the new chart version adds.
    chart = repo / "chart"
    (chart / "crds" / "widgets.yaml").write_text(
        _crd(group, "widgets", {"size": {"type": "integer"}, "color": {"type": "string"}})
    )
    (chart / "crds" / "gadgets.yaml").write_text(_crd(group, "gadgets", {}))
    commit(repo, "widgets get a color; gadgets are new")
    changes = _crd_changes(plan_json(repo, "default"))
    assert changes[f"gadgets.{group}"] == ("create", None)
    action, note = changes[f"widgets.{group}"]
    assert action == "unchanged" and note is not None and "not applied" in note and "CreateReplace" in note
    assert "not applied: crds: Create never changes" in cli(repo, "plan", "default").stdout
    apply(repo, "default", code=0)
    assert _crd_exists(kube, f"gadgets.{group}"), "an upgrade creates a CRD the chart added (helm alone would not)"
    assert _properties(kube, f"widgets.{group}") == {"size"}, "Create leaves an existing CRD as it is"

    # CreateReplace replaces it.
    definition = repo / "environments" / "w.yaml"
    definition.write_text(definition.read_text() + "crds: CreateReplace\n")
    commit(repo, "replace CRDs")
    action, note = _crd_changes(plan_json(repo, "default"))[f"widgets.{group}"]
    assert (action, note) == ("update", None)
    apply(repo, "default", code=0)
    assert _properties(kube, f"widgets.{group}") == {"size", "color"}
    expect(cli(repo, "plan", "default", "--detailed-exitcode"), 0, "nothing to do once replaced")

    # Skip: a new CRD is neither planned nor created.
    definition.write_text(definition.read_text().replace("crds: CreateReplace", "crds: Skip"))
    (chart / "crds" / "gizmos.yaml").write_text(_crd(group, "gizmos", {}))
    commit(repo, "gizmos, but CRDs are skipped")
    assert _crd_changes(plan_json(repo, "default")) == {}
    revisions = len(helm_history(namespace, "w"))
    apply(repo, "default", code=0)
    assert not _crd_exists(kube, f"gizmos.{group}")
    assert len(helm_history(namespace, "w")) == revisions, "nothing else changed, so no new revision"


def test_a_chart_asking_capabilities_api_versions_sees_the_clusters(
    tmp_path: Path, kube: Kube, namespace: str, group: str
) -> None:
    """helm template knows only its built-in API list; the upgrade sees the cluster's. A chart that renders
    for an API the cluster serves (a CRD installed by someone else) must plan as it will apply."""
    crd = yaml.safe_load(_crd(group, "widgets", {}))
    kube.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    probe = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\n"
        f'data: {{widgets: "{{{{ .Capabilities.APIVersions.Has "{group}/v1/Widget" }}}}", '
        '"pdb": "{{ .Capabilities.APIVersions.Has "policy/v1" }}"}\n'
    )
    repo = _repo(tmp_path, namespace, {"templates/probe.yaml": probe})
    apply(repo, "default", code=0)
    data = kube.get(f"/api/v1/namespaces/{namespace}/configmaps/probe")["data"]
    assert data == {"widgets": "true", "pdb": "true"}, data
    expect(cli(repo, "plan", "default", "--detailed-exitcode"), 0, "the plan renders as the upgrade did")
