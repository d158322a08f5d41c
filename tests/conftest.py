"""Shared pytest fixtures: the session's dev cluster and throwaway namespaces in it.

``dev_cluster`` reuses a cluster already running in ``$DEV_CLUSTER_DIR`` (default
``~/.cache/promote/test-cluster``), or starts one and stops it at the end of the session unless
``PROMOTE_KEEP_CLUSTER=1``. For the whole session ``KUBECONFIG`` points at it, so helm, kubectl
and the kubernetes client used by the code under test all talk to it. Tests using it are
marked ``cluster`` automatically.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devcluster import ClusterHandle, cluster_status, start_cluster, stop_cluster
from devcluster.cluster import cache_root
from devcluster.kube import Kube
from tests.support.kube import create_namespace, delete_namespace

CLUSTER_FIXTURES = {"dev_cluster", "namespace", "make_namespace"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


def session_cluster_dir() -> Path:
    env = os.environ.get("DEV_CLUSTER_DIR")
    return Path(env).expanduser() if env else cache_root() / "test-cluster"


@pytest.fixture(scope="session")
def dev_cluster() -> Iterator[ClusterHandle]:
    """The session's dev cluster (see module docstring); ``KUBECONFIG`` points at it meanwhile."""
    state_dir = session_cluster_dir().resolve()
    was_running = all(cluster_status(state_dir).values())
    handle = start_cluster(state_dir)
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(handle.kubeconfig)
    try:
        yield handle
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        if not was_running and os.environ.get("PROMOTE_KEEP_CLUSTER") != "1":
            stop_cluster(state_dir)


@pytest.fixture(scope="session")
def kube(dev_cluster: ClusterHandle) -> Kube:
    """Plain-dict API access to the session cluster (admin)."""
    return dev_cluster.kube()


@pytest.fixture
def make_namespace(kube: Kube) -> Iterator[Callable[[], str]]:
    """Factory creating fresh ``t-<8 hex>`` namespaces; all are deleted after the test."""
    created: list[str] = []

    def make(prefix: str = "t") -> str:
        name = create_namespace(kube, prefix)
        created.append(name)
        return name

    yield make
    for name in created:
        delete_namespace(kube, name)


@pytest.fixture
def namespace(make_namespace: Callable[[], str]) -> str:
    """A fresh, uniquely named namespace deleted after the test."""
    return make_namespace()


@pytest.fixture
def two_namespaces(make_namespace: Callable[[], str]) -> tuple[str, str]:
    """Fresh namespaces for default and prod."""
    return make_namespace(), make_namespace()
