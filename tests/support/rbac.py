"""A least-privileged CI identity on the session cluster: a ServiceAccount bound to the built-in `edit`
ClusterRole in the environments' namespaces (RoleBindings, no cluster-wide grant), plus the Role promote
needs besides, and a kubeconfig that authenticates as it with a TokenRequest token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devcluster.kube import Kube

RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
# What `edit` lacks and promote needs: the environment's lock is a Lease. (README: "Least privilege".)
LOCK_ROLE = "promote-lock"
LOCK_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update", "delete"],
    }
]


@dataclass(frozen=True)
class Account:
    """A ServiceAccount, its bearer token, and a kubeconfig (0600) that uses it."""

    namespace: str
    name: str
    token: str
    kubeconfig: Path

    @property
    def user(self) -> str:
        """The account's user name, as the apiserver names it in a 403."""
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def grant(kube: Kube, account_ns: str, account: str, namespace: str) -> None:
    """Namespaced `edit` plus the lock Role in one namespace, for the ServiceAccount."""
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": account_ns}]
    base = RBAC.format(ns=namespace)
    kube.post(
        f"{base}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": LOCK_ROLE},
            "rules": LOCK_RULES,
        },
    )
    for name, kind, role in (("promote-edit", "ClusterRole", "edit"), (LOCK_ROLE, "Role", LOCK_ROLE)):
        kube.post(
            f"{base}/rolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
                "subjects": subject,
            },
        )


def ci_account(kube: Kube, admin_kubeconfig: Path, account_ns: str, namespaces: Iterable[str], home: Path) -> Account:
    """A ServiceAccount `promote-ci` in `account_ns`, granted `grant` in each namespace; its kubeconfig in `home`."""
    name = "promote-ci"
    kube.post(
        f"/api/v1/namespaces/{account_ns}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
    )
    for ns in namespaces:
        grant(kube, account_ns, name, ns)
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    token = str(kube.post(f"/api/v1/namespaces/{account_ns}/serviceaccounts/{name}/token", request)["status"]["token"])
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    (cluster,) = admin["clusters"]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dev", "cluster": cluster["cluster"]}],
        "users": [{"name": "ci", "user": {"token": token}}],
        "contexts": [{"name": "ci", "context": {"cluster": "dev", "user": "ci"}}],
        "current-context": "ci",
    }
    path = home / "ci-kubeconfig"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(doc))
    return Account(account_ns, name, token, path)
