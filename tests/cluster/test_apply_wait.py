"""Apply of a chart without post-* hooks: helm applies without `--wait`, promote waits for health itself.

What `--atomic` would do must still happen: an unready rollout or a failed helm run is rolled back to the
last good revision (or uninstalled, when there is none), later environments stay untouched, and an apply
killed while it waited leaves nothing a re-run does not finish: it checks the unverified revision and
stamps it healthy, or restores the revision before it.
"""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devcluster.kube import Kube
from tests.support.cli import apply, promote_json, start_promote
from tests.support.helm import helm_history, helm_values, synced_stamps
from tests.support.kube import available, deployment, lease, pods
from tests.support.repo import APP, PROD_RELEASE, commit, edit_env, env_values, fail_pre_sync, make_repo
from tests.support.wait import wait_for

WHO = f"{getpass.getuser()}@{socket.gethostname()}"
NO_POST_HOOK = {"hooks": {"postSync": {"enabled": False}}}


def _repo(tmp_path: Path, default_ns: str, prod_ns: str) -> Path:
    return make_repo(tmp_path, default_ns, prod_ns, top={"values": NO_POST_HOOK})


NEVER_READY = {"sim.promote.dev/never-ready": "true"}


def _change_default_pods(repo: Path, annotations: dict[str, str], message: str) -> None:
    """Commit a change of default's values (config, so a rollout) that gives its pods these annotations."""
    values = {**env_values(repo, "default"), "podAnnotations": annotations, "config": {"greeting": "changed"}}
    edit_env(repo, "default", values=values)
    commit(repo, message)


