"""helm's failures, classified once (promote.helm.failure), so callers branch on a class, not on text.

The stderr texts are helm's own, as Helm 3.17 and Helm 4.3 print them; the last tests make real helm fail.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from promote import chart
from promote.errors import (
    ChartError,
    HelmConflict,
    HelmError,
    HelmTimeout,
    ReleaseBusy,
    ReleaseNotFound,
    exit_code_for,
)
from promote.helm.client import connect
from promote.helm.failure import classify
from tests.support.charts import small_chart

CONFLICT = (
    'level=WARN msg="upgrade failed" name=python-app error="conflict occurred while applying object '
    't-1/python-app apps/v1, Kind=Deployment: Apply failed with 1 conflict: conflict with \\"kubectl\\" '
    'with subresource \\"scale\\" using apps/v1: .spec.replicas"\n'
    "Error: UPGRADE FAILED: conflict occurred while applying object t-1/python-app apps/v1, Kind=Deployment: "
    'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas\n'
)


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        (CONFLICT, HelmConflict),
        ("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n", ReleaseBusy),
        ("Error: UPGRADE FAILED: timed out waiting for the condition\n", HelmTimeout),
        ("Error: UPGRADE FAILED: context deadline exceeded\n", HelmTimeout),
        ("Error: release: not found\n", ReleaseNotFound),
        ('Error: UPGRADE FAILED: "r" has no deployed releases\n', ReleaseNotFound),
        (
            "Error: chart requires kubeVersion: >=1.99.0-0 which is incompatible with Kubernetes v1.36.3\n",
            ChartError,
        ),
        ('Error: parse error at (c/templates/cm.yaml:3): function "nope" not defined\n', ChartError),
        ("Error: execution error at (c/templates/cm.yaml:1:4): image.tag is required\n", ChartError),
        ('Error: Kubernetes cluster unreachable: Get "https://127.0.0.1:1/version": connection refused\n', HelmError),
    ],
)
def test_stderr_is_classified(stderr: str, kind: type[HelmError]) -> None:
    error = classify("upgrade r", stderr)
    assert type(error) is kind
    assert exit_code_for(error) == 1


def test_the_message_is_one_paragraph_without_helms_debug_advice() -> None:
    error = classify("template r", "Error: template: c/templates/cm.yaml:1: bad\nUse --debug flag to render out\n")
    assert str(error) == "helm template r failed: Error: template: c/templates/cm.yaml:1: bad"


def _chart(tmp_path: Path, chart_yaml: str, template: str) -> chart.ChartInfo:
    return chart.chart_info(small_chart(tmp_path, {"Chart.yaml": chart_yaml, "templates/cm.yaml": template}))


def _render(info: chart.ChartInfo) -> None:
    helm = connect(kube_version="v1.36.3")
    asyncio.run(helm.template(info, release="r", namespace="ns", values={}, is_upgrade=False))


def test_real_helm_refusing_the_kube_version_is_a_chart_error(tmp_path: Path) -> None:
    info = _chart(
        tmp_path,
        "apiVersion: v2\nname: c\nversion: 0.1.0\nkubeVersion: '>=1.99.0-0'\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    )
    with pytest.raises(ChartError, match="kubeVersion"):
        _render(info)


def test_real_helm_template_error_is_a_chart_error(tmp_path: Path) -> None:
    info = _chart(tmp_path, "apiVersion: v2\nname: c\nversion: 0.1.0\n", '{{ required "x is required" .Values.x }}\n')
    with pytest.raises(ChartError, match="x is required"):
        _render(info)
