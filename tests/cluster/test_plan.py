"""`promote plan` against the real local control plane: what it predicts, and that apply does exactly that."""

from __future__ import annotations

import base64
import copy
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devcluster import ClusterHandle
from devcluster.kube import Kube
from tests.support.cli import cli, hooks, plan_json, release_of, resources, start_promote
from tests.support.fieldpath import apply_field, resolve
from tests.support.helm import helm_apply, storage_names
from tests.support.kube import delete_namespace, kubectl, namespace_exists, snapshot
from tests.support.repo import (
    APP,
    CHART,
    DEFINITION,
    PROD_RELEASE,
    commit,
    definition,
    git,
    make_repo,
    write_definition,
)

RENDERED = {
    ("ServiceAccount", APP),
    ("Secret", "python-app-secret"),
    ("ConfigMap", "my-app-config"),
    ("Service", APP),
    ("Deployment", APP),
}


@pytest.fixture
def absent_namespace(kube: Kube) -> Iterator[str]:
    """A namespace name that does not exist yet; deleted afterwards should anything create it."""
    name = f"t-{secrets.token_hex(4)}"
    yield name
    delete_namespace(kube, name)


def names(changes: list[dict[str, object]]) -> set[tuple[object, object]]:
    return {(c["kind"], c["name"]) for c in changes}


# --- a fresh cluster -----------------------------------------------------------------------------


def test_fresh_cluster_plans_all_create(tmp_path: Path, kube: Kube, namespace: str, absent_namespace: str) -> None:
    repo = make_repo(tmp_path, namespace, absent_namespace)

    plan = plan_json(repo, "prod", "--detailed-exitcode", code=2)

    assert plan["target"] == "prod"
    assert [e["name"] for e in plan["environments"]] == ["default", "prod"]
    assert plan["summary"] == {"create": 11, "update": 0, "delete": 0, "unchanged": 0}
    assert plan["errors"] == []
    default, prod = resources(plan, "default"), resources(plan, "prod")
    assert {c["action"] for c in default + prod} == {"create"}
    assert all(c["fields"] == [] for c in default + prod)
    assert names(default) == RENDERED
    # default's namespace exists; prod's does not yet, so apply would create it first
    assert ("Namespace", absent_namespace) in names(prod)
    assert names(prod) == {("Namespace", absent_namespace)} | {
        (kind, PROD_RELEASE if name == APP else name) for kind, name in RENDERED
    }
    assert all(c["namespace"] == namespace for c in default)
    assert release_of(plan, "default")["currentRevision"] is None
    assert release_of(plan, "prod")["release"] == PROD_RELEASE

    table = cli(repo, "plan", "prod")
    assert table.exit_code == 0, table.output
    assert f"    + create Namespace {absent_namespace}\n" in table.stdout
    assert "Plan: 11 to create, 0 to update, 0 to delete, 0 unchanged." in table.stdout
    assert "Traceback" not in table.output


def test_plan_writes_nothing_to_the_cluster(tmp_path: Path, kube: Kube, namespace: str, absent_namespace: str) -> None:
    repo = make_repo(tmp_path, namespace, absent_namespace)

    def secrets() -> list[str]:
        # The token controller adds the default ServiceAccount's token to a new namespace when it gets to it.
        items = kube.get(f"/api/v1/namespaces/{namespace}/secrets")["items"]
        return [s["metadata"]["name"] for s in items if s.get("type") != "kubernetes.io/service-account-token"]

    before = secrets()

    assert cli(repo, "plan", "prod").exit_code == 0
    assert cli(repo, "validate").exit_code == 0

    assert not namespace_exists(kube, absent_namespace)
    assert storage_names(kube, namespace) == []
    assert secrets() == before
    for path in (
        "/api/v1/namespaces/{ns}/configmaps",
        "/apis/apps/v1/namespaces/{ns}/deployments",
        "/api/v1/namespaces/{ns}/services",
        "/api/v1/namespaces/{ns}/pods",
    ):
        items = kube.get(path.format(ns=namespace))["items"]
        assert [i["metadata"]["name"] for i in items if i["metadata"]["name"] != "kube-root-ca.crt"] == []


def test_hooks_are_shown_with_their_phase(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)

    plan = plan_json(repo, "default")

    assert {(h["name"], h["hook"], h["action"]) for h in hooks(plan, "default")} == {
        ("python-app-pre-sync", "PreSync", "create"),
        ("python-app-post-sync", "PostSync", "create"),
    }
    # hooks are transient: the summary does not count them
    assert plan["summary"]["create"] == 5
    table = cli(repo, "plan", "default").stdout.splitlines()
    ns = two_namespaces[0]
    assert f"    + create Pod {ns}/python-app-pre-sync (PreSync hook)" in table
    assert f"    + create Pod {ns}/python-app-post-sync (PostSync hook)" in table


