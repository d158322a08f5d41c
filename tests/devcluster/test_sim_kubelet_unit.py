"""Fast tests of the simulated kubelet's pure logic (no cluster needed)."""

from __future__ import annotations

from typing import Any

import pytest

from devcluster.kubelet import (
    ANN_CRASH_LOOP,
    ANN_DELAY,
    ANN_FAIL,
    ANN_NEVER_READY,
    COMPLETE_AFTER,
    CRASH_PERIOD,
    ObjectRef,
    PodRecord,
    compute_status,
    missing_message,
    normalize,
    parse_duration,
    referenced_objects,
    stamp_conditions,
)


def test_referenced_objects_covers_env_envfrom_and_volumes_and_skips_optional() -> None:
    spec = {
        "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-secret"}}]}],
        "containers": [
            {
                "name": "app",
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-a", "key": "k"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s-b", "key": "k", "optional": True}}},
                    {"name": "C", "value": "plain"},
                    {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "envFrom": [{"configMapRef": {"name": "cm-env"}}, {"secretRef": {"name": "opt", "optional": True}}],
            },
            {"name": "sidecar"},
        ],
        "volumes": [
            {"name": "v1", "configMap": {"name": "cm-vol"}},
            {"name": "v2", "secret": {"secretName": "s-vol"}},
            {"name": "v3", "secret": {"secretName": "s-opt", "optional": True}},
            {
                "name": "v4",
                "projected": {
                    "sources": [
                        {"configMap": {"name": "cm-proj"}},
                        {"secret": {"name": "s-proj"}},
                        {"serviceAccountToken": {"path": "token"}},
                    ]
                },
            },
            {"name": "v5", "emptyDir": {}},
        ],
    }
    refs = referenced_objects(spec)
    volume_refs = [
        ObjectRef("configmap", "cm-vol"),
        ObjectRef("secret", "s-vol"),
        ObjectRef("configmap", "cm-proj"),
        ObjectRef("secret", "s-proj"),
    ]
    assert refs["sidecar"] == volume_refs
    assert refs["init"] == [*volume_refs, ObjectRef("secret", "init-secret")]
    assert refs["app"] == [*volume_refs, ObjectRef("configmap", "cm-a", "k"), ObjectRef("configmap", "cm-env")]


def test_missing_message_matches_kubelet_wording() -> None:
    assert missing_message(ObjectRef("configmap", "x"), "ns", None) == 'configmap "x" not found'
    assert missing_message(ObjectRef("secret", "y"), "ns", None) == 'secret "y" not found'
    assert missing_message(ObjectRef("configmap", "x", "k"), "ns", {"data": {"other": "1"}}) == (
        "couldn't find key k in ConfigMap ns/x"
    )
    assert missing_message(ObjectRef("configmap", "x", "k"), "ns", {"data": {"k": "1"}}) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("2", 2.0), ("", 0.0), (None, 0.0), ("soon", 0.0)],
)
def test_parse_duration(text: str | None, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def _pod(annotations: dict[str, str] | None = None, policy: str = "Always") -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "annotations": annotations or {}},
        "spec": {"restartPolicy": policy, "nodeName": "sim-node-1", "containers": [{"name": "app", "image": "img:1"}]},
    }


def _rec() -> PodRecord:
    return PodRecord(uid="u1", first_seen=100.0, start_time="2024-01-01T00:00:00Z", ip="10.244.0.5")


def _cs(view_status: dict[str, Any]) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = view_status["containerStatuses"]
    return statuses[0]


def test_plain_pod_runs_ready_with_ip() -> None:
    view = compute_status(_pod(), _rec(), 100.0, {}, "10.240.0.11")
    assert view.status["phase"] == "Running"
    assert view.status["podIP"] == "10.244.0.5"
    assert {c["type"]: c["status"] for c in view.status["conditions"]}["Ready"] == "True"
    assert _cs(view.status)["ready"] is True and "running" in _cs(view.status)["state"]
    assert view.recheck is None


