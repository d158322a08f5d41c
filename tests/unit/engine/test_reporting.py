"""Unit tests of the watch loop as data: promote.engine.reporting.watch with status and apply faked, and the
`watch` command printing what it yields. No cluster: the cluster behaviour is in test_watch.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import promote.engine
from promote.cli import main
from promote.engine import Clock, Options, Runtime, reporting
from promote.errors import ClusterError, GateBlocked
from promote.plan import Action, FieldChange, ResourceChange
from promote.results import (
    HealthStatus,
    ReleaseStatus,
    SyncStatus,
    WatchCheck,
    WatchEvent,
    WatchEventKind,
)
from promote.views import OutputFormat, View
from tests.support.contract import assert_valid

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
# Stand-ins for Secret values that a sensitive field change must never carry into an event.
GIT_SECRET, LIVE_SECRET = "Z2l0LXBhc3N3b3Jk", "bGl2ZS1wYXNzd29yZA=="
OPTS = Options(root=Path("/nonexistent"))


def _deployment(action: Action = Action.UPDATE, *fields: FieldChange) -> ResourceChange:
    return ResourceChange(action, "apps/v1", "Deployment", "ns", "web", fields=fields)


def _secret_change() -> ResourceChange:
    # Values as raw as they could ever be: the event must drop them whatever the flag's producer did.
    field = FieldChange("data.password", LIVE_SECRET, GIT_SECRET, sensitive=True)
    return ResourceChange(Action.UPDATE, "v1", "Secret", "ns", "web-secret", fields=(field,))


def _status(
    *, drift: tuple[ResourceChange, ...] = (), runtime: tuple[str, ...] = (), errors: tuple[str, ...] = ()
) -> ReleaseStatus:
    return ReleaseStatus(
        env="prod",
        app="web",
        release="web-prod",
        namespace="ns",
        sync=SyncStatus.OUT_OF_SYNC if drift else SyncStatus.SYNCED,
        health=HealthStatus.HEALTHY,
        health_message="",
        revision="abc",
        promoted_revision="abc",
        helm_revision=1,
        drift=drift,
        runtime=runtime,
        errors=errors,
    )


class FakeClock(Clock):
    """Time that moves only when the watch sleeps; the sleeps are recorded."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


class Fakes:
    """The watch loop with its two seams filled: status answers from a queue (the last answer repeats),
    and healing one release is recorded (or fails with `heal_error`)."""

    def __init__(self, *answers: list[ReleaseStatus], heal_error: str | None = None) -> None:
        self.answers = list(answers)
        self.status_calls = 0
        self.healed: list[str] = []
        self.heal_error = heal_error
        self.clock = FakeClock()

    @property
    def slept(self) -> list[float]:
        return self.clock.slept

    def status(self) -> list[ReleaseStatus]:
        self.status_calls += 1
        return self.answers[min(self.status_calls, len(self.answers)) - 1]

    def heal(self, s: ReleaseStatus) -> None:
        if self.heal_error:
            raise GateBlocked(self.heal_error)
        self.healed.append(s.app)

    def watch(self, **kw: Any) -> Iterator[WatchEvent]:
        args: dict[str, Any] = {"interval": 5.0, "self_heal": False, "max_iterations": 1, "duration": None}
        runtime = Runtime(clock=self.clock)
        return reporting.watch(OPTS, "prod", runtime=runtime, check=self.status, heal=self.heal, **(args | kw))


def _shape(e: WatchEvent) -> tuple[Any, ...]:
    return (e.event, e.app, e.action, e.kind, e.name, e.path, e.git, e.live, e.sensitive, e.paths, e.message)


# --- the engine's events ---------------------------------------------------------------------------


