"""`promote apply` on the real local control plane: ordered sync with hooks, the promotion record,
idempotence, values flowing down the chain, and a failing hook rolled back without touching prod."""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devcluster.kube import Kube
from tests.support.cli import Run, apply, promote_json
from tests.support.helm import helm_history, helm_values, record_of, storage_names, values_digest
from tests.support.kube import available, deployment, image_of
from tests.support.repo import (
    APP,
    PROD_RELEASE,
    commit,
    edit_env,
    env_values,
    fail_pre_sync,
    git,
    make_repo,
    set_app_values,
)


def _first(events: list[dict[str, Any]], **match: str) -> int:
    """Index of the first event with all the given fields (fails when there is none)."""
    for i, ev in enumerate(events):
        if all(ev[k] == v for k, v in match.items()):
            return i
    raise AssertionError(f"no event with {match} among:\n" + "\n".join(str(e) for e in events))


def _time(ev: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(ev["time"])


def _assert_hooks_in_order(run: Run, env: str, deployment_name: str) -> None:
    """PreSync pod Succeeded, then the Deployment created, then (only then) the PostSync pod; all healthy.

    Whether the Deployment shows Healthy before the PostSync pod appears is a race: helm judges readiness
    from the ReplicaSet, a moment before the Deployment's own status says so.
    """
    events = run.events(env)
    pre_done = _first(events, kind="Pod", hook="PreSync", status="Succeeded")
    created = _first(events, kind="Deployment", name=deployment_name, status="Synced")
    post_seen = _first(events, hook="PostSync")
    assert pre_done < created < post_seen, events
    assert _time(events[pre_done]) <= _time(events[created]) <= _time(events[post_seen])
    # The Deployment became healthy, and the post-sync hook ran to completion too.
    _first(events, kind="Deployment", name=deployment_name, health="Healthy")
    _first(events, kind="Pod", hook="PostSync", status="Succeeded")


def test_reference_scenario(tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)
    head = git(repo, "rev-parse", "HEAD").strip()
    started = datetime.now(UTC)

    first = apply(repo, "prod", code=0)

    assert first.doc["error"] is None
    assert first.doc["revision"] == head
    assert [e["name"] for e in first.doc["environments"]] == ["default", "prod"]
    assert [e["outcome"] for e in first.doc["environments"]] == ["synced", "synced"]
    assert available(deployment(kube, default_ns, APP)) == (1, 1)
    assert available(deployment(kube, prod_ns, PROD_RELEASE)) == (3, 3)

    _assert_hooks_in_order(first, "default", APP)
    _assert_hooks_in_order(first, "prod", PROD_RELEASE)
    # default was synced before prod: every default event precedes every prod event.
    envs = [e["env"] for e in first.doc["events"]]
    assert envs == sorted(envs, key=["default", "prod"].index)
    assert _time(first.events("default")[-1]) <= _time(first.events("prod")[0])

    # The promotion record, in each helm revision's description.
    (default_rev,) = helm_history(default_ns, APP)
    (prod_rev,) = helm_history(prod_ns, PROD_RELEASE)
    records = {"default": record_of(default_rev), "prod": record_of(prod_rev)}
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    for env, ns, release in (("default", default_ns, APP), ("prod", prod_ns, PROD_RELEASE)):
        rec = records[env]
        assert rec["env"] == env
        assert rec["revision"] == head
        assert rec["by"] == who
        assert rec["action"] == "sync"
        assert len(rec["artifact"]) == 64
        assert rec["values"] == values_digest(helm_values(ns, release))
        assert started - timedelta(seconds=1) <= datetime.fromisoformat(rec["at"]) <= datetime.now(UTC)
    # One artifact promoted down the chain; the environments' values differ (replicaCount).
    assert records["default"]["artifact"] == records["prod"]["artifact"]
    assert records["default"]["values"] != records["prod"]["values"]
    assert records["default"]["at"] < records["prod"]["at"]

    # Idempotent: a second apply makes no helm revision and says so.
    second = apply(repo, "prod", code=0)
    assert [e["outcome"] for e in second.doc["environments"]] == ["unchanged", "unchanged"]
    assert [second.release(e)["outcome"] for e in ("default", "prod")] == ["unchanged", "unchanged"]
    assert storage_names(kube, default_ns, APP) == [f"sh.helm.release.v1.{APP}.v1"]
    assert storage_names(kube, prod_ns, PROD_RELEASE) == [f"sh.helm.release.v1.{PROD_RELEASE}.v1"]

    history = promote_json(repo, "history", "prod", code=0).doc["history"]
    assert [(h["release"], h["revision"], h["status"]) for h in history] == [(PROD_RELEASE, 1, "deployed")]
    (entry,) = history
    assert entry["gitRevision"] == head
    assert entry["artifact"] == records["prod"]["artifact"]
    assert entry["values"] == records["prod"]["values"]
    assert entry["by"] == who
    assert entry["action"] == "sync"

    status = promote_json(repo, "status", code=0).doc
    assert status["revision"] == head
    assert [
        (s["env"], s["sync"], s["health"], s["helmRevision"], s["promotedRevision"]) for s in status["releases"]
    ] == [
        ("default", "Synced", "Healthy", 1, head),
        ("prod", "Synced", "Healthy", 1, head),
    ]


def test_values_change_flows_from_default_to_prod(tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)
    first = apply(repo, "prod", code=0)
    old_artifact = record_of(helm_history(prod_ns, PROD_RELEASE)[-1])["artifact"]
    assert image_of(deployment(kube, prod_ns, PROD_RELEASE)) == "registry.local/python-app:1.0.0"

    set_app_values(repo, {"image": {"tag": "1.1.0"}})
    head = commit(repo, "python-app 1.1.0")
    second = apply(repo, "prod", code=0)

    assert [e["outcome"] for e in first.doc["environments"]] == ["synced", "synced"]
    assert [e["outcome"] for e in second.doc["environments"]] == ["synced", "synced"]
    for ns, release in ((default_ns, APP), (prod_ns, PROD_RELEASE)):
        assert image_of(deployment(kube, ns, release)) == "registry.local/python-app:1.1.0"
        revisions = helm_history(ns, release)
        assert [(r["revision"], r["status"]) for r in revisions] == [(1, "superseded"), (2, "deployed")]
        assert record_of(revisions[-1])["revision"] == head
    assert available(deployment(kube, default_ns, APP)) == (1, 1)
    assert available(deployment(kube, prod_ns, PROD_RELEASE)) == (3, 3)
    new_default = record_of(helm_history(default_ns, APP)[-1])["artifact"]
    new_prod = record_of(helm_history(prod_ns, PROD_RELEASE)[-1])["artifact"]
    assert new_default == new_prod != old_artifact


def test_hook_failure_in_default_rolls_back_and_leaves_prod_alone(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)
    apply(repo, "prod", code=0)
    good_values = helm_values(default_ns, APP)
    good_default = deployment(kube, default_ns, APP)
    good_prod = deployment(kube, prod_ns, PROD_RELEASE)
    assert good_default is not None and good_prod is not None

    # A change that would alter the Deployment (config checksum) and a pre-sync hook that fails.
    edit_env(
        repo, "default", values={**env_values(repo, "default"), **fail_pre_sync(), "config": {"greeting": "bonjour"}}
    )
    commit(repo, "default: a failing migration")
    run = apply(repo, "prod", "--timeout", "60s", code=1)

    assert run.doc["exitCode"] == 1
    assert "python-app-pre-sync" in run.doc["error"]
    assert "failed" in run.doc["error"]
    assert [(e["name"], e["outcome"]) for e in run.doc["environments"]] == [("default", "failed")]
    assert run.release("default")["outcome"] == "failed"
    assert any(
        e["kind"] == "Pod" and e["hook"] == "PreSync" and e["status"] == "Failed" for e in run.events("default")
    ), run.doc["events"]
    assert not run.events("prod")

    # default is back on the good revision: its values, and the Deployment's spec, are the old ones.
    revisions = helm_history(default_ns, APP)
    assert [r["status"] for r in revisions][-1] == "deployed"
    assert helm_values(default_ns, APP) == good_values
    now_default = deployment(kube, default_ns, APP)
    assert now_default is not None
    assert now_default["spec"]["template"] == good_default["spec"]["template"]
    assert now_default["metadata"]["generation"] == good_default["metadata"]["generation"]
    assert available(now_default) == (1, 1)

    # prod was never touched.
    assert [r["revision"] for r in helm_history(prod_ns, PROD_RELEASE)] == [1]
    now_prod = deployment(kube, prod_ns, PROD_RELEASE)
    assert now_prod is not None
    assert now_prod["metadata"]["resourceVersion"] == good_prod["metadata"]["resourceVersion"]
