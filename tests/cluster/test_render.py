"""Rendering for the real cluster: a chart that reads the cluster's version and the install state renders for
this cluster, as an install and then as an upgrade; the render cache a real plan fills holds no Secret value."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from devcluster.kube import Kube
from tests.support.cli import apply, cli
from tests.support.repo import CHART, commit, edit_env, env_values, make_repo

CAPABILITIES_TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-capabilities
data:
  kube: {{ .Capabilities.KubeVersion.Version | quote }}
  install: {{ .Release.IsInstall | quote }}
"""


def test_chart_reading_the_cluster_renders_for_its_version_and_state(
    tmp_path: Path, kube: Kube, make_namespace: Callable[[], str]
) -> None:
    default_ns, prod_ns = make_namespace(), make_namespace()
    repo = make_repo(tmp_path, default_ns, prod_ns)
    (repo / CHART / "templates" / "capabilities.yaml").write_text(CAPABILITIES_TEMPLATE)
    commit(repo, "a template that reads the cluster's version and the install state")
    server = kube.get("/version")["gitVersion"]

    first = cli(repo, "diff", "default", "-o", "json")
    assert first.exit_code in (0, 2), first.stdout + first.stderr
    git_side = {d["name"]: d["git"] for d in json.loads(first.stdout)["diffs"]}
    created = git_side["python-app-capabilities"]
    assert f"kube: {server}" in created, created
    assert 'install: "true"' in created or "install: 'true'" in created, created

    apply(repo, "default", code=0)
    edit_env(repo, "default", values={**env_values(repo, "default"), "config": {"greeting": "again"}})
    commit(repo, "a change, so the next sync is an upgrade")
    again = json.loads(cli(repo, "diff", "default", "-o", "json").stdout)
    by_name = {d["name"]: d for d in again["diffs"]}
    # As helm upgrade will render it: no longer an install.
    assert (
        "install: 'false'" in by_name["python-app-capabilities"]["git"]
        or 'install: "false"' in (by_name["python-app-capabilities"]["git"])
    ), by_name["python-app-capabilities"]


def test_the_render_cache_holds_no_secret_value(
    tmp_path: Path, two_namespaces: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    repo = make_repo(tmp_path, *two_namespaces)
    password = "s3cret-in-the-cache-test"
    assert cli(repo, "plan", "prod", "--set", f"secret.password={password}").exit_code == 0

    entries = [p for p in (tmp_path / "cache" / "render").glob("*.json")]
    assert entries, "the plan stored no render"
    text = "".join(p.read_text() for p in entries)
    assert "python-app-secret" in text  # the Secret itself is cached, as fingerprints
    for form in (password, base64.b64encode(password.encode()).decode()):
        assert form not in text


STRING_DATA_SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-string-data
type: Opaque
stringData:
  token: {{ .Values.secret.password | quote }}
"""


def test_a_warm_plan_of_a_chart_with_string_data_runs_no_helm(
    tmp_path: Path, two_namespaces: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `helm create`-style charts render Secrets with stringData; the live Secret holds it as data. The
    # cache must still prove such a release unchanged, or every warm plan runs helm once per release.
    import shutil

    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    repo = make_repo(tmp_path, *two_namespaces)
    (repo / CHART / "templates" / "string-data.yaml").write_text(STRING_DATA_SECRET)
    commit(repo, "a Secret rendered with stringData")
    apply(repo, "default", code=0)

    # helm itself, each run written down: the real binary does all the work.
    runs = tmp_path / "helm-runs"
    counted = tmp_path / "helm"
    counted.write_text(f'#!/bin/sh\necho "$1" >> {runs}\nexec {shutil.which("helm")} "$@"\n')
    counted.chmod(0o755)
    env = {"PROMOTE_HELM": str(counted)}
    assert cli(repo, "plan", "default", env=env).exit_code == 0  # warms the cache, if apply left it cold
    runs.unlink(missing_ok=True)
    warm = cli(repo, "plan", "default", "-o", "json", env=env)
    assert warm.exit_code == 0, warm.output
    ((release,),) = [e["releases"] for e in json.loads(warm.stdout)["environments"]]
    assert {c["action"] for c in release["changes"]} == {"unchanged"}
    assert not runs.exists() or "template" not in runs.read_text().split(), runs.read_text()

    # and the cache does not hide a change of the value behind the fingerprint
    edit_env(repo, "default", values={**env_values(repo, "default"), "secret": {"password": "rotated-password"}})
    commit(repo, "rotate the password")
    result = cli(repo, "plan", "default", "-o", "json", env=env)
    assert result.exit_code == 0, result.output
    changed = json.loads(result.stdout)
    ((release,),) = [e["releases"] for e in changed["environments"]]
    names = {c["name"] for c in release["changes"] if c["action"] == "update"}
    assert "string-data" in " ".join(names), release