def test_a_check_yields_errors_runtime_notes_and_drift_field_by_field() -> None:
    drift = (
        _deployment(Action.UPDATE, FieldChange("spec.replicas", 5, 3), FieldChange("metadata.labels.tier", None, "a")),
        _secret_change(),
        ResourceChange(Action.CREATE, "v1", "ConfigMap", "ns", "conf"),
        ResourceChange(Action.DELETE, "v1", "Service", "ns", "old"),
    )
    status = _status(drift=drift, runtime=("Pod web-1: 2 restart(s)",), errors=("render failed",))
    fakes = Fakes([status])

    events = list(fakes.watch())

    d, e, r = WatchEventKind.DRIFT, WatchEventKind.ERROR, WatchEventKind.RUNTIME
    assert [_shape(ev) for ev in events] == [
        (e, "web", None, None, None, None, None, None, False, (), "render failed"),
        (r, "web", None, None, None, None, None, None, False, (), "Pod web-1: 2 restart(s)"),
        (d, "web", Action.UPDATE, "Deployment", "web", "spec.replicas", 3, 5, False, (), ""),
        (d, "web", Action.UPDATE, "Deployment", "web", "metadata.labels.tier", "a", None, False, (), ""),
        (d, "web", Action.UPDATE, "Secret", "web-secret", "data.password", None, None, True, (), ""),
        (d, "web", Action.CREATE, "ConfigMap", "conf", None, None, None, False, (), ""),
        (d, "web", Action.DELETE, "Service", "old", None, None, None, False, (), ""),
    ]
    assert {(ev.env, ev.namespace) for ev in events if ev.event == d} == {("prod", "ns")}
    assert fakes.healed == []


def test_self_heal_heals_each_drifted_release_once_and_yields_what_it_reverted() -> None:
    drifted = [_status(drift=(_deployment(Action.UPDATE, FieldChange("spec.replicas", 1, 3)),))]
    fakes = Fakes(drifted, [_status()])

    events = list(fakes.watch(self_heal=True, max_iterations=2))

    assert [(ev.event, ev.action, ev.kind, ev.paths) for ev in events] == [
        (WatchEventKind.DRIFT, Action.UPDATE, "Deployment", ()),
        (WatchEventKind.REVERTED, Action.UPDATE, "Deployment", ("spec.replicas",)),
    ]
    assert fakes.healed == ["web"]
    assert events[0].at <= events[1].at


def test_pending_git_content_is_one_event_and_never_healed() -> None:
    image = FieldChange("spec.template.spec.containers[name=app].image", "app:1.0", "app:1.1")
    held = replace(_status(), pending=(_deployment(Action.UPDATE, image),), pending_reason="held by the gate: soak")
    fakes = Fakes([held])

    events = list(fakes.watch(self_heal=True))

    assert [(ev.event, ev.message) for ev in events] == [
        (WatchEventKind.PENDING, "held by the gate: soak (Deployment web)")
    ]
    assert fakes.healed == []


def test_a_failed_self_heal_is_an_event_of_the_environment() -> None:
    drifted = [_status(drift=(_deployment(Action.DELETE),))]
    fakes = Fakes(drifted, heal_error="gate blocked")

    events = list(fakes.watch(self_heal=True))

    assert [(ev.event, ev.env, ev.app, ev.message) for ev in events[1:]] == [
        (WatchEventKind.HEAL_FAILED, "prod", None, "web: gate blocked")
    ]


def test_watch_checks_max_iterations_times_sleeping_between() -> None:
    fakes = Fakes([_status(runtime=("Pod web-1: not ready (Pending)",))])

    events = list(fakes.watch(max_iterations=3, interval=7.0))

    assert (len(events), fakes.status_calls, fakes.slept) == (3, 3, [7.0, 7.0])


def test_watch_stops_before_a_check_that_would_end_past_the_duration() -> None:
    fakes = Fakes([_status()])

    assert list(fakes.watch(max_iterations=None, duration=10.0, interval=30.0)) == []
    assert (fakes.status_calls, fakes.slept) == (1, [])


def test_events_arrive_as_each_check_ends() -> None:
    fakes = Fakes([_status(errors=("first",))], [_status(errors=("second",))])
    events = fakes.watch(max_iterations=2)

    assert next(events).message == "first"
    assert (fakes.status_calls, fakes.slept) == (1, [])
    assert next(events).message == "second"
    assert (fakes.status_calls, fakes.slept) == (2, [5.0])


