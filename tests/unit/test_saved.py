"""Saved plans (promote.saved): the check, before `apply --plan`, that the world has not moved since the plan."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from promote import saved
from promote.plan import Action, EnvironmentPlan, FieldChange, HookPhase, Plan, ReleasePlan, ResourceChange

REPLICAS = ("spec", "replicas")


def _plan(
    *, context: str | None = "prod-cluster", replicas_rv: str = "41", fields: tuple[FieldChange, ...] = ()
) -> Plan:
    changes = (
        ResourceChange(
            Action.UPDATE if fields else Action.UNCHANGED,
            "apps/v1",
            "Deployment",
            "prod",
            "python-app-prod",
            fields=fields,
            resource_version=replicas_rv,
        ),
        ResourceChange(Action.CREATE, "v1", "Service", "prod", "python-app-prod"),
        ResourceChange(Action.CREATE, "v1", "Pod", "prod", "python-app-prod-pre-sync", hook=HookPhase.PRE_SYNC),
    )
    release = ReleasePlan(
        app="python-app",
        release="python-app-prod",
        namespace="prod",
        context=context,
        chart="python-app",
        chart_version="0.1.0",
        artifact_digest="a" * 64,
        values_digest="v" * 64,
        manifest_digest="m" * 64,
        current_revision=1,
        current_status="deployed",
        changes=changes,
    )
    env = EnvironmentPlan(name="prod", namespace="prod", context=context, releases=(release,))
    return Plan(target="prod", revision="1" * 40, environments=(env,))


REPLICAS_CHANGE = (FieldChange("spec.replicas", 1, 3, segments=REPLICAS),)


def saved_doc(plan: Plan) -> dict[str, Any]:
    """A plan as `plan --out` writes it and `apply --plan` reads it back."""
    doc: dict[str, Any] = json.loads(json.dumps(plan.to_dict()))
    return doc


def _release(doc: dict[str, Any]) -> dict[str, Any]:
    rel: dict[str, Any] = doc["environments"][0]["releases"][0]
    return rel


def test_nothing_moved() -> None:
    assert saved.moved(saved_doc(_plan(fields=REPLICAS_CHANGE)), _plan(fields=REPLICAS_CHANGE)) == []


def test_the_git_revision_moved() -> None:
    doc = saved_doc(_plan())
    doc["revision"] = "2" * 40
    (msg,) = saved.moved(doc, _plan())
    assert msg == f"the Git revision moved: the plan was made at {'2' * 40}, now it is {'1' * 40}"


@pytest.mark.parametrize(
    ("field", "what"),
    [
        ("artifactDigest", "the release artifact (chart or app-wide values)"),
        ("valuesDigest", "the values"),
        ("manifestDigest", "the rendered manifests"),
    ],
)
def test_a_digest_moved(field: str, what: str) -> None:
    doc = saved_doc(_plan())
    _release(doc)[field] = "0" * 64
    assert saved.moved(doc, _plan()) == [f"prod/python-app: {what} changed since the plan"]


def test_a_live_object_changed_since_the_plan() -> None:
    assert saved.moved(saved_doc(_plan(replicas_rv="41")), _plan(replicas_rv="42")) == [
        "prod/python-app: live Deployment prod/python-app-prod changed since the plan (resourceVersion 41 → 42)"
    ]


def test_drift_appearing_after_the_plan_is_a_different_change() -> None:
    # Same resourceVersion, different field changes: the comparison catches the change itself too.
    assert saved.moved(saved_doc(_plan()), _plan(fields=REPLICAS_CHANGE)) == [
        "prod/python-app: the change to Deployment prod/python-app-prod is no longer the one planned"
    ]


def test_a_resource_appearing_or_disappearing_moved() -> None:
    doc = saved_doc(_plan())
    _release(doc)["changes"] = [c for c in _release(doc)["changes"] if c["kind"] != "Service"]
    assert saved.moved(doc, _plan()) == ["prod/python-app: Service prod/python-app-prod appeared in the plan"]
    doc = saved_doc(_plan())
    _release(doc)["changes"].append({**_release(doc)["changes"][1], "name": "gone"})
    assert saved.moved(doc, _plan()) == ["prod/python-app: Service prod/gone disappeared from the plan"]


def test_hooks_are_not_compared() -> None:
    doc = saved_doc(_plan())
    hook = next(c for c in _release(doc)["changes"] if c["hook"])
    hook["action"], hook["name"] = "unchanged", "renamed-hook"
    assert saved.moved(doc, _plan()) == []


def test_a_release_added_or_removed_moved() -> None:
    doc = saved_doc(_plan())
    extra = copy.deepcopy(_release(doc))
    extra["app"] = "other-app"
    doc["environments"][0]["releases"].append(extra)
    assert saved.moved(doc, _plan()) == ["prod/other-app is no longer defined"]
    doc = saved_doc(_plan())
    doc["environments"][0]["releases"] = []
    assert saved.moved(doc, _plan()) == ["prod/python-app is new since the plan"]


def test_a_plan_made_against_another_cluster_moved() -> None:
    # Same Git revision, same values, an install whose creates carry no resourceVersion: only the kube
    # context differs (`promote --context staging plan prod --out p` then `promote --context prod apply --plan p`).
    moved = saved.moved(saved_doc(_plan(context="staging-cluster")), _plan(context="prod-cluster"))
    assert any("staging-cluster" in m and "prod-cluster" in m for m in moved), moved
