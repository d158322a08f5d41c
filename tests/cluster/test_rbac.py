"""Least privilege on the real cluster: a CI ServiceAccount holding only the built-in `edit` ClusterRole
through RoleBindings in the environments' namespaces, plus a Role for the Lease (tests/support/rbac.py),
plans, applies, reports and rolls back; where a cluster-scoped permission is really needed, promote stops
before changing anything and names it; and its bearer token appears in no byte promote prints.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from devcluster import ClusterHandle
from devcluster.kube import Kube
from promote.cluster import connect
from tests.support.cli import PROMOTE, cli, expect
from tests.support.helm import helm_history, record_of
from tests.support.kube import available, deployment, image_of, namespace_exists
from tests.support.rbac import Account, ci_account
from tests.support.repo import APP, PROD_RELEASE, commit, edit_env, make_repo, set_app_values

APPLY = ("--timeout", "120s")
CLUSTER_ROLE = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .Release.Namespace }}-{{ .Release.Name }}-reader
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get"]
"""


@dataclass
class CI:
    """The repo, its namespaces, the account, and every byte promote printed while running as it."""

    repo: Path
    default_ns: str
    prod_ns: str
    account: Account
    printed: list[str] = field(default_factory=list)

    def run(self, *args: str, code: int, kubeconfig: Path | None = None) -> Result:
        """`promote --kubeconfig <the account's> ARGS` in-process, asserting its exit code."""
        result = cli(
            self.repo, "--kubeconfig", str(kubeconfig or self.account.kubeconfig), *args, explicit_kubeconfig=False
        )
        self.printed += [result.stdout, result.stderr]
        return expect(result, code, " ".join(args))

    def json(self, *args: str, code: int) -> dict[str, Any]:
        """`run` with -o json: the decoded document."""
        doc: dict[str, Any] = json.loads(self.run(*args, "-o", "json", code=code).stdout)
        return doc

    def process(self, *args: str, code: int, kubeconfig: Path | None = None) -> str:
        """`promote ARGS` as its own process (every byte it writes, library logs included); its output."""
        config = str(kubeconfig or self.account.kubeconfig)
        out = subprocess.run(
            [*PROMOTE, "--no-color", "-C", str(self.repo), "--kubeconfig", config, *args],
            capture_output=True,
            timeout=300,
            check=False,
        )
        self.printed += [out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace")]
        assert out.returncode == code, f"promote {' '.join(args)}: exit {out.returncode}\n{out.stderr.decode()}"
        return self.printed[-2] + self.printed[-1]

    def assert_no_token(self) -> None:
        """The account's token (whole, or any 16-character piece of it) is in no output so far."""
        token = self.account.token
        pieces = {token[i : i + 16] for i in range(0, len(token) - 16, 8)}
        for text in self.printed:
            assert token not in text
            leaked = [p for p in pieces if p in text]
            assert not leaked, f"a piece of the token was printed: {leaked[0]!r} in\n{text}"


@pytest.fixture
def ci(tmp_path: Path, kube: Kube, dev_cluster: ClusterHandle, make_namespace: Callable[..., str]) -> CI:
    """A repo whose environments' namespaces exist (made by the admin), and the CI account granted in them."""
    default_ns, prod_ns, account_ns = make_namespace(), make_namespace(), make_namespace("ci")
    account = ci_account(kube, dev_cluster.kubeconfig, account_ns, [default_ns, prod_ns], tmp_path)
    return CI(make_repo(tmp_path, default_ns, prod_ns), default_ns, prod_ns, account)


def _may(kube: Kube, account: Account, verb: str, resource: str, group: str = "", namespace: str = "") -> bool:
    """What the apiserver's authorizer answers for the account (a SubjectAccessReview, asked as admin)."""
    attributes = {"verb": verb, "resource": resource, "group": group, **({"namespace": namespace} if namespace else {})}
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": account.user, "groups": ["system:serviceaccounts"], "resourceAttributes": attributes},
    }
    return bool(kube.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)["status"].get("allowed"))


