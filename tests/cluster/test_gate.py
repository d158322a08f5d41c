"""The promotion gate and the target's policy on the real local control plane: a blocked promotion
exits 3 and leaves the gated environment untouched."""

from __future__ import annotations

import re
from pathlib import Path

from devcluster.kube import Kube
from tests.support.cli import apply
from tests.support.helm import helm_history, record_of, storage_names
from tests.support.kube import available, deployment
from tests.support.repo import (
    APP,
    DEFINITION,
    PROD_RELEASE,
    commit,
    edit_env,
    env_values,
    git,
    make_repo,
    set_app_values,
)


def _nothing_in(kube: Kube, namespace: str, release: str) -> None:
    assert helm_history(namespace, release) == []
    assert storage_names(kube, namespace, release) == []
    assert deployment(kube, namespace, release) is None


def test_soak_blocks_prod_after_syncing_default(tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns, extra_prod={"soak": "10m"})

    run = apply(repo, "prod", code=3)

    assert run.doc["exitCode"] == 3
    assert [(e["name"], e["outcome"]) for e in run.doc["environments"]] == [("default", "synced"), ("prod", "blocked")]
    soaked = r"default has run artifact [0-9a-f]{8} for \d+s; soak 10m: 9m\d\ds left, gate opens \d\d:\d\d:\d\d UTC"
    assert re.search(soaked, run.doc["error"]), run.doc["error"]
    (soak,) = [g for g in run.env("prod")["gate"] if g["name"] == "soak"]
    assert soak["result"] == "fail"
    assert {g["name"]: g["result"] for g in run.env("prod")["gate"]} == {
        "clean-tree": "pass",
        "upstream-artifact": "pass",
        "upstream-health": "pass",
        "soak": "fail",
    }
    assert available(deployment(kube, default_ns, APP)) == (1, 1)
    _nothing_in(kube, prod_ns, PROD_RELEASE)


def test_only_prod_is_blocked_while_default_runs_another_artifact(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)
    apply(repo, "default", code=0)
    old_artifact = record_of(helm_history(default_ns, APP)[-1])["artifact"]
    set_app_values(repo, {"image": {"tag": "2.0.0"}})
    commit(repo, "python-app 2.0.0")

    run = apply(repo, "prod", "--only", code=3)

    assert [(e["name"], e["outcome"]) for e in run.doc["environments"]] == [("prod", "blocked")]
    assert f"default runs artifact {old_artifact[:8]}" in run.doc["error"]
    assert "apply default first" in run.doc["error"]
    # --only did not sync default either.
    assert [r["revision"] for r in helm_history(default_ns, APP)] == [1]
    _nothing_in(kube, prod_ns, PROD_RELEASE)


def test_only_prod_is_blocked_when_default_never_ran(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)

    run = apply(repo, "prod", "--only", code=3)

    assert [(e["name"], e["outcome"]) for e in run.doc["environments"]] == [("prod", "blocked")]
    assert "default has no deployed release of python-app" in run.doc["error"]
    _nothing_in(kube, default_ns, APP)
    _nothing_in(kube, prod_ns, PROD_RELEASE)


def test_dirty_tree_blocks_prod_unless_allowed(tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)
    head = git(repo, "rev-parse", "HEAD").strip()
    apply(repo, "default", code=0)
    # An uncommitted change to a definition file (prod's replica count only: default's artifact stays).
    edit_env(repo, "prod", values={**env_values(repo, "prod"), "replicaCount": 4})

    blocked = apply(repo, "prod", code=3)

    # Refused before any environment is touched (default is not even applied), naming prod's gate.
    assert [(e["name"], e["outcome"]) for e in blocked.doc["environments"]] == [("prod", "blocked")]
    assert blocked.doc["notReached"] == ["default"]
    assert f"uncommitted changes in {DEFINITION}" in blocked.doc["error"]
    assert "--allow-dirty" in blocked.doc["error"]
    _nothing_in(kube, prod_ns, PROD_RELEASE)

    allowed = apply(repo, "prod", "--allow-dirty", code=0)

    assert [(e["name"], e["outcome"]) for e in allowed.doc["environments"]] == [
        ("default", "unchanged"),
        ("prod", "synced"),
    ]
    (clean,) = [g for g in allowed.env("prod")["gate"] if g["name"] == "clean-tree"]
    assert clean["result"] == "pass"
    assert available(deployment(kube, prod_ns, PROD_RELEASE)) == (4, 4)
    # The record says the promoted definitions were not a commit.
    assert record_of(helm_history(prod_ns, PROD_RELEASE)[-1])["revision"] == f"{head}-dirty"


def test_policy_violation_in_target_blocks_apply(tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns, prod_values={"replicaCount": 1})

    run = apply(repo, "prod", code=3)

    assert run.doc["exitCode"] == 3
    assert "blocked by the policy of prod" in run.doc["error"]
    assert "replicaCount" in run.doc["error"]
    # Checked before anything is synced: not even default was touched.
    _nothing_in(kube, default_ns, APP)
    _nothing_in(kube, prod_ns, PROD_RELEASE)
