"""Multi-cluster apply: default on the session cluster, prod on a second dev cluster by kube context."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster import ClusterHandle, start_cluster, stop_cluster
from devcluster.kube import Kube
from tests.support.cli import start_promote
from tests.support.helm import helm_history, record_of
from tests.support.kube import available, deployment
from tests.support.repo import APP, PROD_RELEASE, make_repo

PROD_CONTEXT = "prod-cluster"


@pytest.fixture(scope="module")
def prod_cluster(dev_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """A second dev cluster, context `prod-cluster`, stopped after this module."""
    state_dir = tmp_path_factory.mktemp("prod-cluster")
    try:
        yield start_cluster(state_dir, name=PROD_CONTEXT)
    finally:
        stop_cluster(state_dir)


@pytest.fixture(scope="module")
def merged_kubeconfig(
    dev_cluster: ClusterHandle, prod_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One kubeconfig with both clusters' contexts; the session cluster is the current one."""
    docs = [yaml.safe_load(h.kubeconfig.read_text()) for h in (dev_cluster, prod_cluster)]
    merged: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [c for d in docs for c in d["clusters"]],
        "users": [u for d in docs for u in d["users"]],
        "contexts": [c for d in docs for c in d["contexts"]],
        "current-context": dev_cluster.context,
        "preferences": {},
    }
    assert dev_cluster.context != PROD_CONTEXT
    path = tmp_path_factory.mktemp("kubeconfig") / "merged"
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    path.chmod(0o600)
    return path


def _repo(tmp_path: Path, default_ns: str) -> tuple[Path, str]:
    prod_ns = f"t-{secrets.token_hex(4)}"  # created by apply in the second cluster
    return make_repo(tmp_path, default_ns, prod_ns, extra_prod={"context": PROD_CONTEXT}), prod_ns


def _assert_landed(
    dev_cluster: ClusterHandle, kube: Kube, prod_cluster: ClusterHandle, default_ns: str, prod_ns: str, doc: Any
) -> None:
    prod_kube = prod_cluster.kube()
    assert [(e["name"], e["outcome"], e["context"]) for e in doc["environments"]] == [
        ("default", "synced", dev_cluster.context),
        ("prod", "synced", PROD_CONTEXT),
    ]
    # default on the session cluster only, prod on the second cluster only.
    assert available(deployment(kube, default_ns, APP)) == (1, 1)
    assert deployment(prod_kube, default_ns, APP) is None
    assert available(deployment(prod_kube, prod_ns, PROD_RELEASE)) == (3, 3)
    assert deployment(kube, prod_ns, PROD_RELEASE) is None
    (rev,) = helm_history(prod_ns, PROD_RELEASE, kubeconfig=str(prod_cluster.kubeconfig), context=PROD_CONTEXT)
    assert record_of(rev)["env"] == "prod"
    assert helm_history(prod_ns, PROD_RELEASE) == []  # nothing of prod's on the session cluster


def test_apply_across_two_clusters(
    tmp_path: Path,
    kube: Kube,
    namespace: str,
    dev_cluster: ClusterHandle,
    prod_cluster: ClusterHandle,
    merged_kubeconfig: Path,
) -> None:
    repo, prod_ns = _repo(tmp_path, namespace)

    run = start_promote(
        repo, tmp_path / "logs", "apply", "apply", "prod", "-o", "json", env={"KUBECONFIG": str(merged_kubeconfig)}
    )

    assert run.wait(timeout=240) == 0, run.stdout() + run.stderr()
    _assert_landed(dev_cluster, kube, prod_cluster, namespace, prod_ns, run.result())


def test_apply_across_two_clusters_with_kubeconfig_option(
    tmp_path: Path,
    kube: Kube,
    namespace: str,
    dev_cluster: ClusterHandle,
    prod_cluster: ClusterHandle,
    merged_kubeconfig: Path,
) -> None:
    """`--kubeconfig` must reach helm too, not only promote's own API client."""
    repo, prod_ns = _repo(tmp_path, namespace)
    assert os.environ["KUBECONFIG"] == str(dev_cluster.kubeconfig)  # knows only the session cluster

    run = start_promote(
        repo, tmp_path / "logs", "apply", "--kubeconfig", str(merged_kubeconfig), "apply", "prod", "-o", "json"
    )

    assert run.wait(timeout=240) == 0, run.stdout() + run.stderr()
    _assert_landed(dev_cluster, kube, prod_cluster, namespace, prod_ns, run.result())
