"""The environment lock with real separate processes: concurrent applies take turns, a lock timeout
names the holder, and an apply killed with SIGKILL leaves nothing that blocks the next one for long."""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devcluster.kube import Kube
from tests.support.cli import Process, apply, promote_json, start_promote
from tests.support.helm import helm_history
from tests.support.kube import available, deployment, lease, pods
from tests.support.repo import APP, commit, delay_pre_sync, edit_env, env_values, make_repo, set_app_values
from tests.support.wait import wait_for

WHO = f"{getpass.getuser()}@{socket.gethostname()}"
LEASE = "promote-default"


def _waiting_line(ns: str) -> re.Pattern[str]:
    """The progress line of an apply waiting for the lock, capturing the holder it names."""
    return re.compile(rf"\sLease\s+{re.escape(ns)}\s+{LEASE}\s+Waiting\s.*lock held by (?P<holder>.+)$", re.M)


def _holder_pid(kube: Kube, ns: str) -> int | None:
    spec = (lease(kube, ns, LEASE) or {}).get("spec") or {}
    holder = str(spec.get("holderIdentity") or "")
    return int(holder.rsplit("/", 1)[1]) if holder.startswith(WHO + "/") else None


def _parse_ts(ts: str) -> datetime:
    return datetime.strptime(ts.replace("Z", ""), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


def test_concurrent_applies_take_turns(tmp_path: Path, kube: Kube, namespace: str) -> None:
    repo = make_repo(tmp_path, namespace, f"{namespace}-prod-unused", default_values={"replicaCount": 1})
    edit_env(repo, "default", values={**env_values(repo, "default"), **delay_pre_sync("5s")})
    commit(repo, "slow migrations")
    args = ("apply", "default", "--lock-timeout", "120s", "-o", "json")

    # Wide enough that the progress table keeps its NAMESPACE column, which says whose lock it is.
    wide = {"COLUMNS": "200"}
    procs = [start_promote(repo, tmp_path / "logs", name, *args, env=wide) for name in ("a", "b")]
    codes = [p.wait(timeout=240) for p in procs]

    assert codes == [0, 0], [p.stderr() for p in procs]
    waiters = [p for p in procs if _waiting_line(namespace).search(p.stderr())]
    assert len(waiters) == 1, [p.stderr() for p in procs]
    (waiter,) = waiters
    (holder,) = [p for p in procs if p is not waiter]
    m = _waiting_line(namespace).search(waiter.stderr())
    assert m is not None
    # Either the holder by name, or (when both raced for a fresh Lease) the one that just took it.
    assert m["holder"] in (f"{WHO}/{holder.pid}", "another apply (it just took the lock)")
    # The waiter waited while the holder worked, and did nothing of its own before the holder was done
    # (it finds the same commit already applied: see the next test).
    holder_events = holder.result()["events"]
    waiter_events = waiter.result()["events"]
    waiting = [e for e in waiter_events if e["kind"] == "Lease"]
    waiter_work = [e for e in waiter_events if e["kind"] != "Lease"]
    assert holder_events and waiting
    assert waiting[0]["time"] <= holder_events[-1]["time"]
    assert all(holder_events[-1]["time"] <= e["time"] for e in waiter_work)
    assert available(deployment(kube, namespace, APP)) == (1, 1)
    # Both gave the lock up.
    assert lease(kube, namespace, LEASE) is None


def test_waiter_reads_the_release_again_and_does_not_upgrade_twice(tmp_path: Path, kube: Kube, namespace: str) -> None:
    repo = make_repo(tmp_path, namespace, f"{namespace}-prod-unused")
    edit_env(repo, "default", values={**env_values(repo, "default"), **delay_pre_sync("5s")})
    commit(repo, "slow migrations")
    args = ("apply", "default", "--lock-timeout", "120s", "-o", "json")

    # Wide enough that the progress table keeps its NAMESPACE column, which says whose lock it is.
    wide = {"COLUMNS": "200"}
    procs = [start_promote(repo, tmp_path / "logs", name, *args, env=wide) for name in ("a", "b")]
    codes = [p.wait(timeout=240) for p in procs]

    assert codes == [0, 0], [p.stderr() for p in procs]
    # The same commit applied twice at once is one helm revision: the one that waited finds it done.
    outcomes = sorted(p.result()["environments"][0]["outcome"] for p in procs)
    assert outcomes == ["synced", "unchanged"], [p.stdout() for p in procs]
    assert [r["revision"] for r in helm_history(namespace, APP)] == [1]


def test_lock_timeout_names_the_holder(tmp_path: Path, kube: Kube, namespace: str) -> None:
    repo = make_repo(tmp_path, namespace, f"{namespace}-prod-unused")
    edit_env(repo, "default", values={**env_values(repo, "default"), **delay_pre_sync("8s")})
    commit(repo, "slow migrations")
    first = start_promote(repo, tmp_path / "logs", "first", "apply", "default", "--lock-timeout", "120s")
    try:
        wait_for("the first apply to hold the lock", lambda: _holder_pid(kube, namespace) == first.pid, 60)

        second = apply(repo, "default", "--lock-timeout", "1s", code=1)

        assert f"environment default is locked by {WHO}/{first.pid}" in second.doc["error"]
        assert f"Lease {namespace}/{LEASE}" in second.doc["error"]
        assert "gave up after 1s" in second.doc["error"]
        assert first.wait(timeout=120) == 0, first.stderr()
    finally:
        first.kill()
    assert [r["revision"] for r in helm_history(namespace, APP)] == [1]


def _kill_during_pre_sync(kube: Kube, namespace: str, proc: Process) -> None:
    """SIGKILL promote and its helm child once the pre-sync hook pod exists (helm is mid-upgrade)."""
    wait_for(
        "the pre-sync hook pod",
        lambda: any(p["metadata"]["name"] == f"{APP}-pre-sync" for p in pods(kube, namespace)),
        60,
    )
    proc.kill()


def _assert_dead_lease(kube: Kube, namespace: str, pid: int) -> None:
    """The killed apply's Lease is still there (nobody gave it up) but stops being renewed: it expires."""
    held = lease(kube, namespace, LEASE)
    assert held is not None
    assert held["spec"]["holderIdentity"] == f"{WHO}/{pid}"
    assert held["spec"]["leaseDurationSeconds"] == 5
    renewed = _parse_ts(held["spec"]["renewTime"])
    time.sleep(6)
    again = lease(kube, namespace, LEASE)
    assert again is not None
    assert again["spec"]["renewTime"] == held["spec"]["renewTime"]
    assert renewed + timedelta(seconds=5) < datetime.now(UTC)


def test_kill_9_during_upgrade_then_rerun_recovers_and_converges(tmp_path: Path, kube: Kube, namespace: str) -> None:
    repo = make_repo(tmp_path, namespace, f"{namespace}-prod-unused")
    apply(repo, "default", code=0)
    set_app_values(repo, {"config": {"greeting": "v2"}})
    edit_env(repo, "default", values={**env_values(repo, "default"), **delay_pre_sync("10s")})
    commit(repo, "v2 with a slow migration")

    victim = start_promote(repo, tmp_path / "logs", "victim", "apply", "default", "--lock-ttl", "5s")
    _kill_during_pre_sync(kube, namespace, victim)

    # helm was killed between writing the pending revision and finishing it.
    assert [(r["revision"], r["status"]) for r in helm_history(namespace, APP)] == [
        (1, "deployed"),
        (2, "pending-upgrade"),
    ]
    _assert_dead_lease(kube, namespace, victim.pid)

    # The re-run takes the expired lock, knows the pending state is the crashed apply's, clears it and converges.
    started = time.monotonic()
    rerun = apply(repo, "default", "--lock-ttl", "5s", "--timeout", "60s", code=0)
    assert time.monotonic() - started < 90
    recovering = [e for e in rerun.doc["events"] if e["kind"] == "Release" and "recovering" in e["message"]]
    assert len(recovering) == 1, rerun.doc["events"]
    assert f"{WHO}/{victim.pid}" in recovering[0]["message"]
    assert "pending-upgrade" in recovering[0]["message"]
    assert rerun.env("default")["outcome"] == "synced"
    history = helm_history(namespace, APP)
    # helm leaves the abandoned revision 2 as it was; recovery rolled back to 1, then the upgrade ran.
    assert [r["revision"] for r in history] == [1, 2, 3, 4]
    assert history[2]["description"] == "Rollback to 1"
    assert history[3]["status"] == "deployed"
    assert available(deployment(kube, namespace, APP)) == (1, 1)
    assert lease(kube, namespace, LEASE) is None


def test_kill_9_during_first_install_then_rerun_recovers_and_converges(
    tmp_path: Path, kube: Kube, namespace: str
) -> None:
    repo = make_repo(tmp_path, namespace, f"{namespace}-prod-unused")
    edit_env(repo, "default", values={**env_values(repo, "default"), **delay_pre_sync("10s")})
    commit(repo, "a slow first migration")

    victim = start_promote(repo, tmp_path / "logs", "victim", "apply", "default", "--lock-ttl", "5s")
    _kill_during_pre_sync(kube, namespace, victim)

    assert [(r["revision"], r["status"]) for r in helm_history(namespace, APP)] == [(1, "pending-install")]
    _assert_dead_lease(kube, namespace, victim.pid)

    rerun = apply(repo, "default", "--lock-ttl", "5s", "--timeout", "60s", code=0)
    assert any(e["kind"] == "Release" and "pending-install" in e["message"] for e in rerun.doc["events"])
    assert rerun.env("default")["outcome"] == "synced"
    assert helm_history(namespace, APP)[-1]["status"] == "deployed"
    assert available(deployment(kube, namespace, APP)) == (1, 1)


def test_pending_state_not_left_by_promote_is_reported_with_a_way_out_that_works(
    tmp_path: Path, kube: Kube, namespace: str
) -> None:
    """A helm process promote did not run (no Lease of a crashed apply) may still be working: report, don't touch."""
    repo = make_repo(tmp_path, namespace, f"{namespace}-prod-unused")
    edit_env(repo, "default", values={**env_values(repo, "default"), **delay_pre_sync("30s")})
    commit(repo, "a slow first migration")
    values = tmp_path / "values.json"
    values.write_text(json.dumps(env_values(repo, "default")))
    helm = subprocess.Popen(
        [
            "helm",
            "upgrade",
            "--install",
            APP,
            str(repo / "charts" / "python-app"),
            "-n",
            namespace,
            "-f",
            str(values),
            "--wait",
            "--timeout",
            "120s",
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            "the pre-sync hook pod",
            lambda: any(p["metadata"]["name"] == f"{APP}-pre-sync" for p in pods(kube, namespace)),
            60,
        )
    finally:
        os.killpg(helm.pid, signal.SIGKILL)
        helm.wait(timeout=30)
    assert [(r["revision"], r["status"]) for r in helm_history(namespace, APP)] == [(1, "pending-install")]

    rerun = apply(repo, "default", "--timeout", "60s", code=1)
    error = rerun.doc["error"]
    assert f"release {APP} in {namespace} is stuck in pending-install (revision 1)" in error
    assert "`promote rollback default`" in error
    assert [(r["revision"], r["status"]) for r in helm_history(namespace, APP)] == [(1, "pending-install")]

    # The way out it names works, and then the apply converges.
    promote_json(repo, "rollback", "default", code=0)
    assert helm_history(namespace, APP) == []
    converged = apply(repo, "default", "--timeout", "60s", code=0)
    assert converged.env("default")["outcome"] == "synced"
    assert available(deployment(kube, namespace, APP)) == (1, 1)