@contextlib.contextmanager
def cluster_grant(kube: Kube, account: Account, name: str, rules: list[dict[str, Any]]) -> Iterator[None]:
    """A ClusterRole with `rules` bound to the account cluster-wide, deleted afterwards."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    kube.post(f"{rbac}/clusterroles", {"metadata": {"name": name}, "rules": rules})
    kube.post(
        f"{rbac}/clusterrolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account.name, "namespace": account.namespace}],
        },
    )
    try:
        yield
    finally:
        kube.delete(f"{rbac}/clusterrolebindings/{name}")
        kube.delete(f"{rbac}/clusterroles/{name}")


def _helm_revisions(ns: str, release: str) -> list[tuple[int, str]]:
    return [(r["revision"], r["status"]) for r in helm_history(ns, release)]


def test_a_ci_account_with_namespaced_edit_plans_applies_reports_and_rolls_back(ci: CI, kube: Kube) -> None:
    # The account is least-privileged: nothing at the cluster scope.
    assert not _may(kube, ci.account, "create", "namespaces")
    assert not _may(kube, ci.account, "list", "clusterroles", "rbac.authorization.k8s.io")
    assert not _may(kube, ci.account, "list", "secrets")
    assert _may(kube, ci.account, "update", "leases", "coordination.k8s.io", ci.prod_ns)

    plan = ci.json("plan", "prod", code=0)
    assert {e["name"]: e["releases"][0]["currentRevision"] for e in plan["environments"]} == {
        "default": None,
        "prod": None,
    }
    ci.run("apply", "prod", *APPLY, code=0)
    assert available(deployment(kube, ci.default_ns, APP)) == (1, 1)
    assert available(deployment(kube, ci.prod_ns, PROD_RELEASE)) == (3, 3)

    set_app_values(ci.repo, {"image": {"tag": "2.0.0"}})
    commit(ci.repo, "python-app 2.0.0")
    assert "registry.local/python-app:2.0.0" in ci.run("diff", "prod", code=0).stdout
    gate = ci.json("gate", "prod", code=3)
    checks = {c["name"]: c["result"] for c in gate["checks"]}
    # Read as the account: the Lease (lock) and the pin (ConfigMap); and default's artifact is behind.
    assert (checks["lock"], checks["upstream-artifact"]) == ("pass", "fail")

    ci.run("apply", "prod", *APPLY, code=0)
    assert image_of(deployment(kube, ci.prod_ns, PROD_RELEASE)) == "registry.local/python-app:2.0.0"
    status = ci.json("status", code=0)
    assert {(r["env"], r["sync"], r["health"]) for r in status["releases"]} == {
        ("default", "Synced", "Healthy"),
        ("prod", "Synced", "Healthy"),
    }

    rolled = ci.json("rollback", "prod", code=0)
    assert [(e["name"], e["outcome"]) for e in rolled["environments"]] == [("prod", "rolled-back")]
    assert image_of(deployment(kube, ci.prod_ns, PROD_RELEASE)) == "registry.local/python-app:1.0.0"
    assert _helm_revisions(ci.prod_ns, PROD_RELEASE) == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    assert record_of(helm_history(ci.prod_ns, PROD_RELEASE)[-1])["action"] == "rollback"
    history = ci.json("history", "prod", code=0)["history"]
    assert [(h["revision"], h["action"]) for h in history] == [(1, "sync"), (2, "sync"), (3, "rollback")]
    # The rollback pinned prod (a ConfigMap): watch reports the pending 2.0.0 as held, unpin releases it.
    assert "held by the gate: prod is pinned" in ci.run("watch", "prod", "--max-iterations", "1", code=0).output
    ci.run("unpin", "prod", code=0)
    ci.run("apply", "prod", *APPLY, code=0)
    assert image_of(deployment(kube, ci.prod_ns, PROD_RELEASE)) == "registry.local/python-app:2.0.0"
    ci.assert_no_token()


def test_a_cluster_scoped_object_in_the_chart_stops_apply_naming_the_permission(ci: CI, kube: Kube) -> None:
    ci.run("apply", "prod", *APPLY, code=0)
    before = {ns: _helm_revisions(ns, rel) for ns, rel in ((ci.default_ns, APP), (ci.prod_ns, PROD_RELEASE))}
    (ci.repo / "charts/python-app/templates/clusterrole.yaml").write_text(CLUSTER_ROLE)
    commit(ci.repo, "a ClusterRole")

    # Reading cluster-scoped objects (the ownership check) needs a cluster-wide list.
    doc = ci.json("apply", "prod", *APPLY, code=1)
    error = doc["error"]
    assert error.startswith("cannot apply default: python-app: cannot list ClusterRole in the cluster: "), error
    assert 'cannot list resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope' in error
    assert "ClusterRoleBinding" in error
    assert all(e["outcome"] == "not-reached" for e in doc["environments"]), doc["environments"]

    # Allowed to read them, not to create them: the server-side dry run names `create`.
    reader = [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["get", "list"]}]
    with cluster_grant(kube, ci.account, f"{ci.account.namespace}-read-clusterroles", reader):
        text = " ".join(ci.run("apply", "prod", *APPLY, code=1).output.split())  # errors wrap at 80 columns
    assert 'cannot create resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope' in text
    assert text.count("Error: ") == 1, text

    # Nothing changed: no new helm revision, no ClusterRole.
    after = {ns: _helm_revisions(ns, rel) for ns, rel in ((ci.default_ns, APP), (ci.prod_ns, PROD_RELEASE))}
    assert after == before
    names = [r["metadata"]["name"] for r in kube.get("/apis/rbac.authorization.k8s.io/v1/clusterroles")["items"]]
    assert not [n for n in names if n.startswith((ci.default_ns, ci.prod_ns))]
    ci.assert_no_token()


def test_creating_a_missing_namespace_is_refused_up_front_naming_create_namespaces(ci: CI, kube: Kube) -> None:
    missing = f"{ci.prod_ns}-new"
    edit_env(ci.repo, "prod", namespace=missing)
    commit(ci.repo, "prod moves to a new namespace")

    # Only RoleBindings: the account has no rights in a namespace that does not exist, and cannot see it.
    text = " ".join(ci.run("plan", "prod", code=1).output.split())  # errors wrap at 80 columns
    assert f'cannot list resource "secrets" in API group "" in the namespace "{missing}"' in text

    # `edit` everywhere (a ClusterRoleBinding): it sees the namespace is missing, and the plan creates it;
    # apply asks the authorizer first and stops before default is touched.
    reader = [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]}]
    with cluster_grant(kube, ci.account, f"{ci.account.namespace}-read-namespaces", reader):
        text = " ".join(ci.run("plan", "prod", code=1).output.split())
        assert f"namespace {missing} does not exist: create it and bind the account there" in text
        assert "`create namespaces` at the cluster scope" in text

    revisions = _helm_revisions(ci.default_ns, APP)
    set_app_values(ci.repo, {"image": {"tag": "2.0.0"}})
    commit(ci.repo, "python-app 2.0.0")
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    binding = {
        "metadata": {"name": f"{ci.account.namespace}-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": ci.account.name, "namespace": ci.account.namespace}],
    }
    kube.post(f"{rbac}/clusterrolebindings", binding)
    try:
        plan = ci.json("plan", "prod", code=0)
        (prod,) = [e for e in plan["environments"] if e["name"] == "prod"]
        kinds = [(c["action"], c["kind"], c["name"]) for c in prod["releases"][0]["changes"]]
        assert ("create", "Namespace", missing) in kinds
        doc = ci.json("apply", "prod", *APPLY, code=1)
    finally:
        kube.delete(f"{rbac}/clusterrolebindings/{ci.account.namespace}-edit")
    assert doc["error"] == (
        "cannot apply: the credentials in use lack cluster-scoped permission to create namespaces at the "
        f"cluster scope (for prod/python-app: Namespace {missing}): a RoleBinding cannot grant that; it takes "
        "a ClusterRole and a ClusterRoleBinding, or keep cluster-scoped objects out of the chart and create "
        "the namespace beforehand"
    )
    assert not namespace_exists(kube, missing)
    assert _helm_revisions(ci.default_ns, APP) == revisions  # default, before prod in the chain, untouched
    ci.assert_no_token()


def test_a_namespace_the_account_may_not_read_is_not_missing(ci: CI, make_namespace: Callable[..., str]) -> None:
    cluster = connect(None, str(ci.account.kubeconfig))
    elsewhere = make_namespace()  # exists; the account holds nothing in it
    assert cluster.namespace_exists(elsewhere)
    assert cluster.namespace_exists(ci.prod_ns)  # `edit` reads its own namespace
    ci.assert_no_token()


def test_the_token_is_in_no_output_of_any_command(ci: CI, tmp_path: Path) -> None:
    ci.run("apply", "default", *APPLY, code=0)
    ci.run("--debug", "plan", "prod", code=0)
    ci.run("--debug", "status", "-o", "json", code=0)
    ci.run("--debug", "apply", "prod", "--set", "a[b=1", code=1)  # bad input
    ci.run("--debug", "plan", "nosuch", code=1)
    ci.run("--debug", "rollback", "prod", code=1)  # never promoted: nothing to roll back to
    ci.process("--debug", "gate", "prod", "-o", "json", code=0)
    ci.process("--debug", "history", "default", code=0)

    # A 403, with --debug and in JSON, in-process and as a process.
    (ci.repo / "charts/python-app/templates/clusterrole.yaml").write_text(CLUSTER_ROLE)
    commit(ci.repo, "a ClusterRole")
    assert "is forbidden" in ci.run("--debug", "apply", "prod", *APPLY, code=1).output
    ci.run("--debug", "diff", "prod", "-o", "json", code=1)
    ci.process("--debug", "status", code=1)

    # A token that no HTTP header can carry: http.client's refusal quotes the header whole.
    broken = yaml.safe_load(ci.account.kubeconfig.read_text())
    broken["users"][0]["user"]["token"] = ci.account.token + "\n"
    bad = tmp_path / "broken-kubeconfig"
    bad.write_text(yaml.safe_dump(broken))
    text = ci.process("--debug", "status", code=1, kubeconfig=bad)
    assert "Traceback" in text and "control character" in text
    assert "control character" in ci.run("plan", "prod", "-o", "json", code=1, kubeconfig=bad).stdout

    # A token the apiserver rejects.
    broken["users"][0]["user"]["token"] = ci.account.token[:-4] + "AAAA"
    bad.write_text(yaml.safe_dump(broken))
    assert "unauthorized" in ci.process("--debug", "apply", "default", code=1, kubeconfig=bad)

    assert len(ci.printed) == 28
    ci.assert_no_token()