# --- after installing with helm ------------------------------------------------------------------


def test_installed_with_same_values_plans_all_unchanged(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    helm_apply(repo, "default", "prod")

    plan = plan_json(repo, "prod", "--detailed-exitcode", code=0)

    assert plan["summary"] == {"create": 0, "update": 0, "delete": 0, "unchanged": 10}
    for env in ("default", "prod"):
        rel = release_of(plan, env)
        assert rel["currentRevision"] == 1
        assert rel["currentStatus"] == "deployed"
        assert rel["errors"] == []
        assert {c["action"] for c in rel["changes"]} == {"unchanged"}, rel["changes"]
        assert [c for c in rel["changes"] if c["fields"]] == []
    table = cli(repo, "plan", "prod", "--detailed-exitcode")
    assert table.exit_code == 0, table.output
    assert table.stdout.endswith("\nNo changes. Live matches Git: 10 unchanged.\n"), table.stdout


def test_replica_change_in_one_environment_is_one_field_change(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    helm_apply(repo, "default", "prod")
    write_definition(repo, definition(*two_namespaces, default_values={"replicaCount": 2}))

    plan = plan_json(repo, "prod", "--detailed-exitcode", code=2)

    every = [
        (env["name"], c["kind"], c["name"], f)
        for env in plan["environments"]
        for rel in env["releases"]
        for c in rel["changes"]
        for f in c["fields"]
    ]
    assert every == [("default", "Deployment", APP, {"path": "spec.replicas", "from": 1, "to": 2})]
    assert plan["summary"] == {"create": 0, "update": 1, "delete": 0, "unchanged": 9}
    assert {c["action"] for c in release_of(plan, "prod")["changes"]} == {"unchanged"}
    table = cli(repo, "plan", "prod", "--detailed-exitcode")
    assert table.exit_code == 2, table.output
    assert "spec.replicas: 1 → 2" in table.stdout
    prod_exit = cli(repo, "plan", "prod", "--detailed-exitcode", "--app", APP, "-o", "json")
    assert prod_exit.exit_code == 2


def test_removed_template_plans_a_delete(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    helm_apply(repo, "default")
    (repo / CHART / "templates" / "serviceaccount.yaml").unlink()

    plan = plan_json(repo, "default", "--detailed-exitcode", code=2)

    changed = {(c["action"], c["kind"], c["name"]) for c in resources(plan, "default") if c["action"] != "unchanged"}
    assert changed == {("delete", "ServiceAccount", APP)}
    assert plan["summary"] == {"create": 0, "update": 0, "delete": 1, "unchanged": 4}
    assert f"    - delete ServiceAccount {two_namespaces[0]}/{APP}\n" in cli(repo, "plan", "default").stdout


def test_kubectl_scale_shows_live_value_as_from(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    helm_apply(repo, "default")
    kubectl("-n", two_namespaces[0], "scale", f"deployment/{APP}", "--replicas=4")

    plan = plan_json(repo, "default", "--detailed-exitcode", code=2)

    (deployment,) = [c for c in resources(plan, "default") if c["action"] != "unchanged"]
    assert (deployment["kind"], deployment["name"], deployment["action"]) == ("Deployment", APP, "update")
    assert deployment["fields"] == [{"path": "spec.replicas", "from": 4, "to": 1}]
    assert "spec.replicas: 4 → 1" in cli(repo, "plan", "default").stdout


def test_secret_change_is_masked(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    helm_apply(repo, "default")
    new = "n3w-Passw0rd-xyz"
    write_definition(repo, definition(*two_namespaces, default_values={"replicaCount": 1, "secret": {"password": new}}))

    plan = plan_json(repo, "default", code=0)
    table = cli(repo, "plan", "default")
    as_json = cli(repo, "plan", "default", "-o", "json")
    as_yaml = cli(repo, "plan", "default", "-o", "yaml")

    (secret,) = [c for c in resources(plan, "default") if c["action"] != "unchanged"]
    assert (secret["kind"], secret["name"]) == ("Secret", "python-app-secret")
    assert secret["fields"] == [
        {"path": "data.password", "from": "(sensitive)", "to": "(sensitive)", "sensitive": True}
    ]
    assert "data.password: (sensitive value changed)" in table.stdout
    for out in (table.output, as_json.output, as_yaml.output):
        for plain in (new, "change-me-please"):
            assert plain not in out
            assert base64.b64encode(plain.encode()).decode() not in out


# --- plan predicts apply -------------------------------------------------------------------------


def _scenario(name: str, repo: Path, namespaces: tuple[str, str]) -> None:
    if name == "replicas":
        write_definition(repo, definition(*namespaces, default_values={"replicaCount": 2}))
    elif name == "removed-template":
        (repo / CHART / "templates" / "serviceaccount.yaml").unlink()
    elif name == "scale-drift":
        kubectl("-n", namespaces[0], "scale", f"deployment/{APP}", "--replicas=3")
    elif name == "secret":
        values = {"replicaCount": 1, "secret": {"password": "an0ther-secret!"}, "config": {"logLevel": "debug"}}
        write_definition(repo, definition(*namespaces, default_values=values))


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("replicas", {("update", "Deployment", APP)}),
        ("removed-template", {("delete", "ServiceAccount", APP)}),
        ("scale-drift", {("update", "Deployment", APP)}),
        # the config change also changes the pod template's checksum annotation
        (
            "secret",
            {
                ("update", "Secret", "python-app-secret"),
                ("update", "ConfigMap", "my-app-config"),
                ("update", "Deployment", APP),
            },
        ),
    ],
)
def test_plan_equals_what_apply_changes(
    scenario: str,
    expected: set[tuple[str, str, str]],
    tmp_path: Path,
    kube: Kube,
    two_namespaces: tuple[str, str],
) -> None:
    ns = two_namespaces[0]
    repo = make_repo(tmp_path, *two_namespaces)
    helm_apply(repo, "default")
    _scenario(scenario, repo, two_namespaces)

    planned = [c for c in resources(plan_json(repo, "default"), "default") if c["action"] != "unchanged"]
    before = snapshot(kube, ns, APP)
    helm_apply(repo, "default")
    after = snapshot(kube, ns, APP)

    assert {(c["action"], c["kind"], c["name"]) for c in planned} == expected
    actually_changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert actually_changed == names(planned)
    for c in planned:
        key = (c["kind"], c["name"])
        if c["action"] == "create":
            assert key not in before and key in after
        elif c["action"] == "delete":
            assert key in before and key not in after
        else:
            predicted = copy.deepcopy(before[key])
            for f in c["fields"]:
                if f.get("sensitive"):
                    assert resolve(before[key], f["path"]) != resolve(after[key], f["path"]), f
                    apply_field(predicted, f["path"], resolve(after[key], f["path"]))
                else:
                    assert resolve(before[key], f["path"]) == f["from"], f
                    assert resolve(after[key], f["path"]) == f["to"], f
                    apply_field(predicted, f["path"], f["to"])
            # nothing changed beyond the planned fields
            assert predicted == after[key]


# --- revisions -----------------------------------------------------------------------------------


def test_plan_from_an_older_revision(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / CHART / "templates" / "serviceaccount.yaml").unlink()
    write_definition(repo, definition(*two_namespaces, extra_default={"release": "renamed"}))
    second = commit(repo, "drop the service account, rename the release")
    tree_before = {p: p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file() and ".git" not in p.parts}

    old = plan_json(repo, "default", "--revision", "HEAD~1")
    new = plan_json(repo, "default")

    assert old["revision"] == first
    assert names(resources(old, "default")) == RENDERED
    assert release_of(old, "default")["release"] == APP
    assert new["revision"] == second
    assert names(resources(new, "default")) == {
        ("Secret", "python-app-secret"),
        ("ConfigMap", "my-app-config"),
        ("Service", "renamed"),
        ("Deployment", "renamed"),
    }
    # the working tree was not touched
    assert git(repo, "status", "--porcelain") == ""
    assert {p: p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file() and ".git" not in p.parts} == tree_before


def test_revision_is_dirty_only_for_files_the_plan_read(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    sha = git(repo, "rev-parse", "HEAD").strip()

    (repo / "README.md").write_text("changed, but no plan reads it\n")
    (repo / "notes.txt").write_text("untracked and unrelated\n")
    assert plan_json(repo, "default")["revision"] == sha

    doc = yaml.safe_load((repo / DEFINITION).read_text())
    doc["environments"][0]["values"]["replicaCount"] = 2
    write_definition(repo, doc)
    assert plan_json(repo, "default")["revision"] == f"{sha}-dirty"
    assert cli(repo, "plan", "default").stdout.startswith(f"Revision {sha}-dirty\n")
    # an explicit revision reads the commit, so local edits do not make it dirty
    assert plan_json(repo, "default", "--revision", "HEAD")["revision"] == sha

    git(repo, "checkout", "-q", "--", DEFINITION)
    (repo / CHART / "templates" / "NOTES.txt").write_text("an untracked file inside the chart\n")
    assert plan_json(repo, "default")["revision"] == f"{sha}-dirty"


# --- bad input and broken clusters ---------------------------------------------------------------


def _one_paragraph(text: str) -> None:
    assert "Traceback" not in text
    assert text.strip(), "no error message"
    assert "\n\n" not in text.strip(), f"error is not one paragraph:\n{text}"


def test_helm_render_error_is_a_clear_release_error(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    (repo / CHART / "templates" / "boom.yaml").write_text('{{ fail "boom" }}\n')

    result = cli(repo, "plan", "default")
    plan = plan_json(repo, "default", code=1)

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    (error,) = release_of(plan, "default")["errors"]
    assert "boom" in error
    assert "templates/boom.yaml" in error
    _one_paragraph(error)


def test_helm_bad_include_is_a_clear_release_error(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    (repo / CHART / "templates" / "boom.yaml").write_text('{{ include "no-such-template" . }}\n')

    plan = plan_json(repo, "default", code=1)

    (error,) = release_of(plan, "default")["errors"]
    assert 'no template "no-such-template"' in error
    _one_paragraph(error)


BAD_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
- name: nobody
  user: {token: not-a-token}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody}
current-context: nowhere
"""


def test_unreachable_cluster_is_one_clear_error(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    kubeconfig = tmp_path / "unreachable.kubeconfig"
    kubeconfig.write_text(BAD_KUBECONFIG)

    # as users run it: a separate process whose KUBECONFIG points at the dead cluster
    proc = start_promote(repo, tmp_path / "logs", "plan", "plan", "default", env={"KUBECONFIG": str(kubeconfig)})
    code = proc.wait(timeout=60)
    assert code == 1, proc.stdout() + proc.stderr()
    assert proc.stdout() == ""
    assert proc.stderr().startswith("Error: ")
    assert "https://127.0.0.1:1" in proc.stderr() and "unreachable" in proc.stderr()
    _one_paragraph(proc.stderr())

    # and in-process with --kubeconfig, as JSON on stdout
    result = cli(repo, "--kubeconfig", str(kubeconfig), "plan", "default", "-o", "json", explicit_kubeconfig=False)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    doc = json.loads(result.stdout)
    assert doc == {"error": doc["error"], "exitCode": 1}
    assert "https://127.0.0.1:1" in doc["error"]
    _one_paragraph(doc["error"])


def test_kubeconfig_from_the_environment_at_run_time(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    # Without --kubeconfig, KUBECONFIG as it is when the command runs must be used (helm does so too).
    repo = make_repo(tmp_path, *two_namespaces)

    result = cli(repo, "plan", "default", "-o", "json", explicit_kubeconfig=False)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["create"] == 5


def test_unknown_context_on_the_command_line(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)

    result = cli(repo, "--context", "nope", "plan", "default")

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: unknown kube context 'nope'")
    _one_paragraph(result.stderr)


def test_global_options_after_the_command(
    tmp_path: Path, dev_cluster: ClusterHandle, two_namespaces: tuple[str, str]
) -> None:
    # As kubectl and helm take them: `promote plan default --context X --kubeconfig F`.
    repo = make_repo(tmp_path, *two_namespaces)
    kubeconfig = str(dev_cluster.kubeconfig)

    known = cli(repo, "plan", "default", "-o", "json", "--kubeconfig", kubeconfig, "--context", dev_cluster.context)
    unknown = cli(repo, "status", "default", "--context", "nope", "--kubeconfig", kubeconfig)

    assert known.exit_code == 0, known.output
    assert json.loads(known.stdout)["summary"]["create"] == 5
    assert unknown.exit_code == 1, unknown.output
    assert unknown.stderr.startswith("Error: unknown kube context 'nope'")


def test_unknown_context_in_the_definition(tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces, extra_prod={"context": "nope"})

    result = cli(repo, "plan", "prod")

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: unknown kube context 'nope'")
    _one_paragraph(result.stderr)
    # the environment before it was not half-planned into the cluster either
    assert storage_names(kube, two_namespaces[0]) == []
