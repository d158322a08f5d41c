"""Pure logic behind "drift or not" in promote.diff: who owns a field (managedFields), and proving an object
unchanged without a dry run (covers, Secret fingerprints). The saved-plan check is in test_saved.py."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from promote import diff
from tests.support import paths

TESTDATA = paths.TESTDATA / "ownership"

REPLICAS = ("spec", "replicas")
VERSION_LABEL = ("metadata", "labels", "app.kubernetes.io/version")
IMAGE = ("spec", "template", "spec", "containers", ("name", "app"), "image")


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((TESTDATA / name).read_text())
    return doc


def entry(manager: str, fields: dict[str, Any]) -> dict[str, Any]:
    """One managedFields entry."""
    return {"manager": manager, "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": fields}


def live_with(*entries: dict[str, Any]) -> dict[str, Any]:
    """A live object carrying exactly these managedFields entries."""
    return {"kind": "Deployment", "metadata": {"name": "web", "managedFields": list(entries)}}


# --- managers_of ---------------------------------------------------------------------------------


def test_helm_owns_the_fields_it_set() -> None:
    live = fixture("deployment-helm.yaml")
    assert diff.managers_of(live, REPLICAS) == ["helm"]
    assert diff.managers_of(live, VERSION_LABEL) == ["helm"]


def test_keyed_list_items_resolve_through_their_merge_key() -> None:
    live = fixture("deployment-helm.yaml")
    assert diff.managers_of(live, IMAGE) == ["helm"]
    port = ("spec", "template", "spec", "containers", ("name", "app"), "ports", ("containerPort", 9200), "protocol")
    assert diff.managers_of(live, port) == ["helm"]


def test_a_keyed_item_no_entry_records_has_no_owner() -> None:
    live = fixture("deployment-helm.yaml")
    assert diff.managers_of(live, ("spec", "template", "spec", "containers", ("name", "sidecar"), "image")) == []


def test_an_atomic_subtree_owns_every_field_below_it() -> None:
    # `args` is an atomic list and `selector` an atomic struct: managedFields records them as `{}`.
    live = fixture("deployment-helm.yaml")
    assert diff.managers_of(live, ("spec", "template", "spec", "containers", ("name", "app"), "args", 1)) == ["helm"]
    assert diff.managers_of(live, ("spec", "selector", "matchLabels", "app.kubernetes.io/name")) == ["helm"]


def test_the_deployment_controller_owns_status_not_spec() -> None:
    live = fixture("deployment-helm.yaml")
    assert diff.managers_of(live, ("status", "replicas")) == ["kube-controller-manager"]
    assert "kube-controller-manager" not in diff.managers_of(live, REPLICAS)


def test_a_field_nobody_recorded_has_no_owner() -> None:
    assert diff.managers_of(fixture("deployment-helm.yaml"), ("spec", "paused")) == []
    assert diff.managers_of({"metadata": {}}, REPLICAS) == []
    assert diff.managers_of({}, REPLICAS) == []


def test_list_items_without_merge_key_resolve_by_index() -> None:
    live = live_with(entry("my-controller", {"f:spec": {"f:items": {"i:0": {"f:value": {}}}}}))
    assert diff.managers_of(live, ("spec", "items", 0, "value")) == ["my-controller"]
    assert diff.managers_of(live, ("spec", "items", 1, "value")) == []


def test_the_deepest_owner_wins_and_ties_are_all_reported() -> None:
    live = live_with(
        entry("helm", {"f:spec": {"f:template": {}}}),
        entry("my-controller", {"f:spec": {"f:template": {"f:spec": {"f:priority": {}}}}}),
        entry("other-controller", {"f:spec": {"f:template": {"f:spec": {"f:priority": {}}}}}),
    )
    assert diff.managers_of(live, ("spec", "template", "spec", "priority")) == ["my-controller", "other-controller"]
    # Elsewhere under the template only helm's whole-subtree claim applies.
    assert diff.managers_of(live, ("spec", "template", "spec", "hostname")) == ["helm"]


# --- owned_by_other_controller -------------------------------------------------------------------


def test_fields_helm_owns_are_ours() -> None:
    live = fixture("deployment-helm.yaml")
    assert diff.owned_by_other_controller(live, REPLICAS) is None
    assert diff.owned_by_other_controller(live, VERSION_LABEL) is None


def test_a_field_another_controller_rewrote_is_its() -> None:
    assert diff.owned_by_other_controller(fixture("deployment-controller-label.yaml"), VERSION_LABEL) == "my-controller"


def test_a_field_a_person_changed_with_kubectl_is_not_a_controllers() -> None:
    assert diff.owned_by_other_controller(fixture("deployment-kubectl-label.yaml"), VERSION_LABEL) is None


@pytest.mark.parametrize(
    "manager", ["kubectl", "kubectl-edit", "kubectl-patch", "kubectl-client-side-apply", "kubectl-scale", "helm"]
)
def test_people_and_helm_never_count_as_another_controller(manager: str) -> None:
    live = live_with(entry(manager, {"f:spec": {"f:replicas": {}}}))
    assert diff.owned_by_other_controller(live, REPLICAS) is None


def test_a_field_shared_with_helm_is_not_another_controllers() -> None:
    live = live_with(
        entry("my-controller", {"f:spec": {"f:replicas": {}}}),
        entry("helm", {"f:spec": {"f:replicas": {}}}),
    )
    assert diff.owned_by_other_controller(live, REPLICAS) is None


def test_a_field_without_owner_is_not_another_controllers() -> None:
    # A field someone deleted is owned by nobody: that is drift, not a controller's business.
    assert diff.owned_by_other_controller(fixture("deployment-helm.yaml"), ("spec", "paused")) is None


def test_a_controller_owning_the_whole_spec_owns_replicas() -> None:
    live = live_with(entry("hpa-like", {"f:spec": {"f:replicas": {}}}), entry("helm", {"f:metadata": {}}))
    assert diff.owned_by_other_controller(live, REPLICAS) == "hpa-like"


# --- covers --------------------------------------------------------------------------------------

LIVE = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web", "team": "added-live"}, "resourceVersion": "7"},
    "spec": {
        "replicas": 3,
        "template": {
            "spec": {
                "containers": [
                    {"name": "sidecar", "image": "proxy:1"},
                    {"name": "app", "image": "web:1", "args": ["--port", "80"], "ports": [{"containerPort": 80}]},
                ]
            }
        },
    },
}


def want(**spec: Any) -> dict[str, Any]:
    """What a chart sets for LIVE's Deployment, with spec overrides."""
    doc: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "web:1", "args": ["--port", "80"], "ports": [{"containerPort": 80}]}
                    ]
                }
            },
        },
    }
    doc["spec"].update(spec)
    return doc


