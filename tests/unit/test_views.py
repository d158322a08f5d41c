"""Unit tests of promote.views for watch events: one log line per event for people, one JSON line or one
YAML document per event for pipelines, each valid against schemas/watch-event.schema.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from promote.plan import Action
from promote.results import WatchEvent, WatchEventKind
from promote.views import OutputFormat, View
from tests.support.contract import assert_valid

T0 = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
HEAD = "2026-01-01T12:00:05Z prod web"


def _event(event: WatchEventKind, **kw: Any) -> WatchEvent:
    return WatchEvent(event=event, at=T0, env="prod", **({"app": "web"} | kw))


def _drift(**kw: Any) -> WatchEvent:
    where = {"action": Action.UPDATE, "kind": "Deployment", "namespace": "ns", "name": "web"}
    return _event(WatchEventKind.DRIFT, **(where | kw))


SECRET_DRIFT = _drift(kind="Secret", name="web-secret", path="data.password", sensitive=True)

# Every kind of event, and the line people read for it.
LINES: dict[str, tuple[WatchEvent, str]] = {
    "error": (
        _event(WatchEventKind.ERROR, message="render failed:\n  bad chart"),
        f"{HEAD} error render failed: bad chart",
    ),
    "runtime": (
        _event(WatchEventKind.RUNTIME, message="Pod web-1: 2 restart(s)"),
        f"{HEAD} runtime Pod web-1: 2 restart(s) (observed only: Kubernetes heals it)",
    ),
    "drift of a number": (
        _drift(path="spec.replicas", git=3, live=5),
        f"{HEAD} drift Deployment ns/web spec.replicas: Git 3, live 5",
    ),
    "drift of strings and an absent value": (
        _drift(path="metadata.labels.debug", git="true", live=None),
        f"{HEAD} drift Deployment ns/web metadata.labels.debug: Git true, live null",
    ),
    "drift of a structure": (
        _drift(path="spec.template.spec.containers[name=app].args", git=["--port", "80"], live=[]),
        f'{HEAD} drift Deployment ns/web spec.template.spec.containers[name=app].args: Git ["--port", "80"], live []',
    ),
    "drift of a Secret value": (
        SECRET_DRIFT,
        f"{HEAD} drift Secret ns/web-secret data.password: (sensitive value changed)",
    ),
    "missing live": (
        _drift(action=Action.CREATE, kind="ConfigMap", name="conf"),
        f"{HEAD} drift ConfigMap ns/conf: missing live",
    ),
    "no longer in Git": (
        _drift(action=Action.DELETE, kind="Service", name="old"),
        f"{HEAD} drift Service ns/old: live but no longer in Git",
    ),
    "cluster-scoped": (
        _drift(kind="ClusterRole", namespace=None, name="reader", path="rules[0].verbs[0]", git="get", live="list"),
        f"{HEAD} drift ClusterRole reader rules[0].verbs[0]: Git get, live list",
    ),
    "reverted fields": (
        _event(
            WatchEventKind.REVERTED,
            action=Action.UPDATE,
            kind="Deployment",
            namespace="ns",
            name="web",
            paths=("spec.replicas", "data.password"),
        ),
        f"{HEAD} reverted Deployment ns/web (update: spec.replicas, data.password)",
    ),
    "reverted a resource": (
        _event(WatchEventKind.REVERTED, action=Action.CREATE, kind="ConfigMap", namespace="ns", name="conf"),
        f"{HEAD} reverted ConfigMap ns/conf (create)",
    ),
    "heal failed": (
        _event(WatchEventKind.HEAL_FAILED, app=None, message="gate blocked: soak not elapsed"),
        "2026-01-01T12:00:05Z prod self-heal failed: gate blocked: soak not elapsed",
    ),
}


@pytest.mark.parametrize("case", list(LINES))
def test_table_is_one_line_per_event(case: str) -> None:
    event, line = LINES[case]

    assert View(OutputFormat.TABLE, stream=True).watch_event(event) == line


@pytest.mark.parametrize("case", list(LINES))
def test_json_is_one_line_per_event_and_matches_the_schema(case: str) -> None:
    event, _ = LINES[case]

    out = View(OutputFormat.JSON, stream=True).watch_event(event)

    assert "\n" not in out
    doc = json.loads(out)
    assert_valid(doc, "watch-event")
    assert doc == event.to_dict()


@pytest.mark.parametrize("case", list(LINES))
def test_yaml_is_one_document_per_event(case: str) -> None:
    event, _ = LINES[case]

    out = View(OutputFormat.YAML, stream=True).watch_event(event)

    assert out.startswith("---\n")
    assert list(yaml.safe_load_all(out)) == [event.to_dict()]


def test_json_keeps_values_typed() -> None:
    doc = json.loads(View(OutputFormat.JSON, stream=True).watch_event(LINES["drift of a number"][0]))

    assert {k: doc[k] for k in ("event", "action", "kind", "namespace", "name", "path", "git", "live")} == {
        "event": "drift",
        "action": "update",
        "kind": "Deployment",
        "namespace": "ns",
        "name": "web",
        "path": "spec.replicas",
        "git": 3,
        "live": 5,
    }
    assert (doc["schemaVersion"], doc["time"], doc["sensitive"]) == (1, "2026-01-01T12:00:05+00:00", False)


@pytest.mark.parametrize("fmt", [OutputFormat.JSON, OutputFormat.YAML])
def test_a_sensitive_drift_has_no_values_in_the_machine_formats(fmt: OutputFormat) -> None:
    out = View(fmt, stream=True).watch_event(SECRET_DRIFT)
    doc = json.loads(out) if fmt == OutputFormat.JSON else yaml.safe_load(out)

    assert (doc["path"], doc["sensitive"], doc["git"], doc["live"]) == ("data.password", True, None, None)


def test_the_schema_refuses_values_on_a_sensitive_drift() -> None:
    forged = {**SECRET_DRIFT.to_dict(), "git": "c2VjcmV0"}

    with pytest.raises(AssertionError, match="git"):
        assert_valid(forged, "watch-event")


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (OutputFormat.JSON, '{"error": "cannot reach the cluster", "exitCode": 1}'),
        (OutputFormat.YAML, "---\nerror: cannot reach the cluster\nexitCode: 1"),
    ],
)
def test_a_streamed_error_is_one_more_document(fmt: OutputFormat, expected: str) -> None:
    assert View(fmt, stream=True).error("cannot reach the cluster", 1) == expected


def test_a_single_document_command_still_prints_indented_json() -> None:
    assert View(OutputFormat.JSON).error("x", 1) == '{\n  "error": "x",\n  "exitCode": 1\n}'
