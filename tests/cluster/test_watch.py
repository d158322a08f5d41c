"""`promote watch` on the real local control plane: drift is logged and, with --self-heal, reverted by an
apply; runtime fluctuation is only logged, and never causes a sync. With -o json the same events come as
JSON Lines a pipeline parses (their formatting, fast, is in tests/unit/test_views.py)."""

from __future__ import annotations

import json
import re

from devcluster.kube import Kube
from tests.support.cli import Deployed, cli, expect, release_status, replicas, status_json
from tests.support.contract import assert_branch
from tests.support.helm import stored_revisions
from tests.support.kube import delete_a_pod, kubectl
from tests.support.repo import APP, PROD_RELEASE
from tests.support.wait import wait_past_sync_second

TIME = r"\d\d:\d\d:\d\d"  # local time, as people read it


def _watch(d: Deployed, *args: str) -> list[str]:
    result = expect(cli(d.repo, "watch", "prod", "--max-iterations", "1", *args), 0, "watch prod")
    return result.stdout.splitlines()


def test_self_heal_reverts_a_hand_scale_and_logs_it(kube: Kube, deployed: Deployed) -> None:
    kubectl("scale", "-n", deployed.prod_ns, f"deployment/{PROD_RELEASE}", "--replicas=1")

    lines = _watch(deployed, "--self-heal")

    what = re.escape(f"Deployment {deployed.prod_ns}/{PROD_RELEASE}")
    drift = re.compile(rf"{TIME} prod {APP} drift {what} spec\.replicas: Git 3, live 1")
    reverted = re.compile(rf"{TIME} prod {APP} reverted {what} \(update: spec\.replicas\)")
    assert [bool(drift.fullmatch(line)) for line in lines] == [True, False], lines
    assert reverted.fullmatch(lines[1]), lines
    assert lines[0][:8] <= lines[1][:8]
    assert replicas(kube, deployed) == 3
    assert stored_revisions(kube, deployed.prod_ns, PROD_RELEASE) == [1, 2]
    rel = release_status(status_json(deployed.repo, "prod", "--detailed-exitcode", code=0), "prod")
    assert (rel["sync"], rel["drift"]) == ("Synced", [])


def test_self_heal_as_json_lines(kube: Kube, deployed: Deployed) -> None:
    kubectl("scale", "-n", deployed.prod_ns, f"deployment/{PROD_RELEASE}", "--replicas=1")

    docs = [json.loads(line) for line in _watch(deployed, "--self-heal", "-o", "json")]

    for doc in docs:
        assert_branch(doc, "watch-event", "watchEvent")
    shape = [(d["event"], d["app"], d["action"], d["kind"], d["namespace"], d["name"]) for d in docs]
    where = (APP, "update", "Deployment", deployed.prod_ns, PROD_RELEASE)
    assert shape == [("drift", *where), ("reverted", *where)], docs
    assert (docs[0]["path"], docs[0]["git"], docs[0]["live"]) == ("spec.replicas", 3, 1)
    assert docs[1]["paths"] == ["spec.replicas"]
    assert replicas(kube, deployed) == 3


def test_without_self_heal_drift_is_only_logged(kube: Kube, deployed: Deployed) -> None:
    kubectl("scale", "-n", deployed.prod_ns, f"deployment/{PROD_RELEASE}", "--replicas=1")

    lines = _watch(deployed)

    assert len(lines) == 1, lines
    assert " drift " in lines[0] and "spec.replicas: Git 3, live 1" in lines[0]
    assert replicas(kube, deployed) == 1
    assert stored_revisions(kube, deployed.prod_ns, PROD_RELEASE) == [1]


def test_a_deleted_pod_is_logged_as_runtime_and_nothing_is_synced(kube: Kube, deployed: Deployed) -> None:
    wait_past_sync_second(kube, deployed.prod_ns)
    delete_a_pod(kube, deployed.prod_ns)

    lines = _watch(deployed, "--self-heal")

    runtime = re.compile(
        rf"{TIME} prod {APP} runtime (Deployment {PROD_RELEASE}: 1 pod\(s\) recreated since the last sync at "
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d|Pod {PROD_RELEASE}-\S+: not ready \(\w+\)) "
        r"\(observed only: Kubernetes heals it\)"
    )
    assert any(runtime.fullmatch(line) for line in lines), lines
    assert not [line for line in lines if " drift " in line or " reverted " in line], lines
    assert stored_revisions(kube, deployed.prod_ns, PROD_RELEASE) == [1]


def test_watch_runs_the_requested_number_of_checks(deployed: Deployed) -> None:
    kubectl("scale", "-n", deployed.prod_ns, f"deployment/{PROD_RELEASE}", "--replicas=2")

    docs = [json.loads(line) for line in _watch(deployed, "--max-iterations", "2", "--interval", "1s", "-o", "json")]
    lines = _watch(deployed, "--max-iterations", "2", "--interval", "1s")

    # Pipelines get every check's events; people get the drift once, as it is the same drift.
    assert [(d["event"], d["path"], d["live"]) for d in docs] == [("drift", "spec.replicas", 2)] * 2, docs
    assert len([line for line in lines if "spec.replicas: Git 3, live 2" in line]) == 1, lines
    assert len(lines) == 1, lines