def test_missing_reference_keeps_pod_pending_and_rechecks() -> None:
    view = compute_status(_pod(), _rec(), 100.0, {"app": 'configmap "x" not found'}, "h")
    waiting = _cs(view.status)["state"]["waiting"]
    assert view.status["phase"] == "Pending"
    assert waiting == {"reason": "CreateContainerConfigError", "message": 'configmap "x" not found'}
    assert view.recheck is not None


def test_run_to_completion_succeeds_or_fails() -> None:
    rec = _rec()
    assert compute_status(_pod(policy="Never"), rec, 100.0, {}, "h").status["phase"] == "Running"
    done = compute_status(_pod(policy="Never"), rec, 100.0 + COMPLETE_AFTER, {}, "h")
    assert done.status["phase"] == "Succeeded"
    assert _cs(done.status)["state"]["terminated"]["exitCode"] == 0
    rec = _rec()
    compute_status(_pod({ANN_FAIL: "true"}, "Never"), rec, 100.0, {}, "h")
    failed = compute_status(_pod({ANN_FAIL: "true"}, "Never"), rec, 100.0 + COMPLETE_AFTER, {}, "h")
    assert failed.status["phase"] == "Failed"
    terminated = _cs(failed.status)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")


def test_delay_postpones_start() -> None:
    rec = _rec()
    view = compute_status(_pod({ANN_DELAY: "5s"}), rec, 101.0, {}, "h")
    assert view.status["phase"] == "Pending" and view.recheck == pytest.approx(4.0)
    assert compute_status(_pod({ANN_DELAY: "5s"}), rec, 105.0, {}, "h").status["phase"] == "Running"


def test_fail_with_restart_always_crash_loops_and_is_never_ready() -> None:
    rec = _rec()
    pod = _pod({ANN_FAIL: "true"})
    compute_status(pod, rec, 100.0, {}, "h")
    view = compute_status(pod, rec, 100.0 + COMPLETE_AFTER, {}, "h")
    cs = _cs(view.status)
    assert cs["restartCount"] == 1 and cs["ready"] is False
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    later = compute_status(pod, rec, 100.0 + COMPLETE_AFTER + CRASH_PERIOD, {}, "h")
    assert _cs(later.status)["restartCount"] == 2


def test_crash_loop_flaps_ready_and_counts_restarts() -> None:
    rec = _rec()
    pod = _pod({ANN_CRASH_LOOP: "true"})
    assert _cs(compute_status(pod, rec, 100.0, {}, "h").status)["ready"] is True
    crashed = compute_status(pod, rec, 100.0 + CRASH_PERIOD, {}, "h")
    assert _cs(crashed.status)["restartCount"] == 1 and _cs(crashed.status)["ready"] is False
    assert _cs(crashed.status)["lastState"]["terminated"]["exitCode"] == 1
    recovered = compute_status(pod, rec, 100.0 + CRASH_PERIOD + 1.5, {}, "h")
    assert _cs(recovered.status)["ready"] is True and _cs(recovered.status)["restartCount"] == 1


def test_never_ready_runs_but_is_not_ready() -> None:
    view = compute_status(_pod({ANN_NEVER_READY: "true"}), _rec(), 100.0, {}, "h")
    cs = _cs(view.status)
    assert view.status["phase"] == "Running" and cs["started"] is True and cs["ready"] is False
    assert {c["type"]: c["status"] for c in view.status["conditions"]}["Ready"] == "False"


def test_stamp_conditions_keeps_transition_time_of_unchanged_conditions() -> None:
    previous = [{"type": "Ready", "status": "True", "lastTransitionTime": "old"}]
    out = stamp_conditions([{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}], previous, "new")
    assert [c["lastTransitionTime"] for c in out] == ["old", "new"]
    flipped = stamp_conditions([{"type": "Ready", "status": "False"}], previous, "new")
    assert flipped[0]["lastTransitionTime"] == "new"


def test_normalize_ignores_nulls_and_empties() -> None:
    assert normalize({"a": None, "b": {}, "c": [{"d": None, "e": 1}]}) == {"c": [{"e": 1}]}
