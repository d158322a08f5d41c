"""`watch` for people: a log of changes of state, not a dump of every check.

Each check of the environment comes whole (a `WatchCheck`); this log remembers what the previous one
found and prints only what changed: a new drift, a drift gone (live matches what was promoted again), a
release back in sync, pending Git content (once per reason: a soak's countdown is not news), a new runtime
note or error. What self-heal did is always said. While nothing changes, a heartbeat line says what
watch still sees, every HEARTBEAT seconds, so a silent terminal means a stuck watch, not a quiet one.
Machine formats (JSON Lines, YAML) still get every event of every check: pipelines keep their contract.
"""

from __future__ import annotations

import re
from datetime import datetime

from promote.plan import Action
from promote.results import WatchCheck, WatchEvent, WatchEventKind
from promote.views.layout import Layout, wrap
from promote.views.plan import plain
from promote.views.progress import clock

HEARTBEAT = 300.0  # seconds of silence before watch says it is still watching
_WATCH_DRIFT = {Action.CREATE: "missing live", Action.DELETE: "live but no longer in Git", Action.UPDATE: "drifted"}
_COUNTDOWN = re.compile(r"\d+")


def _where(e: WatchEvent) -> str:
    return f"{e.kind} {e.namespace + '/' if e.namespace else ''}{e.name}"


def drift_text(e: WatchEvent) -> str:
    """One drifted field, or a resource missing live or no longer in Git, with plain values."""
    if e.path is None:
        return f"{_where(e)}: {_WATCH_DRIFT[e.action or Action.UPDATE]}"
    if e.sensitive:
        return f"{_where(e)} {e.path}: (sensitive value changed)"
    return f"{_where(e)} {e.path}: Git {plain(e.git)}, live {plain(e.live)}"


def one_line(text: str) -> str:
    """A message on one log line: helm and the API server sometimes answer over several."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def event_text(event: WatchEvent) -> str:
    """What one event says, after its time: `ENV APP drift …`, `ENV self-heal failed: …`."""
    message = one_line(event.message)
    if event.event == WatchEventKind.HEAL_FAILED:
        return f"{event.env} self-heal failed: {message}"
    head = f"{event.env} {event.app}"
    if event.event == WatchEventKind.ERROR:
        return f"{head} error {message}"
    if event.event == WatchEventKind.RUNTIME:
        return f"{head} runtime {message} (observed only: Kubernetes heals it)"
    if event.event == WatchEventKind.DRIFT:
        return f"{head} drift {drift_text(event)}"
    if event.event == WatchEventKind.PENDING:
        return f"{head} pending {message}"
    action = event.action.value if event.action is not None else ""
    changed = f"{action}: {', '.join(event.paths)}" if event.paths else action
    return f"{head} reverted {_where(event)} ({changed})"


def _key(e: WatchEvent) -> tuple[object, ...]:
    """What makes an event the same state as one seen before (a pending countdown is the same state)."""
    if e.event == WatchEventKind.DRIFT:
        return (e.event, e.app, e.kind, e.namespace, e.name, e.path)
    if e.event == WatchEventKind.PENDING:
        return (e.event, e.app, _COUNTDOWN.sub("#", e.message))
    return (e.event, e.app, e.message)


class WatchLog:
    """The lines each check adds to the log of `watch`."""

    def __init__(self, layout: Layout, heartbeat: float = HEARTBEAT) -> None:
        self.layout = layout
        self.heartbeat = heartbeat
        self._seen: dict[tuple[object, ...], WatchEvent] = {}
        self._said_at: datetime | None = None
        self._troubled: set[str] = set()  # apps the last check found drifted, pending or failing

    def _line(self, at: datetime, text: str) -> list[str]:
        line = f"{clock(at)} {text}"
        return wrap(line, self.layout, hanging=9) if self.layout.tty else [line]

    def check(self, c: WatchCheck) -> list[str]:
        """The lines one check adds: what changed since the last one, or a heartbeat when due."""
        out: list[str] = []
        now: dict[tuple[object, ...], WatchEvent] = {}
        actions = [e for e in c.events if e.event in (WatchEventKind.REVERTED, WatchEventKind.HEAL_FAILED)]
        for e in c.events:
            if e in actions:
                continue
            key = _key(e)
            now[key] = e
            before = self._seen.get(key)
            if before is None or (e.event == WatchEventKind.DRIFT and (before.git, before.live) != (e.git, e.live)):
                out += self._line(e.at, event_text(e))
        reverted = {(e.app, e.kind, e.namespace, e.name) for e in actions if e.event == WatchEventKind.REVERTED}
        for key, e in self._seen.items():
            if key in now or (e.app, e.kind, e.namespace, e.name) in reverted:
                continue
            if e.event == WatchEventKind.DRIFT:
                what = f"{_where(e)} {e.path}" if e.path else _where(e)
                out += self._line(c.at, f"{e.env} {e.app} drift reverted {what}: live matches what was promoted")
            elif e.event == WatchEventKind.PENDING:
                out += self._line(c.at, f"{e.env} {e.app} no longer pending")
        still = {e.app for e in now.values() if e.event != WatchEventKind.RUNTIME and e.app is not None}
        for app in sorted(a for a in self._troubled - still if a in c.apps):
            out += self._line(c.at, f"{c.env} {app} back in sync")
        for e in actions:
            out += self._line(e.at, event_text(e))
        # A revert is done: what it reverted is no longer something seen, so a new drift is news again.
        self._seen = {k: e for k, e in now.items() if (e.app, e.kind, e.namespace, e.name) not in reverted}
        self._troubled = still
        quiet = self._said_at is None or (c.at - self._said_at).total_seconds() >= self.heartbeat
        if not out and quiet:
            out += self._line(c.at, self._state(c))
        if out:
            self._said_at = c.at
        return out

    def _state(self, c: WatchCheck) -> str:
        """The heartbeat: what watch sees now, and when it looks next."""
        drift = len({(e.app, e.kind, e.name, e.path) for e in self._seen.values() if e.event == WatchEventKind.DRIFT})
        pending = len({e.app for e in self._seen.values() if e.event == WatchEventKind.PENDING})
        errors = len({e.app for e in self._seen.values() if e.event == WatchEventKind.ERROR})
        n = len(c.apps)
        parts = [f"{drift} drifted field{'s' if drift != 1 else ''}"] if drift else []
        parts += [f"{pending} pending"] if pending else []
        parts += [f"{errors} in error"] if errors else []
        state = "still " + ", ".join(parts) if parts else f"{n} release{'s' if n != 1 else ''} in sync"
        nxt = f"; next check at {clock(c.next_at)}" if c.next_at is not None else ""
        return f"{c.env} watching: {state}{nxt}"
