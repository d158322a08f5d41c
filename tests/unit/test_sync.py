"""The health wait (promote.sync.wait_healthy): an API that cannot be reached is not a verdict."""

from __future__ import annotations

from pathlib import Path

from promote.cluster import Cluster, Resource


def test_an_api_blip_during_the_health_wait_is_not_a_verdict(tmp_path: Path) -> None:
    from promote import health, sync

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        "clusters: [{name: gone, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: u}}]\n"
    )
    cluster = Cluster(kubeconfig=str(kubeconfig))
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    # Discovery known, so the failing request is the read of the object itself (nothing listens on :9).
    cluster._discovery["v1"] = {"ConfigMap": Resource("v1", "ConfigMap", "configmaps", True)}
    h = sync.wait_healthy(cluster, "default", [cm], timeout=0.3)
    assert h.status == health.HealthStatus.PROGRESSING
    assert "cannot read the release's objects" in h.message and "unreachable" in h.message
