"""diff: helm's three-way patch, field-level changes, normalisation of server-owned fields."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from promote import diff
from promote.model import IgnoreRule
from promote.plan import FieldChange
from tests.support import paths

TESTDATA = paths.TESTDATA / "diff"


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((TESTDATA / name).read_text())
    return doc


# --- normalize -----------------------------------------------------------------------------------


def test_normalize_drops_server_owned_fields() -> None:
    assert diff.normalize(fixture("deployment-live.yaml")) == fixture("deployment-normalized.yaml")


def test_normalize_does_not_mutate_and_drops_emptied_annotations() -> None:
    live = fixture("deployment-live.yaml")
    live["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    out = diff.normalize(live)
    assert "annotations" not in out["metadata"]
    assert live["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}
    assert live["status"]["replicas"] == 2


def test_normalize_applies_matching_ignore_rules_only() -> None:
    live = fixture("deployment-live.yaml")
    rules = [
        IgnoreRule(json_pointers=("/spec/replicas",), group="apps", kind="Deployment"),
        IgnoreRule(json_pointers=("/metadata/labels/app",), kind="Service"),
        IgnoreRule(json_pointers=("/spec/template/spec/containers/0/image",), name="web"),
    ]
    out = diff.normalize(live, rules)
    assert "replicas" not in out["spec"]
    assert out["metadata"]["labels"] == {"app": "web"}
    assert "image" not in out["spec"]["template"]["spec"]["containers"][0]


def test_remove_pointer_escapes_and_absent_paths() -> None:
    doc = {"metadata": {"annotations": {"a/b": "x", "c~d": "y"}}, "list": [1, 2]}
    diff.remove_pointer(doc, "/metadata/annotations/a~1b")
    diff.remove_pointer(doc, "/metadata/annotations/c~0d")
    diff.remove_pointer(doc, "/list/0")
    diff.remove_pointer(doc, "/no/such/path")
    assert doc == {"metadata": {"annotations": {}}, "list": [2]}


# --- three-way patch -----------------------------------------------------------------------------


def test_three_way_patch_without_an_original_is_the_desired_manifest() -> None:
    desired = fixture("pod-template-desired.yaml")
    assert diff.three_way_patch(None, desired) == desired


def test_three_way_patch_deletes_what_the_chart_stopped_setting() -> None:
    original, desired = fixture("pod-template-original.yaml"), fixture("pod-template-desired.yaml")

    patch = diff.three_way_patch(original, desired)

    assert patch["metadata"] == {"name": "web", "labels": {"app": "web", "tier": None}, "annotations": None}
    assert patch["spec"]["replicas"] == 3
    spec = patch["spec"]["template"]["spec"]
    assert spec["volumes"] is None
    assert spec["containers"] == [
        {
            "name": "app",
            "image": "web:2",
            "env": [{"name": "KEEP", "value": "1"}, {"$patch": "delete", "name": "DROP"}],
            "ports": [{"containerPort": 8080}, {"$patch": "delete", "containerPort": 9090}],
        },
        {"$patch": "delete", "name": "sidecar"},
    ]
    assert desired == fixture("pod-template-desired.yaml"), "desired must not be mutated"


def test_three_way_patch_replaces_lists_without_a_merge_key() -> None:
    original = {"spec": {"args": ["a", "b"], "finalizers": ["x"]}}
    desired = {"spec": {"args": ["a"], "finalizers": []}}
    assert diff.three_way_patch(original, desired) == desired


def test_three_way_patch_deletes_a_field_inside_a_kept_list_item() -> None:
    original = {"spec": {"containers": [{"name": "app", "image": "i", "command": ["run"]}]}}
    desired = {"spec": {"containers": [{"name": "app", "image": "i"}]}}
    patch = diff.three_way_patch(original, desired)
    assert patch == {"spec": {"containers": [{"name": "app", "image": "i", "command": None}]}}


@pytest.mark.parametrize(
    ("field", "items", "key"),
    [
        ("containers", [{"name": "a"}], "name"),
        ("env", [{"name": "A"}], "name"),
        ("volumeMounts", [{"mountPath": "/x"}], "mountPath"),
        ("ports", [{"containerPort": 80}], "containerPort"),
        ("ports", [{"port": 80}], "port"),
        ("ports", [{"name": "http"}], None),
        ("args", ["a"], None),
    ],
)
def test_merge_key(field: str, items: list[Any], key: str | None) -> None:
    assert diff.merge_key(field, items) == key


# --- field changes -------------------------------------------------------------------------------


def test_field_changes_of_scalars_and_maps() -> None:
    live = {"spec": {"replicas": 1, "paused": True}, "metadata": {"annotations": {"checksum/config": "a"}}}
    target = {"spec": {"replicas": 2}, "metadata": {"annotations": {"checksum/config": "b"}}}
    assert diff.field_changes("Deployment", live, target) == [
        FieldChange('metadata.annotations["checksum/config"]', "a", "b"),
        FieldChange("spec.paused", True, None),
        FieldChange("spec.replicas", 1, 2),
    ]


def test_field_changes_of_keyed_lists_name_the_item() -> None:
    live = {"containers": [{"name": "app", "image": "a:1"}, {"name": "side", "image": "s:1"}]}
    target = {"containers": [{"name": "side", "image": "s:1"}, {"name": "app", "image": "a:2"}, {"name": "new"}]}
    assert diff.field_changes("Pod", live, target) == [
        FieldChange("containers[name=app].image", "a:1", "a:2"),
        FieldChange("containers[name=new]", None, {"name": "new"}),
    ]


def test_field_changes_of_ports_keyed_by_port() -> None:
    live = {"spec": {"ports": [{"port": 80, "targetPort": "http"}]}}
    target = {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    assert diff.field_changes("Service", live, target) == [FieldChange("spec.ports[port=80].targetPort", "http", 8080)]


def test_field_changes_of_unkeyed_lists() -> None:
    assert diff.field_changes("Pod", {"args": ["a", "b"]}, {"args": ["a", "c"]}) == [FieldChange("args[1]", "b", "c")]
    assert diff.field_changes("Pod", {"args": ["a"]}, {"args": ["a", "c"]}) == [FieldChange("args", ["a"], ["a", "c"])]


def test_field_changes_of_a_list_of_strings_under_a_merge_key_name() -> None:
    # "env" is a keyed list in a pod spec, but a custom resource may use the name for plain strings.
    live = {"spec": {"env": ["staging"]}}
    target = {"spec": {"env": ["prod"]}}
    assert diff.field_changes("Pipeline", live, target) == [FieldChange("spec.env[0]", "staging", "prod")]


def test_field_changes_mask_secret_data() -> None:
    live = {"data": {"password": "b2xk", "user": "dQ=="}, "stringData": {"x": "plain"}, "type": "Opaque"}
    target = {"data": {"password": "bmV3", "user": "dQ==", "token": "dG9r"}, "type": "kubernetes.io/tls"}
    changes = diff.field_changes("Secret", live, target)
    assert changes == [
        FieldChange("data.password", diff.SENSITIVE, diff.SENSITIVE, True),
        FieldChange("data.token", None, diff.SENSITIVE, True),
        FieldChange("stringData", diff.SENSITIVE, None, True),
        FieldChange("type", "Opaque", "kubernetes.io/tls"),
    ]
    shown = repr([c.to_dict() for c in changes])
    for value in ("b2xk", "bmV3", "dG9r", "plain"):
        assert value not in shown


def test_field_changes_do_not_mask_configmap_data() -> None:
    assert diff.field_changes("ConfigMap", {"data": {"k": "a"}}, {"data": {"k": "b"}}) == [
        FieldChange("data.k", "a", "b")
    ]


def test_no_changes() -> None:
    obj = fixture("deployment-normalized.yaml")
    assert diff.field_changes("Deployment", obj, fixture("deployment-normalized.yaml")) == []


def test_redact_masks_secret_values_only() -> None:
    secret = {"kind": "Secret", "data": {"a": "eA=="}, "metadata": {"name": "s"}}
    assert diff.redact(secret)["data"] == {"a": diff.SENSITIVE}
    assert secret["data"] == {"a": "eA=="}
    cm = {"kind": "ConfigMap", "data": {"a": "x"}}
    assert diff.redact(cm) == cm


def test_a_crd_is_current_when_live_holds_what_the_chart_says() -> None:
    want = {
        "metadata": {"name": "w.example.com", "labels": {"a": "1"}},
        "spec": {"group": "example.com", "versions": [{"name": "v1", "schema": {"properties": {}}}]},
    }
    live = {
        "metadata": {"name": "w.example.com", "labels": {"a": "1", "b": "2"}, "resourceVersion": "7"},
        "spec": {"group": "example.com", "scope": "Namespaced", "versions": [{"name": "v1", "schema": {}}]},
    }
    assert diff.crd_current(live, want), "server defaults and a dropped empty `properties: {}` are no change"
    changed = {**want, "spec": {**want["spec"], "group": "other.com"}}
    assert not diff.crd_current(live, changed)
    relabelled = {**want, "metadata": {**want["metadata"], "labels": {"a": "2"}}}
    assert not diff.crd_current(live, relabelled)
    assert diff.pruned({"a": {}, "b": [], "c": {"d": {}}, "e": 0, "f": False}) == {"e": 0, "f": False}
