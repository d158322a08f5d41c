"""Unit tests of what people read: apply's progress table, the plan, and watch's log of changes of state.

The exact text at 80 columns on the real cluster is in tests/cluster/test_output.py; here, the rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from promote.health import HealthStatus
from promote.plan import Action, EnvironmentPlan, FieldChange, HookPhase, Plan, ReleasePlan, ResourceChange
from promote.results import Event, WatchCheck, WatchEvent, WatchEventKind
from promote.views.layout import Layout
from promote.views.plan import PlanView
from promote.views.progress import Progress
from promote.views.watch import WatchLog

T0 = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
AT = T0.astimezone().strftime("%H:%M:%S")


def _event(**kw: Any) -> Event:
    base: dict[str, Any] = {
        "at": T0,
        "env": "prod",
        "kind": "Deployment",
        "namespace": "ns",
        "name": "web",
        "status": "Synced",
        "health": HealthStatus.PROGRESSING,
        "message": "0 of 3 replicas updated",
    }
    return Event(**(base | kw))


# --- progress ------------------------------------------------------------------------------------


def test_progress_is_a_table_with_a_header_and_a_line_per_environment() -> None:
    progress = Progress(Layout(width=80))

    lines = [click.unstyle(line) for line in progress.event(_event())]
    lines += [
        click.unstyle(line) for line in progress.event(_event(env="next", health=HealthStatus.HEALTHY, message="ok"))
    ]

    assert lines == [
        "TIME      KIND        NAME              STATUS     HEALTH       MESSAGE",
        "── prod",
        f"{AT}  Deployment  web               Synced     Progressing  0 of 3 replicas updated",
        "── next",
        f"{AT}  Deployment  web               Synced     Healthy      ok",
    ]


def test_progress_never_repeats_the_last_state_of_an_object() -> None:
    progress = Progress(Layout(width=80))
    first = progress.event(_event())

    assert progress.event(_event()) == []
    assert len(progress.event(_event(health=HealthStatus.HEALTHY, message="3/3 available"))) == 1
    assert len(first) == 3


def test_progress_fits_80_columns_on_a_terminal_and_keeps_messages_whole_in_a_pipe() -> None:
    long = "waiting for Deployment python-app-prod: 1 of 3 updated replicas are available"
    ev = _event(kind="Pod", name="python-app-prod-post-sync", hook="PostSync", message=long)

    tty = Progress(Layout(width=80, tty=True)).event(ev)
    pipe = Progress(Layout(width=80)).event(ev)

    assert [len(line) <= 80 for line in tty] == [True, True, True]
    assert tty[-1] == f"{AT}  Pod         python-a…st-sync  Synced     Progressing  waiting for Dep…"
    assert pipe[-1] == f"{AT}  Pod         python-a…st-sync  Synced     Progressing  {long}"


def test_wider_terminals_get_hook_namespace_and_group_back() -> None:
    ev = _event(kind="Pod", name="web-pre-sync", hook="PreSync", message="running")

    assert Progress(Layout(width=100)).event(ev)[0].split() == [
        "TIME",
        "KIND",
        "NAME",
        "STATUS",
        "HEALTH",
        "HOOK",
        "MESSAGE",
    ]
    assert Progress(Layout(width=160)).event(ev)[0].split()[:5] == ["TIME", "GROUP", "KIND", "NAMESPACE", "NAME"]
    wide = Progress(Layout(wide=True)).event(_event(kind="Job"))
    assert wide[-1].startswith("2026-01-01T12:00:05Z  batch")


# --- plan ----------------------------------------------------------------------------------------


def _plan(*changes: ResourceChange, revision: int | None = 1) -> Plan:
    release = ReleasePlan(
        app="web",
        release="web",
        namespace="ns",
        context=None,
        chart="web",
        chart_version="1.0.0",
        current_revision=revision,
        current_status="deployed" if revision else None,
        changes=changes,
    )
    return Plan(target="prod", revision="abc123", environments=(EnvironmentPlan("prod", "ns", None, (release,)),))


UNCHANGED = ResourceChange(Action.UNCHANGED, "v1", "Service", "ns", "web")
IMAGE = "spec.template.spec.containers[name=app].image"


def test_plan_lists_each_changed_field_on_its_own_line_and_counts_the_unchanged() -> None:
    deployment = ResourceChange(
        Action.UPDATE,
        "apps/v1",
        "Deployment",
        "ns",
        "web",
        fields=(
            FieldChange("spec.replicas", 1, 3),
            FieldChange(IMAGE, "registry.local/python-app:1.0.0", "registry.local/python-app:1.1.0"),
            FieldChange("metadata.labels.tier", None, "web"),
        ),
    )
    secret = ResourceChange(
        Action.UPDATE, "v1", "Secret", "ns", "s", fields=(FieldChange("data.password", None, None, sensitive=True),)
    )
    hook = ResourceChange(Action.CREATE, "v1", "Pod", "ns", "web-pre", hook=HookPhase.PRE_SYNC)

    text = click.unstyle(PlanView(Layout(width=80)).render(_plan(deployment, secret, UNCHANGED, hook)))

    assert text.splitlines()[2:] == [
        "Environment prod  (context current context)",
        "  web: release web in ns, chart web-1.0.0 (revision 1, deployed)",
        "    ~ update Deployment ns/web",
        "        ~ spec.replicas: 1 → 3",
        f"        ~ {IMAGE}:",
        "            registry.local/python-app:1.0.0 → registry.local/python-app:1.1.0",
        "        + metadata.labels.tier: web",
        "    ~ update Secret ns/s",
        "        ~ data.password: (sensitive value changed)",
        "    + create Pod ns/web-pre (PreSync hook)",
        "    1 unchanged",
        "",
        "Plan: 0 to create, 2 to update, 0 to delete, 1 unchanged.",
    ]


def test_show_unchanged_lists_them() -> None:
    text = click.unstyle(PlanView(Layout(width=80), show_unchanged=True).render(_plan(UNCHANGED)))

    assert "    = unchanged Service ns/web" in text.splitlines()


def test_no_changes_says_so_and_shows_no_hooks() -> None:
    hook = ResourceChange(Action.CREATE, "v1", "Pod", "ns", "web-pre", hook=HookPhase.PRE_SYNC)

    lines = click.unstyle(PlanView(Layout(width=80)).render(_plan(UNCHANGED, hook))).splitlines()

    assert lines[-3:] == ["    no changes (1 unchanged)", "", "No changes. Live matches Git: 1 unchanged."]


def test_a_value_too_long_for_any_line_is_cut_in_its_middle_on_a_terminal_only() -> None:
    config = ResourceChange(
        Action.UPDATE, "v1", "ConfigMap", "ns", "c", fields=(FieldChange("data.big", "a" * 100, "b" * 100),)
    )

    tty = click.unstyle(PlanView(Layout(width=80, tty=True)).render(_plan(config))).splitlines()
    pipe = click.unstyle(PlanView(Layout(width=80)).render(_plan(config))).splitlines()

    assert tty[5:8] == [
        "        ~ data.big:",
        "            " + "a" * 34 + "…" + "a" * 33,
        "            → " + "b" * 32 + "…" + "b" * 33,
    ]
    assert pipe[6:8] == ["            " + "a" * 100, "            → " + "b" * 100]


# --- watch ---------------------------------------------------------------------------------------


def _drift(live: int = 1, at: datetime = T0) -> WatchEvent:
    return WatchEvent(
        event=WatchEventKind.DRIFT,
        at=at,
        env="prod",
        app="web",
        action=Action.UPDATE,
        kind="Deployment",
        namespace="ns",
        name="web",
        path="spec.replicas",
        git=3,
        live=live,
    )


def _check(n: int, *events: WatchEvent) -> WatchCheck:
    at = T0 + timedelta(seconds=30 * n)
    return WatchCheck(at=at, env="prod", apps=("web",), events=events, next_at=at + timedelta(seconds=30))


def _clock(n: int) -> str:
    return (T0 + timedelta(seconds=30 * n)).astimezone().strftime("%H:%M:%S")


def test_watch_says_each_change_of_state_once() -> None:
    log = WatchLog(Layout(width=80), heartbeat=300)
    pending = WatchEvent(
        event=WatchEventKind.PENDING, at=T0, env="prod", app="web", message="soak 10m: 4m12s left, gate opens 10:42:07"
    )
    later = WatchEvent(
        event=WatchEventKind.PENDING, at=T0, env="prod", app="web", message="soak 10m: 3m42s left, gate opens 10:42:07"
    )

    said = [
        log.check(_check(0)),
        log.check(_check(1, _drift(at=T0 + timedelta(seconds=30)))),
        log.check(_check(2, _drift())),
        log.check(_check(3, _drift(live=2))),
        log.check(_check(4, pending)),
        log.check(_check(5, later)),
        log.check(_check(6)),
    ]

    assert said == [
        [f"{_clock(0)} prod watching: 1 release in sync; next check at {_clock(1)}"],
        [f"{_clock(1)} prod web drift Deployment ns/web spec.replicas: Git 3, live 1"],
        [],
        [f"{AT} prod web drift Deployment ns/web spec.replicas: Git 3, live 2"],
        [
            f"{AT} prod web pending soak 10m: 4m12s left, gate opens 10:42:07",
            f"{_clock(4)} prod web drift reverted Deployment ns/web spec.replicas: live matches what was promoted",
        ],
        [],
        [f"{_clock(6)} prod web no longer pending", f"{_clock(6)} prod web back in sync"],
    ]


def test_watch_heartbeat_comes_after_a_quiet_interval() -> None:
    log = WatchLog(Layout(width=80), heartbeat=90)

    said = [log.check(_check(n, _drift())) for n in range(5)]

    assert [len(lines) for lines in said] == [1, 0, 0, 1, 0]
    assert said[3] == [f"{_clock(3)} prod watching: still 1 drifted field; next check at {_clock(4)}"]


def test_a_self_heal_is_said_and_its_drift_is_not_said_gone() -> None:
    reverted = WatchEvent(
        event=WatchEventKind.REVERTED,
        at=T0,
        env="prod",
        app="web",
        action=Action.UPDATE,
        kind="Deployment",
        namespace="ns",
        name="web",
        paths=("spec.replicas",),
    )
    log = WatchLog(Layout(width=80))

    assert log.check(_check(0, _drift(), reverted)) == [
        f"{AT} prod web drift Deployment ns/web spec.replicas: Git 3, live 1",
        f"{AT} prod web reverted Deployment ns/web (update: spec.replicas)",
    ]
    assert log.check(_check(1)) == [f"{_clock(1)} prod web back in sync"]
    assert log.check(_check(2, _drift())) == [f"{AT} prod web drift Deployment ns/web spec.replicas: Git 3, live 1"]