def test_live_holding_every_field_the_chart_sets_is_covered() -> None:
    # Extra live fields (a label, an injected sidecar, server metadata) are not the chart's: still covered.
    assert diff.covers(LIVE, want())


def test_a_differing_scalar_is_not_covered() -> None:
    assert not diff.covers(LIVE, want(replicas=1))


def test_a_field_missing_live_is_not_covered() -> None:
    assert not diff.covers(LIVE, want(paused=True))


def test_a_deletion_of_a_live_field_is_not_covered() -> None:
    assert not diff.covers(LIVE, want(replicas=None))
    assert diff.covers(LIVE, want(paused=None))


def test_types_must_match_exactly() -> None:
    assert not diff.covers(LIVE, want(replicas="3"))
    assert not diff.covers(LIVE, want(replicas=3.0))
    assert not diff.covers({"spec": {"paused": 1}}, {"spec": {"paused": True}})


def test_keyed_lists_match_by_merge_key_in_any_order() -> None:
    changed = want()
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "web:2"
    assert not diff.covers(LIVE, changed)
    missing = want()
    missing["spec"]["template"]["spec"]["containers"][0]["name"] = "other"
    assert not diff.covers(LIVE, missing)


def test_atomic_lists_must_be_equal_in_full() -> None:
    shorter = want()
    shorter["spec"]["template"]["spec"]["containers"][0]["args"] = ["--port"]
    assert not diff.covers(LIVE, shorter)
    reordered = want()
    reordered["spec"]["template"]["spec"]["containers"][0]["args"] = ["80", "--port"]
    assert not diff.covers(LIVE, reordered)


def test_a_map_where_live_has_a_scalar_is_not_covered() -> None:
    assert not diff.covers({"spec": "x"}, {"spec": {"replicas": 1}})
    assert not diff.covers({"spec": {"items": "x"}}, {"spec": {"items": [1]}})


# --- Secret fingerprints -------------------------------------------------------------------------

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "python-app-secret"},
    "type": "Opaque",
    "data": {"username": "YXBw", "password": "Y2hhbmdlLW1lLXBsZWFzZQ=="},
}


def test_fingerprints_hold_no_secret_value() -> None:
    out = diff.fingerprint_secret(SECRET)
    text = json.dumps(out)
    for value in SECRET["data"].values():  # type: ignore[attr-defined]
        assert value not in text
    assert set(out["data"]) == {"username", "password"}
    assert SECRET["data"]["password"] == "Y2hhbmdlLW1lLXBsZWFzZQ=="  # type: ignore[index]


def test_string_data_values_are_not_kept_either() -> None:
    # Charts may render Secrets with stringData; those values go to the render cache through this function too.
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "hunter2-plain"}}
    assert "hunter2-plain" not in json.dumps(diff.fingerprint_secret(doc))


def test_equal_values_equal_fingerprints_and_a_changed_value_shows() -> None:
    live = copy.deepcopy(SECRET)
    assert diff.covers(diff.fingerprint_secret(live), diff.fingerprint_secret(SECRET))
    live["data"]["password"] = "aGFuZC1zZXQ="  # type: ignore[index]
    assert not diff.covers(diff.fingerprint_secret(live), diff.fingerprint_secret(SECRET))


def test_other_kinds_are_not_fingerprinted() -> None:
    cm = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"config.yaml": "a: 1"}}
    assert diff.fingerprint_secret(cm) is cm


def test_string_data_is_compared_as_the_data_the_apiserver_keeps() -> None:
    # A live Secret never carries stringData: the apiserver folds it into data, base64-encoded. A render
    # with stringData must be covered by that live Secret, or no warm plan proves it unchanged.
    import base64

    rendered = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"username": "YXBw", "token": "b2xk"},
        "stringData": {"token": "hunter2-plain"},
    }
    encoded = base64.b64encode(b"hunter2-plain").decode()
    live = {**rendered, "data": {"username": "YXBw", "token": encoded}}
    del live["stringData"]
    want = diff.fingerprint_secret(rendered)
    assert "stringData" not in want and set(want["data"]) == {"username", "token"}
    assert diff.covers(diff.fingerprint_secret(live), want)
    assert "hunter2-plain" not in json.dumps(want) and encoded not in json.dumps(want)
    live["data"]["token"] = base64.b64encode(b"edited").decode()
    assert not diff.covers(diff.fingerprint_secret(live), want)
    # a value stringData cannot hold (the apiserver refuses it) is left for the server to judge
    odd = {**rendered, "stringData": {"n": 1}}
    assert "stringData" in diff.fingerprint_secret(odd)
