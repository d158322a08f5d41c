"""`promote plan` with the helm PROMOTE_HELM names, on the real local control plane: Helm 3 and Helm 4 plan
the same objects, and a PROMOTE_HELM that is not a binary is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devcluster.cluster import helm4_binary
from tests.support.cli import cli, resources
from tests.support.repo import make_repo


def _unchosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMOTE_HELM", raising=False)


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
