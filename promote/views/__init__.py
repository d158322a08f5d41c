"""Views: the one place that turns results into text, human (tables fitted to the terminal) or machine
(JSON/YAML).

A view is chosen once per command from `-o`; errors render through the same view, so a pipeline asking
for JSON gets JSON even when the command fails. Human output fits the terminal (`COLUMNS`, the tty, else
80; see `layout`); `-o wide` adds the columns kubectl would keep for it. A streaming command (`watch`)
prints one document per event instead of one in all: JSON Lines, or a YAML stream of `---` documents,
its error included. Modules: `layout` (widths, tables, truncation), `plan`, `progress` (apply's table),
`watch` (the log of changes of state).
"""

from __future__ import annotations

import json
from collections import Counter
from enum import StrEnum
from typing import Any

import click
import yaml

from promote.plan import Action, Plan, ResourceChange
from promote.results import (
    ApplyResult,
    EnvResult,
    GateCheck,
    GateResult,
    HistoryEntry,
    Outcome,
    ReleaseStatus,
    ResourceDiff,
    WatchCheck,
    WatchEvent,
)
from promote.values import Violation
from promote.views.layout import Column, Layout, table, wrap
from promote.views.plan import SENSITIVE, PlanView, field_lines, plain, where
from promote.views.progress import Progress
from promote.views.watch import WatchLog, event_text

__all__ = ["Layout", "OutputFormat", "Progress", "View", "WatchLog"]


class OutputFormat(StrEnum):
    """`-o` choices: `wide` is the table with every column."""

    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"

    @property
    def human(self) -> bool:
        """A table for people (table or wide), not a document for machines."""
        return self in (OutputFormat.TABLE, OutputFormat.WIDE)


_DRIFT = {Action.CREATE: "missing", Action.DELETE: "no longer in Git", Action.UPDATE: "drifted"}
_PENDING = {Action.CREATE: "to create", Action.DELETE: "to delete", Action.UPDATE: "to update"}


def _pass_fail(text: str) -> str:
    return click.style(text, fg="green") if text == GateResult.PASS.value else click.style(text, fg="red")


def _seconds(duration: float) -> str:
    return f"{duration:.1f}s"


