"""The dev cluster runs the Kubernetes users run: v1.36, with the APIs today's charts need.

Charts such as podinfo, ingress-nginx or argo-cd refuse clusters older than 1.21-1.25 through their
`kubeVersion`, and use `policy/v1` and `autoscaling/v2`, which a v1.20 cluster does not serve.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from devcluster import ClusterHandle
from devcluster.cluster import K8S_VERSION
from devcluster.kube import Kube
from tests.support.cli import apply, plan_json, resources
from tests.support.kube import kubectl
from tests.support.paths import TESTDATA
from tests.support.repo import commit, git

CHART = TESTDATA / "charts" / "podinfo-like"


def test_server_and_kubectl_are_1_36(dev_cluster: ClusterHandle) -> None:
    versions = json.loads(kubectl("version", "-o", "json"))
    assert versions["serverVersion"]["gitVersion"] == K8S_VERSION == "v1.36.3"
    assert (versions["serverVersion"]["major"], versions["serverVersion"]["minor"]) == ("1", "36")
    # kubectl comes from the same build, so client and server match.
    assert versions["clientVersion"]["gitVersion"] == "v1.36.3"


def test_serves_the_apis_current_charts_use(dev_cluster: ClusterHandle) -> None:
    served = set(kubectl("api-versions").split())
    assert {"policy/v1", "autoscaling/v2", "batch/v1", "networking.k8s.io/v1", "discovery.k8s.io/v1"} <= served
    # Gone since 1.25/1.26: a chart still using them must fail here as it would for users.
    assert "policy/v1beta1" not in served
    assert "autoscaling/v2beta2" not in served


def _podinfo_repo(tmp_path: Path, default_ns: str, prod_ns: str) -> Path:
    repo = tmp_path / "repo"
    (repo / "environments").mkdir(parents=True)
    shutil.copytree(CHART, repo / "charts" / "podinfo-like")
    definition = {
        "app": "podinfo",
        "chart": "../charts/podinfo-like",
        "environments": [
            {"name": "default", "namespace": default_ns, "values": {"replicaCount": 1}},
            {"name": "prod", "namespace": prod_ns, "release": "podinfo-prod", "values": {"replicaCount": 2}},
        ],
    }
    (repo / "environments" / "podinfo.yaml").write_text(yaml.safe_dump(definition, sort_keys=False))
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "podinfo-like app")
    return repo


def test_chart_needing_1_25_with_a_policy_v1_pdb_applies_through_prod(
    tmp_path: Path, kube: Kube, make_namespace: Callable[[], str]
) -> None:
    default_ns, prod_ns = make_namespace(), make_namespace()
    repo = _podinfo_repo(tmp_path, default_ns, prod_ns)

    planned = plan_json(repo, "prod", "--detailed-exitcode", code=2)
    kinds = {(c["apiVersion"], c["kind"]) for c in resources(planned, "prod")}
    assert ("policy/v1", "PodDisruptionBudget") in kinds
    assert ("autoscaling/v2", "HorizontalPodAutoscaler") in kinds

    run = apply(repo, "prod", code=0)
    assert [e["name"] for e in run.doc["environments"]] == ["default", "prod"]
    assert run.release("prod")["health"] == "Healthy", run.stderr

    pdb = kube.get(f"/apis/policy/v1/namespaces/{prod_ns}/poddisruptionbudgets/podinfo-prod")
    assert pdb["spec"]["minAvailable"] == 1
    hpa = kube.get(f"/apis/autoscaling/v2/namespaces/{prod_ns}/horizontalpodautoscalers/podinfo-prod")
    assert hpa["spec"]["minReplicas"] == 2
    deployment = kube.get(f"/apis/apps/v1/namespaces/{prod_ns}/deployments/podinfo-prod")
    assert deployment["status"].get("readyReplicas", 0) >= 1

    # Applied means nothing left to do.
    plan_json(repo, "prod", "--detailed-exitcode", code=0)