def test_a_sensitive_event_cannot_hold_values() -> None:
    with pytest.raises(ValueError, match=r"data\.password"):
        WatchEvent(event=WatchEventKind.DRIFT, at=T0, env="prod", path="data.password", sensitive=True, git="x")


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_no_secret_value_reaches_any_format(fmt: OutputFormat) -> None:
    fakes = Fakes([_status(drift=(_secret_change(),))])
    view = View(fmt, stream=True)

    out = "\n".join(view.watch_event(ev) for ev in fakes.watch(self_heal=True))

    assert "data.password" in out
    assert GIT_SECRET not in out and LIVE_SECRET not in out, out


# --- the command ---------------------------------------------------------------------------------


def _events() -> list[WatchEvent]:
    return [
        WatchEvent(
            event=WatchEventKind.DRIFT,
            at=T0,
            env="prod",
            app="web",
            action=Action.UPDATE,
            kind="Deployment",
            namespace="ns",
            name="web",
            path="spec.replicas",
            git=3,
            live=5,
        ),
        WatchEvent(event=WatchEventKind.RUNTIME, at=T0, env="prod", app="web", message="Pod web-1: 1 restart(s)"),
    ]


def _run_watch(monkeypatch: pytest.MonkeyPatch, *args: str, fail: bool = False) -> Any:
    seen: dict[str, Any] = {}

    def fake_checks(opts: Options, env: str, **kw: Any) -> Iterator[WatchCheck]:
        seen.update(kw, env=env)
        yield WatchCheck(at=T0, env=env, apps=("web",), events=tuple(_events()), next_at=T0 + timedelta(minutes=1))
        if fail:
            raise ClusterError("cannot reach the cluster: connection refused")

    def fake_watch(opts: Options, env: str, **kw: Any) -> Iterator[WatchEvent]:
        for check in fake_checks(opts, env, **kw):
            yield from check.events

    monkeypatch.setattr(promote.engine, "watch", fake_watch, raising=False)
    monkeypatch.setattr(promote.engine, "watch_checks", fake_checks, raising=False)
    result = CliRunner().invoke(main, ["--no-color", "watch", "prod", *args], catch_exceptions=False)
    return result, seen


def test_the_command_prints_one_line_per_event(monkeypatch: pytest.MonkeyPatch) -> None:
    result, seen = _run_watch(monkeypatch, "--interval", "1m", "--self-heal", "--max-iterations", "2")

    at = T0.astimezone().strftime("%H:%M:%S")  # people read their own clock
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        f"{at} prod web drift Deployment ns/web spec.replicas: Git 3, live 5\n"
        f"{at} prod web runtime Pod web-1: 1 restart(s) (observed only: Kubernetes heals it)\n"
    )
    assert seen == {"env": "prod", "interval": 60.0, "self_heal": True, "max_iterations": 2, "duration": None}


def test_the_command_prints_json_lines_and_its_error_last(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = _run_watch(monkeypatch, "-o", "json", fail=True)

    lines = result.stdout.splitlines()
    docs = [json.loads(line) for line in lines]
    for doc in docs:
        assert_valid(doc, "watch-event")
    assert result.exit_code == 1
    assert [d.get("event") for d in docs] == ["drift", "runtime", None]
    assert docs[0]["time"] == "2026-01-01T12:00:00+00:00"
    assert docs[-1] == {"error": "cannot reach the cluster: connection refused", "exitCode": 1}


def test_the_command_prints_a_yaml_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    as_yaml, _ = _run_watch(monkeypatch, "-o", "yaml", fail=True)
    as_json, _ = _run_watch(monkeypatch, "-o", "json", fail=True)

    assert as_yaml.exit_code == 1
    assert as_yaml.stdout.startswith("---\n")
    assert list(yaml.safe_load_all(as_yaml.stdout)) == [json.loads(line) for line in as_json.stdout.splitlines()]
