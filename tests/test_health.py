"""Unit tests of promote.health.check: one YAML fixture per state, one assertion each (as gitops-engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from promote.health import HealthStatus, check

FIXTURES = Path(__file__).parent / "testdata" / "health"

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