class View:
    """Base view: machine formats share everything but the encoder; people get tables fitted to `layout`."""

    def __init__(self, fmt: OutputFormat, *, stream: bool = False, layout: Layout | None = None) -> None:
        self.fmt = fmt
        self.stream = stream
        self.layout = layout or Layout(wide=fmt == OutputFormat.WIDE)

    def dump(self, doc: Any) -> str:
        """Encode a document in the machine format: one line of JSON, or a `---` YAML document, when streaming."""
        if self.fmt == OutputFormat.YAML:
            return yaml.safe_dump(doc, sort_keys=False, explicit_start=self.stream).rstrip()
        if self.stream:
            return json.dumps(doc)
        return json.dumps(doc, indent=2)

    # --- plan --------------------------------------------------------------------------------------

    def plan(self, plan: Plan, *, show_unchanged: bool = False, on_conflict: str = "take") -> str:
        """A plan, terraform-style for people."""
        if not self.fmt.human:
            return self.dump(plan.to_dict())
        return PlanView(self.layout, show_unchanged=show_unchanged, on_conflict=on_conflict).render(plan)

    # --- apply -------------------------------------------------------------------------------------

    def progress(self) -> Progress:
        """apply's progress table, streamed as events come."""
        return Progress(self.layout)

    def apply(self, result: ApplyResult) -> str:
        """Per environment: its gate, its releases, and a summary line (counts, revision, health, duration)."""
        if not self.fmt.human:
            return self.dump(result.to_dict())
        lines: list[str] = []
        for env in result.environments:
            lines.append(click.style(f"Environment {env.name}", bold=True) + f"  (context {env.context or 'current'})")
            for check in env.gate:
                reason = f"gate {check.name}: {_pass_fail(check.result.value)} {check.reason}"
                lines.extend(wrap(reason, self.layout, indent=2))
            columns = [
                Column("APP", drop=1),
                Column("RELEASE", min=10, middle=True),
                Column("NAMESPACE", wide=True),
                Column("OUTCOME"),
                Column("REV", align=">"),
                Column("HEALTH"),
                Column("MESSAGE"),
            ]
            rows = [
                [
                    rel.app,
                    rel.release,
                    rel.namespace,
                    rel.outcome.value,
                    str(rel.revision or "-"),
                    rel.health.value if rel.health is not None else "-",
                    " ".join(rel.message.split()),
                ]
                for rel in env.releases
            ]
            if rows:
                lines.extend(table(columns, rows, self.layout, indent=2))
            lines.extend(wrap(self._summary(env), self.layout, indent=2))
            lines.append("")
        for name in result.not_reached:
            lines.append(click.style(f"Environment {name}", bold=True) + "  not reached: left untouched")
        if result.not_reached:
            lines.append("")
        if result.error:
            lines.extend(wrap(click.style("Error: ", fg="red", bold=True) + result.error, self.layout, hanging=2))
        return "\n".join(lines).rstrip()

    @staticmethod
    def _summary(env: EnvResult) -> str:
        """`synced to main (4c0e810) in 4.8s: 1 synced, 0 unchanged, 0 failed; Healthy`."""
        counts = {o: sum(1 for r in env.releases if r.outcome == o) for o in Outcome}
        failed = counts[Outcome.FAILED] + counts[Outcome.ROLLED_BACK]
        tally = f"{counts[Outcome.SYNCED]} synced, {counts[Outcome.UNCHANGED]} unchanged, {failed} failed"
        done = env.outcome in (Outcome.SYNCED, Outcome.UNCHANGED) and env.synced_to
        at = "to" if env.outcome == Outcome.SYNCED else "at"  # "unchanged at main (…)", not "unchanged to"
        when = f"{at} {env.synced_to} in {_seconds(env.duration)}" if done else f"after {_seconds(env.duration)}"
        health = f"; {env.health.value}" if env.health is not None else ""
        return f"{env.outcome.value} {when}: {tally}{health}"

    # --- history and status ------------------------------------------------------------------------

    def history(self, entries: list[HistoryEntry]) -> str:
        """Promotions per release, newest last, like `helm history`."""
        if not self.fmt.human:
            return self.dump({"schemaVersion": 1, "history": [e.to_dict() for e in entries]})
        wide = self.layout.wide
        columns = [
            Column("APP"),
            Column("REV", align=">"),
            Column("UPDATED"),
            Column("STATUS"),
            Column("CHART", drop=1),
            Column("GIT"),
            Column("ARTIFACT", wide=True),
            Column("BY", wide=True),
            Column("ACTION"),
        ]
        rows = [
            [
                e.app,
                str(e.revision),
                e.updated[:19].replace("T", " ") if wide else e.updated[:16].replace("T", " "),
                e.status,
                e.chart,
                (e.git_revision or "-")[: 12 if wide else 7],
                (e.artifact or "-")[:8],
                e.by or "-",
                " ".join((e.action or e.description).split()),
            ]
            for e in entries
        ]
        return "\n".join(table(columns, rows, self.layout))

    def status(self, revision: str, statuses: list[ReleaseStatus]) -> str:
        """Sync and health per release, then the drifted fields, what is pending, runtime notes."""
        if not self.fmt.human:
            return self.dump({"schemaVersion": 1, "revision": revision, "releases": [s.to_dict() for s in statuses]})
        wide = self.layout.wide
        columns = [
            Column("ENV"),
            Column("APP"),
            Column("RELEASE", wide=True),
            Column("NAMESPACE", wide=True),
            Column("SYNC"),
            Column("HEALTH"),
            Column("PROMOTED", drop=2),
            Column("REV", align=">", drop=1),
            Column("MESSAGE"),
        ]
        rows = [
            [
                s.env,
                s.app,
                s.release,
                s.namespace,
                s.sync.value,
                s.health.value,
                (s.promoted_revision or "-")[: 12 if wide else 7],
                str(s.helm_revision or "-"),
                " ".join(s.health_message.split()),
            ]
            for s in statuses
        ]
        out = [f"Git revision {revision}", "", *table(columns, rows, self.layout)]
        if any(s.drift for s in statuses):
            out += [
                "",
                *wrap("Drift (live departs from what was promoted; `watch --self-heal` reverts it):", self.layout),
            ]
        for s in statuses:
            for c in s.drift:
                out += wrap(f"{s.env}/{s.app}: {where(c)} {_DRIFT[c.action]}", self.layout, indent=2)
                out += self._fields(c, drift=True)
        if any(s.pending or s.pending_reason for s in statuses):
            text = "Pending (Git departs from what was promoted; `apply` promotes it past the gate):"
            out += ["", *wrap(text, self.layout)]
        for s in statuses:
            if s.pending or s.pending_reason:
                out += wrap(f"{s.env}/{s.app}: {s.pending_reason}", self.layout, indent=2)
            for c in s.pending:
                out += wrap(f"{where(c)} {_PENDING[c.action]}", self.layout, indent=4)
                out += self._fields(c, drift=False)
        noted = [s for s in statuses if s.runtime]
        if noted:
            out += ["", *wrap("Runtime (observed only, not drift: Kubernetes heals these):", self.layout)]
            for s in noted:
                for note in s.runtime:
                    out += wrap(f"{s.env}/{s.app}: {note}", self.layout, indent=2)
        for s in statuses:
            for e in s.errors:
                out += wrap(click.style("Error: ", fg="red") + f"{s.env}/{s.app}: {e}", self.layout, hanging=2)
        return "\n".join(out)

    def _fields(self, c: ResourceChange, *, drift: bool) -> list[str]:
        """A drifted or pending resource's fields, one per line (`3 promoted, 1 live`, `1.0 → 1.1`)."""
        out: list[str] = []
        for f in c.fields:
            if f.sensitive:
                parts = [SENSITIVE]
            elif drift:
                parts = [f"{plain(f.after)} promoted,", f"{plain(f.before)} live"]
            else:
                parts = [plain(f.before), f"→ {plain(f.after)}"]
            indent = 6
            out += field_lines(f"{f.path}:", parts, self.layout, indent)
        return out

    def diffs(self, diffs: list[ResourceDiff]) -> str:
        """A unified diff, live → Git, per drifted resource; coloured unless --no-color/NO_COLOR."""
        import difflib

        if not self.fmt.human:
            return self.dump({"schemaVersion": 1, "diffs": [d.__dict__ for d in diffs]})
        if not diffs:
            return "No differences: live matches Git."
        out: list[str] = []
        for d in diffs:
            where = f"{d.kind}/{d.namespace + '/' if d.namespace else ''}{d.name}"
            lines = difflib.unified_diff(
                d.live.splitlines(), d.git.splitlines(), f"live/{where}", f"git/{where}", lineterm="", n=3
            )
            for line in lines:
                if line.startswith(("+++", "---")):
                    out.append(click.style(line, bold=True))
                elif line.startswith("+"):
                    out.append(click.style(line, fg="green"))
                elif line.startswith("-"):
                    out.append(click.style(line, fg="red"))
                elif line.startswith("@@"):
                    out.append(click.style(line, fg="cyan"))
                else:
                    out.append(line)
        return "\n".join(out)

    def gate(self, env: str, checks: list[GateCheck]) -> str:
        """Each gate check with pass/fail and its reason."""
        allowed = all(c.result == GateResult.PASS for c in checks)
        if not self.fmt.human:
            return self.dump(
                {"schemaVersion": 1, "env": env, "allowed": allowed, "checks": [c.to_dict() for c in checks]}
            )
        columns = [
            Column("RESULT", style=_pass_fail),
            Column("CHECK"),
            Column("APP", drop=1),
            Column("REASON", wrap=True),
        ]
        rows = [[c.result.value, c.name, c.app or "", c.reason] for c in checks]
        verdict = f"{env} may be promoted now." if allowed else f"{env} is blocked."
        return "\n".join(table(columns, rows, self.layout)) + "\n\n" + verdict

    # --- pins --------------------------------------------------------------------------------------

    def unpinned(self, env: str, released: list[Any]) -> str:
        """What `promote unpin` released."""
        if not self.fmt.human:
            doc = [
                {"env": p.env, "by": p.by, "at": p.at, "reason": p.reason, "pinnedAt": p.pinned_at} for p in released
            ]
            return self.dump({"schemaVersion": 1, "env": env, "released": doc})
        if not released:
            return f"{env} is not pinned"
        return "\n".join(line for p in released for line in wrap(f"released: {p.describe()}", self.layout))

    # --- watch -------------------------------------------------------------------------------------

    def watch_event(self, event: WatchEvent) -> str:
        """One watch event: a log line for people, or one machine document (see `stream`)."""
        if not self.fmt.human:
            return self.dump(event.to_dict())
        return f"{event.at:%Y-%m-%dT%H:%M:%SZ} {event_text(event)}"

    def watch_log(self) -> WatchLog:
        """The human log of `watch`: one line per change of state, and a heartbeat (see views.watch)."""
        return WatchLog(self.layout)

    def watch_check(self, log: WatchLog, check: WatchCheck) -> list[str]:
        """One check: the lines it adds to the log for people, or one machine document per event."""
        if not self.fmt.human:
            return [self.dump(e.to_dict()) for e in check.events]
        return log.check(check)

    # --- validation --------------------------------------------------------------------------------

    def violations(self, violations: list[Violation], checked: int) -> str:
        """Every violation, or a confirmation."""
        if not self.fmt.human:
            return self.dump(
                {"schemaVersion": 1, "valid": not violations, "violations": [v.to_dict() for v in violations]}
            )
        if not violations:
            return f"All {checked} app environment(s) valid."
        columns = [
            Column("FILE", middle=True, min=16),  # where to fix it: never dropped, cut in the middle
            Column("APP", drop=1),
            Column("ENV"),
            Column("PATH", min=12, middle=True),
            Column("VALUE", min=8),
            Column("SCHEMA", wide=True),
            Column("EXPECTED", wrap=True),
        ]
        rows = [
            [v.location, v.app, v.environment, v.path, json.dumps(v.value), v.schema, v.expected] for v in violations
        ]
        summary = wrap(violation_summary(violations), self.layout)
        return "\n".join([*table(columns, rows, self.layout), "", *summary])

    # --- errors ------------------------------------------------------------------------------------

    def error(self, message: str, code: int) -> str:
        """An error, in the same format as the command's output."""
        if not self.fmt.human:
            return self.dump({"error": message, "exitCode": code})
        return click.style("Error: ", fg="red", bold=True) + message


def violation_summary(violations: list[Violation]) -> str:
    """The count, and which schema each violation breaks: the SCHEMA column is only in `-o wide`, and a
    policy's `required` names the missing key but not that it is the policy that asks for it."""
    counts = Counter(v.schema for v in violations)
    parts = ", ".join(f"{n} of {schema}" for schema, n in sorted(counts.items()))
    return f"{len(violations)} violation(s): {parts}."