def test_sync_without_post_hooks_is_stamped_healthy(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    run = apply(repo, "prod", code=0)
    assert [e["outcome"] for e in run.doc["environments"]] == ["synced", "synced"]
    assert run.release("default")["health"] == "Healthy"
    assert not [e for e in run.doc["events"] if e["hook"] == "PostSync"]
    # However quickly the rollout ended, its final state is shown.
    for env, name in (("default", APP), ("prod", PROD_RELEASE)):
        last = [e for e in run.events(env) if e["kind"] == "Deployment" and e["name"] == name][-1]
        assert (last["status"], last["health"]) == ("Synced", "Healthy"), run.events(env)
    assert available(deployment(kube, default_ns, APP)) == (1, 1)
    assert available(deployment(kube, prod_ns, PROD_RELEASE)) == (3, 3)
    assert synced_stamps(kube, default_ns, APP)[1] is not None


def test_unready_rollout_is_rolled_back_and_prod_left_alone(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "default", code=0)
    good_values = helm_values(default_ns, APP)
    good = deployment(kube, default_ns, APP)
    assert good is not None

    _change_default_pods(repo, NEVER_READY, "default: pods that never become ready")
    run = apply(repo, "prod", "--timeout", "5s", code=1)

    # Our own wait saw it, not helm's (helm did not wait): the message says what we found and did.
    assert f"release {APP} in {default_ns} is Progressing after 5s" in run.doc["error"]
    assert "rolled back to revision 1" in run.doc["error"]
    assert "helm rolled it back" not in run.doc["error"]
    assert [(e["name"], e["outcome"]) for e in run.doc["environments"]] == [("default", "failed")]

    history = helm_history(default_ns, APP)
    assert [(r["revision"], r["status"]) for r in history] == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    assert history[2]["description"] == "Rollback to 1"
    assert helm_values(default_ns, APP) == good_values
    wait_for("the old pods to serve again", lambda: available(deployment(kube, default_ns, APP)) == (1, 1), 60)
    now = deployment(kube, default_ns, APP)
    assert now is not None and now["spec"]["template"] == good["spec"]["template"]
    assert helm_history(prod_ns, PROD_RELEASE) == []
    assert lease(kube, default_ns, "promote-default") is None


def test_unready_first_install_is_uninstalled(tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    _change_default_pods(repo, NEVER_READY, "default: pods that never become ready")
    run = apply(repo, "default", "--timeout", "4s", code=1)
    assert "uninstalled (it had no earlier good revision)" in run.doc["error"]
    assert helm_history(default_ns, APP) == []
    assert deployment(kube, default_ns, APP) is None


def test_failed_helm_run_is_rolled_back(tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "default", code=0)
    good_values = helm_values(default_ns, APP)

    edit_env(repo, "default", values={**env_values(repo, "default"), **fail_pre_sync(), "config": {"greeting": "x"}})
    commit(repo, "default: a failing migration")
    run = apply(repo, "default", "--timeout", "60s", code=1)

    assert f"sync of release {APP} in {default_ns} failed, rolled back to revision 1" in run.doc["error"]
    assert "python-app-pre-sync" in run.doc["error"]
    history = helm_history(default_ns, APP)
    # Without --atomic helm leaves its revision failed; we restored revision 1, as --atomic would have.
    assert [(r["revision"], r["status"]) for r in history] == [(1, "superseded"), (2, "failed"), (3, "deployed")]
    assert history[2]["description"] == "Rollback to 1"
    assert helm_values(default_ns, APP) == good_values


def _kill_while_waiting(repo: Path, logs: Path, kube: Kube, namespace: str) -> int:
    """Start an apply of default whose new pods are slow or never ready, and SIGKILL it while it waits."""
    victim = start_promote(repo, logs, "victim", "apply", "default", "--lock-ttl", "5s", "--timeout", "120s")

    def deployed_unverified() -> bool:
        history = helm_history(namespace, APP)
        return bool(history) and history[-1]["revision"] == 2 and history[-1]["status"] == "deployed"

    wait_for("helm to deploy revision 2 (promote then waits for health)", deployed_unverified, 60)
    victim.kill()
    assert synced_stamps(kube, namespace, APP)[2] is None, (
        "the victim was killed before it could see revision 2 healthy"
    )
    held = lease(kube, namespace, "promote-default")
    assert held is not None and held["spec"]["holderIdentity"].endswith(f"/{victim.pid}")
    wait_for("the victim's Lease to expire", lambda: _lease_expired(kube, namespace), 30)
    return victim.pid


def _lease_expired(kube: Kube, namespace: str) -> bool:
    held = lease(kube, namespace, "promote-default")
    if held is None:
        return True
    renewed = datetime.strptime(held["spec"]["renewTime"].replace("Z", ""), "%Y-%m-%dT%H:%M:%S.%f")
    ttl = timedelta(seconds=int(held["spec"]["leaseDurationSeconds"]))
    return renewed.replace(tzinfo=UTC) + ttl < datetime.now(UTC)


def test_kill_9_while_waiting_then_rerun_verifies_the_revision(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "default", code=0)
    _change_default_pods(repo, {"sim.promote.dev/delay": "8s"}, "default: slow pods")

    victim = _kill_while_waiting(repo, tmp_path / "logs", kube, default_ns)

    # The plan says so, and a pipeline's --detailed-exitcode sees work to do.
    (before,) = promote_json(repo, "plan", "default", "--detailed-exitcode", code=2).doc["environments"]
    assert [(r["currentRevision"], r["currentUnverified"]) for r in before["releases"]] == [(2, True)]

    rerun = apply(repo, "default", "--lock-ttl", "5s", "--timeout", "60s", code=0)
    recovering = [e for e in rerun.doc["events"] if e["kind"] == "Release" and "recover" in e["message"]]
    assert [e["message"] for e in recovering] == [
        f"recovering: revision 2 was never seen healthy (the apply of {WHO}/{victim} crashed while waiting); "
        "waiting for it",
        "recovered: revision 2 is healthy",
    ]
    # The revision became healthy: stamped, and no further helm run was needed.
    assert rerun.release("default")["outcome"] == "unchanged"
    assert [(r["revision"], r["status"]) for r in helm_history(default_ns, APP)] == [(1, "superseded"), (2, "deployed")]
    assert synced_stamps(kube, default_ns, APP)[2] is not None
    assert available(deployment(kube, default_ns, APP)) == (1, 1)
    (after,) = promote_json(repo, "plan", "default", "--detailed-exitcode", code=0).doc["environments"]
    assert [r["currentUnverified"] for r in after["releases"]] == [False]
    assert all(p["metadata"]["annotations"].get("sim.promote.dev/delay") == "8s" for p in _app_pods(kube, default_ns))


def test_kill_9_while_waiting_on_a_bad_rollout_then_rerun_restores_the_last_good(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "default", code=0)
    good_values = helm_values(default_ns, APP)
    _change_default_pods(repo, NEVER_READY, "default: pods that never become ready")

    _kill_while_waiting(repo, tmp_path / "logs", kube, default_ns)

    rerun = apply(repo, "default", "--lock-ttl", "5s", "--timeout", "4s", code=1)
    messages = [e["message"] for e in rerun.doc["events"] if e["kind"] == "Release"]
    assert any(m.startswith("recovering: revision 2 was never seen healthy (the apply of") for m in messages), messages
    assert any(m == "recovered: rolled back to revision 1" for m in messages), messages
    # The re-run restored revision 1 and stopped there: the change that just failed is not tried again.
    history = helm_history(default_ns, APP)
    assert [(r["revision"], r["status"]) for r in history] == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    assert history[2]["description"] == "Rollback to 1"
    assert helm_values(default_ns, APP) == good_values
    assert "is Progressing after 4s" in rerun.doc["error"]
    assert "revision 2 was never seen healthy, rolled back to revision 1" in rerun.doc["error"]


def _app_pods(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    return [
        p
        for p in pods(kube, namespace)
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == APP
        and not p["metadata"].get("deletionTimestamp")
    ]


def test_rollback_of_an_unverified_revision_does_not_wait_for_it(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "default", code=0)
    good_values = helm_values(default_ns, APP)
    _change_default_pods(repo, NEVER_READY, "default: pods that never become ready")
    _kill_while_waiting(repo, tmp_path / "logs", kube, default_ns)

    run = promote_json(repo, "rollback", "default", "--timeout", "60s", code=0)
    assert not [e for e in run.doc["events"] if "recover" in e["message"]], run.doc["events"]
    (rel,) = run.doc["environments"][0]["releases"]
    assert rel["outcome"] == "rolled-back" and rel["health"] == "Healthy"
    history = helm_history(default_ns, APP)
    assert [(r["revision"], r["status"]) for r in history][-1] == (3, "deployed")
    assert helm_values(default_ns, APP) == good_values
    assert synced_stamps(kube, default_ns, APP)[3] is not None
