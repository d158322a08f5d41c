"""promote's API client (promote.cluster) against the real cluster: credentials are read once, and again
when the server rejects them."""

from __future__ import annotations

import time

from devcluster.kube import Kube
from promote.cluster import Cluster


def test_rejected_credentials_are_read_again(kube: Kube) -> None:
    del kube  # the session cluster, through KUBECONFIG
    cluster = Cluster()
    assert cluster.server_version().startswith("v1.")
    real = cluster._auth
    assert real and next(iter(real.values())).startswith("Bearer ")
    # As if the token had been rotated since it was read: the server answers 401 and we read it again.
    cluster._auth = {"authorization": "Bearer not-a-valid-token"}
    cluster._auth_at = time.monotonic()
    assert cluster.namespace_exists("default")
    assert cluster._auth == real
