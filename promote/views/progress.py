"""apply's progress as one aligned table, in `argocd app sync`'s column order, streamed row by row.

TIME GROUP KIND NAMESPACE NAME STATUS HEALTH HOOK MESSAGE: a streamed table cannot measure rows it has
not seen, so its columns have fixed widths, fitted once to the terminal (GROUP goes first, then
NAMESPACE, then HOOK; NAME is cut in its middle, where a hook's name says least). Each environment
starts with a line of its own. A row that would repeat the last state said of the same object is not
printed: one row per change of state.
"""

from __future__ import annotations

from datetime import datetime

import click

from promote.health import KINDS
from promote.results import Event
from promote.views.layout import Column, Layout, fit, row

# API groups of the kinds progress is told about; the rest are core ("").
_GROUPS = {kind: group for (group, kind) in KINDS} | {"Lease": "coordination.k8s.io"}


def _columns(wide: bool) -> list[Column]:
    big = 2 if wide else 1  # -o wide cuts nothing that fits in twice the room
    return [
        Column("TIME", width=20 if wide else 8),
        Column("GROUP", width=10 * big, drop=3),
        Column("KIND", width=10 * big, min=7),
        Column("NAMESPACE", width=10 * big, drop=2, middle=True),
        Column("NAME", width=24 * big, min=14, middle=True),
        Column("STATUS", width=9 * big, min=7),
        Column("HEALTH", width=11, min=8),
        Column("HOOK", width=8, drop=1),
        Column("MESSAGE"),
    ]


def clock(at: datetime, wide: bool = False) -> str:
    """An event's time as people read it: HH:MM:SS local time, the full UTC timestamp with -o wide."""
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if wide else at.astimezone().strftime("%H:%M:%S")


class Progress:
    """Turns apply's events into the lines of its progress table, as they come."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.columns = _columns(layout.wide)
        # The message is as long as it is: it takes whatever room the other columns leave.
        self.fitted = fit(self.columns, [c.width or layout.width for c in self.columns], layout)
        self._last: dict[tuple[str, str, str, str], tuple[str, str, str, str]] = {}
        self._env: str | None = None

    def event(self, ev: Event) -> list[str]:
        """The lines one event adds: none when it repeats what was last said of its object."""
        health = ev.health.value if ev.health is not None else ""
        key, state = (ev.env, ev.kind, ev.namespace, ev.name), (ev.status, health, ev.hook, ev.message)
        if self._last.get(key) == state:
            return []
        self._last[key] = state
        out: list[str] = []
        if self._env is None:
            out += row(self.columns, self.fitted, [c.header for c in self.columns])
        if ev.env != self._env:
            self._env = ev.env
            out.append(click.style(f"── {ev.env}", bold=True))
        cells = [
            clock(ev.at, self.layout.wide),
            _GROUPS.get(ev.kind, ""),
            ev.kind,
            ev.namespace,
            ev.name,
            ev.status,
            health,
            ev.hook,
            " ".join(ev.message.split()),  # helm and the API server sometimes answer over several lines
        ]
        return out + row(self.columns, self.fitted, cells)
