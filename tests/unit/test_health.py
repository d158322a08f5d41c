"""Unit tests of promote.health.check: one YAML fixture per state, one assertion each (as gitops-engine)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from promote.health import KINDS, HealthStatus, check, group_kind, kind_of
from tests.support.paths import TESTDATA

FIXTURES = TESTDATA / "health"

EXPECTED = {
    "deployment-progressing": HealthStatus.PROGRESSING,
    "deployment-healthy": HealthStatus.HEALTHY,
    "deployment-old-replicas-terminating": HealthStatus.PROGRESSING,
    "deployment-generation-not-observed": HealthStatus.PROGRESSING,
    "deployment-paused": HealthStatus.SUSPENDED,
    "deployment-deadline-exceeded": HealthStatus.DEGRADED,
    "statefulset-healthy": HealthStatus.HEALTHY,
    "statefulset-rolling-update": HealthStatus.PROGRESSING,
    "statefulset-not-ready": HealthStatus.PROGRESSING,
    "daemonset-healthy": HealthStatus.HEALTHY,
    "daemonset-progressing": HealthStatus.PROGRESSING,
    "job-complete": HealthStatus.HEALTHY,
    "job-failed": HealthStatus.DEGRADED,
    "job-running": HealthStatus.PROGRESSING,
    "job-suspended": HealthStatus.SUSPENDED,
    "pod-crashloop": HealthStatus.DEGRADED,
    "pod-createcontainerconfigerror": HealthStatus.DEGRADED,
    "pod-succeeded": HealthStatus.HEALTHY,
    "pod-failed": HealthStatus.DEGRADED,
    "pod-running-ready": HealthStatus.HEALTHY,
    "pod-running-not-ready": HealthStatus.PROGRESSING,
    "pvc-bound": HealthStatus.HEALTHY,
    "pvc-pending": HealthStatus.PROGRESSING,
    "pvc-lost": HealthStatus.DEGRADED,
    "configmap": HealthStatus.HEALTHY,
    "service-clusterip": HealthStatus.HEALTHY,
    "service-loadbalancer-pending": HealthStatus.PROGRESSING,
    "service-loadbalancer-ready": HealthStatus.HEALTHY,
    "service-loadbalancer-external-ips": HealthStatus.HEALTHY,
    "volcano-job-completed": HealthStatus.HEALTHY,
}


def _load(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    return obj


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize(("fixture", "expected"), sorted(EXPECTED.items()))
def test_health(fixture: str, expected: HealthStatus) -> None:
    assert check(_load(fixture)).status == expected


def test_absent_object_is_missing() -> None:
    assert check(None).status == HealthStatus.MISSING


def test_checks_are_picked_by_group_and_kind() -> None:
    core_job = _load("job-running")
    assert group_kind(core_job) == ("batch", "Job") and kind_of(core_job).check is not None
    assert group_kind(_load("service-clusterip")) == ("", "Service")
    # Same kind, another group: no check of ours, healthy once it exists.
    assert kind_of(_load("volcano-job-completed")).check is None


@pytest.mark.parametrize(
    ("api_version", "kind", "runs_pods", "long_running", "scales"),
    [
        ("apps/v1", "Deployment", True, True, True),
        ("apps/v1", "StatefulSet", True, True, True),
        ("apps/v1", "DaemonSet", True, True, False),
        ("apps/v1", "ReplicaSet", False, False, True),
        ("batch/v1", "Job", True, False, False),
        ("v1", "Service", False, False, False),
        ("serving.knative.dev/v1", "Service", False, False, False),
        ("argoproj.io/v1alpha1", "Rollout", False, False, False),
    ],
)
def test_the_registry_says_which_kinds_run_pods_and_scale(
    api_version: str, kind: str, runs_pods: bool, long_running: bool, scales: bool
) -> None:
    k = kind_of({"apiVersion": api_version, "kind": kind})
    assert (k.runs_pods, k.long_running, k.scales) == (runs_pods, long_running, scales)


def test_long_running_kinds_run_pods() -> None:
    assert all(k.runs_pods for k in KINDS.values() if k.long_running)
