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


def test_helm_skips_its_openapi_check_only_for_what_plan_dry_ran() -> None:
    # Plan dry-runs strictly what a release of built-in kinds changes, in a namespace that exists: only
    # then may helm upgrade skip its own check. Not with hooks, custom resources (their CRD may change
    # during the apply), or a render as an install that helm will run as an upgrade.
    from promote import sync
    from promote.plan import Action, ResourceChange

    deployment = ResourceChange(Action.UPDATE, "apps/v1", "Deployment", "ns", "web")
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}}
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}

    def hook(events: str) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "h", "annotations": {"helm.sh/hook": events}}}

    assert sync.server_validated([deployment], [config, ingress])
    assert sync.server_validated([deployment], [config, hook("test")])  # helm test hooks do not run on upgrade
    assert not sync.server_validated([deployment], [config, hook("pre-install,pre-upgrade")])
    assert not sync.server_validated([deployment], [config, hook("post-upgrade")])
    assert not sync.server_validated([deployment], [config, widget])
    assert not sync.server_validated([deployment], [config], rendered_as_install=True)
    new_ns = ResourceChange(Action.CREATE, "v1", "Namespace", None, "ns")
    assert not sync.server_validated([new_ns, deployment], [config])
