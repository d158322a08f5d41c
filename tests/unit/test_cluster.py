"""promote's API client (promote.cluster): which clusters count as local."""

from __future__ import annotations

import pytest

from promote.cluster import Cluster


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("https://127.0.0.1:6443", True),
        ("https://127.5.0.1", True),
        ("https://localhost:8443", True),
        ("https://[::1]:6443", True),
        ("https://10.0.0.1:6443", False),
        ("https://kube.example.com", False),
    ],
)
def test_a_cluster_on_a_loopback_address_is_local(host: str, local: bool) -> None:
    c = Cluster.__new__(Cluster)
    c.host = host
    assert c.local is local
