"""Views: the one place that turns results into text, human (tabulate) or machine (JSON/YAML).

A view is chosen once per command from `-o`; errors render through the same view, so a pipeline asking
for JSON gets JSON even when the command fails. A streaming command (`watch`) prints one document per
event instead of one in all: JSON Lines, or a YAML stream of `---` documents, its error included.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import click
import yaml
from tabulate import tabulate

from promote.plan import Action, FieldChange, Plan, ReleasePlan, ResourceChange
from promote.results import (
    ApplyResult,
    GateCheck,
    GateResult,
    HistoryEntry,
    Outcome,
    ReleaseStatus,
    ResourceDiff,
    WatchEvent,
    WatchEventKind,
)
from promote.values import Violation


class OutputFormat(StrEnum):
    """`-o` choices."""

    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


_SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-", Action.UNCHANGED: " "}
_COLOR = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red", Action.UNCHANGED: None}
_DRIFT = {Action.CREATE: "missing", Action.DELETE: "no longer in Git", Action.UPDATE: "drifted"}
_WATCH_DRIFT = {Action.CREATE: "missing live", Action.DELETE: "live but no longer in Git", Action.UPDATE: "drifted"}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) and "\n" not in value else json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _drift_text(f: FieldChange) -> str:
    if f.sensitive:
        return "(sensitive value changed)"
    return f"{_short(f.after)} promoted, {_short(f.before)} live"


def _pending_text(f: FieldChange) -> str:
    if f.sensitive:
        return "(sensitive value changed)"
    return f"{_short(f.before)} → {_short(f.after)}"


_PENDING = {Action.CREATE: "to create", Action.DELETE: "to delete", Action.UPDATE: "to update"}


def _change_lines(s: ReleaseStatus, changes: tuple[ResourceChange, ...], drift: bool) -> list[str]:
    """A status's drifted or pending resources, one line each, and their fields below."""
    out = []
    for c in changes:
        what = _DRIFT[c.action] if drift else _PENDING[c.action]
        fields = [f"{f.path}: {_drift_text(f) if drift else _pending_text(f)}" for f in c.fields]
        out.append(
            f"    {c.kind} {c.namespace or ''}/{c.name} {what}"
            if not drift
            else f"  {s.env}/{s.app}: {c.kind} {c.namespace or ''}/{c.name} {what}"
        )
        out.extend(f"      {x}" for x in fields)
    return out


def _watch_drift_text(e: WatchEvent) -> str:
    what = f"{e.kind} {e.namespace or ''}/{e.name}"
    if e.path is None:
        return f"{what}: {_WATCH_DRIFT[e.action or Action.UPDATE]}"
    if e.sensitive:
        return f"{what} {e.path}: (sensitive value changed)"
    return f"{what} {e.path}: Git {_short(e.git)}, live {_short(e.live)}"


def _one_line(text: str) -> str:
    """A message on one log line: helm and the API server sometimes answer over several."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class View:
    """Base view: machine formats share everything but the encoder."""

    def __init__(self, fmt: OutputFormat, *, stream: bool = False) -> None:
        self.fmt = fmt
        self.stream = stream

    def dump(self, doc: Any) -> str:
        """Encode a document in the machine format: one line of JSON, or a `---` YAML document, when streaming."""
        if self.fmt == OutputFormat.YAML:
            return yaml.safe_dump(doc, sort_keys=False, explicit_start=self.stream).rstrip()
        if self.stream:
            return json.dumps(doc)
        return json.dumps(doc, indent=2)

    # --- plan --------------------------------------------------------------------------------------

    def plan(self, plan: Plan) -> str:
        """A plan, terraform-style for people."""
        if self.fmt != OutputFormat.TABLE:
            return self.dump(plan.to_dict())
        lines = [f"Revision {plan.revision}", ""]
        for env in plan.environments:
            ctx = env.context or "current context"
            lines.append(click.style(f"Environment {env.name}", bold=True) + f"  (context {ctx})")
            if not env.releases:
                lines.append("  no apps deployed here")
            for rel in env.releases:
                lines.append(self._release(rel))
            lines.append("")
        s = plan.summary
        lines.append(
            f"Plan: {s.create} to create, {s.update} to update, {s.delete} to delete, {s.unchanged} unchanged."
        )
        for e in plan.all_errors:
            lines.append(click.style("Error: ", fg="red", bold=True) + e)
        return "\n".join(lines)

    def _release(self, rel: ReleasePlan) -> str:
        status = f"revision {rel.current_revision}, {rel.current_status}" if rel.current_revision else "not installed"
        if rel.current_unverified:
            status += ", never seen healthy (an apply stopped while waiting for it)"
        if (rel.current_status or "").startswith("pending-"):
            status += (
                ": a helm operation was stopped midway or still runs; apply recovers it once no apply holds the lock"
            )
        head = (
            f"  {rel.app}: release {rel.release} in {rel.namespace}, chart {rel.chart}-{rel.chart_version} ({status})"
        )
        if rel.errors:
            return head + "\n" + "\n".join("    " + click.style("error: ", fg="red") + e for e in rel.errors)
        rows = []
        for c in rel.changes:
            fields = []
            for f in c.fields:
                if f.sensitive:
                    fields.append(f"{f.path}: (sensitive value changed)")
                else:
                    fields.append(f"{f.path}: {_short(f.before)} → {_short(f.after)}")
            symbol = click.style(f"{_SYMBOL[c.action]} {c.action.value}", fg=_COLOR[c.action])
            rows.append(
                [
                    symbol,
                    c.kind,
                    f"{c.namespace + '/' if c.namespace else ''}{c.name}",
                    c.hook.value if c.hook else "",
                    "\n".join(fields),
                ]
            )
        table = tabulate(rows, headers=["ACTION", "KIND", "NAME", "HOOK", "CHANGES"], tablefmt="plain")
        return head + "\n" + "\n".join("    " + line for line in table.splitlines())

    # --- apply -------------------------------------------------------------------------------------

    def apply(self, result: ApplyResult) -> str:
        """Per environment: where it was synced to, health, duration and the resource table."""
        if self.fmt != OutputFormat.TABLE:
            return self.dump(result.to_dict())
        lines: list[str] = []
        for env in result.environments:
            lines.append(click.style(f"Environment {env.name}", bold=True) + f"  (context {env.context or 'current'})")
            synced = env.outcome in (Outcome.SYNCED, Outcome.UNCHANGED) and env.synced_to
            rows = [
                ["Outcome:", env.outcome.value],
                *([["Synced to:", env.synced_to]] if synced else []),
                ["Health:", env.health.value if env.health is not None else "-"],
                ["Duration:", f"{env.duration:.1f}s"],
            ]
            lines.extend("  " + line for line in tabulate(rows, tablefmt="plain").splitlines())
            for check in env.gate:
                mark = (
                    click.style("pass", fg="green")
                    if check.result == GateResult.PASS
                    else click.style("FAIL", fg="red")
                )
                lines.append(f"  gate {check.name}: {mark} {check.reason}")
            res_rows = []
            for rel in env.releases:
                res_rows.append(
                    [
                        rel.app,
                        rel.release,
                        rel.namespace,
                        rel.outcome.value,
                        rel.revision or "-",
                        rel.health.value if rel.health is not None else "-",
                        rel.message,
                    ]
                )
                for c in rel.changes:
                    if c.action != Action.UNCHANGED and c.hook is None:
                        res_rows.append(
                            ["", f"  {_SYMBOL[c.action]} {c.kind}", c.namespace or "", c.action.value, "", "", c.name]
                        )
            if res_rows:
                table = tabulate(
                    res_rows,
                    headers=["APP", "RELEASE", "NAMESPACE", "OUTCOME", "REVISION", "HEALTH", "MESSAGE"],
                    tablefmt="plain",
                )
                lines.extend("  " + line for line in table.splitlines())
            lines.append("")
        for name in result.not_reached:
            lines.append(click.style(f"Environment {name}", bold=True) + "  not reached: left untouched")
        if result.not_reached:
            lines.append("")
        if result.error:
            lines.append(click.style("Error: ", fg="red", bold=True) + result.error)
        return "\n".join(lines).rstrip()

    # --- history and status ------------------------------------------------------------------------

    def history(self, entries: list[HistoryEntry]) -> str:
        """Promotions per release, newest last, like `helm history`."""
        if self.fmt != OutputFormat.TABLE:
            return self.dump({"schemaVersion": 1, "history": [e.to_dict() for e in entries]})
        rows = [
            [
                e.app,
                e.revision,
                e.updated[:19],
                e.status,
                e.chart,
                (e.git_revision or "-")[:12],
                (e.artifact or "-")[:8],
                e.by or "-",
                e.action or e.description,
            ]
            for e in entries
        ]
        return tabulate(
            rows,
            headers=["APP", "REVISION", "UPDATED", "STATUS", "CHART", "GIT", "ARTIFACT", "BY", "ACTION"],
            tablefmt="plain",
        )

    def status(self, revision: str, statuses: list[ReleaseStatus]) -> str:
        """Sync and health per release, then the drifted fields."""
        if self.fmt != OutputFormat.TABLE:
            return self.dump({"schemaVersion": 1, "revision": revision, "releases": [s.to_dict() for s in statuses]})
        rows = [
            [
                s.env,
                s.app,
                s.release,
                s.namespace,
                s.sync.value,
                s.health.value,
                (s.promoted_revision or "-")[:12],
                s.helm_revision or "-",
                s.health_message,
            ]
            for s in statuses
        ]
        out = [
            f"Git revision {revision}",
            "",
            tabulate(
                rows,
                headers=["ENV", "APP", "RELEASE", "NAMESPACE", "SYNC", "HEALTH", "PROMOTED", "HELM REV", "MESSAGE"],
                tablefmt="plain",
            ),
        ]
        if any(s.drift for s in statuses):
            out += ["", "Drift (live departs from what was promoted; `watch --self-heal` reverts it):"]
        for s in statuses:
            out.extend(_change_lines(s, s.drift, drift=True))
        if any(s.pending or s.pending_reason for s in statuses):
            out += ["", "Pending (Git departs from what was promoted; `apply` promotes it, through the gate):"]
        for s in statuses:
            if s.pending or s.pending_reason:
                out.append(f"  {s.env}/{s.app}: {s.pending_reason}")
            out.extend(_change_lines(s, s.pending, drift=False))
        noted = [s for s in statuses if s.runtime]
        if noted:
            out.append("")
            out.append("Runtime (observed only, not drift: Kubernetes heals these):")
            for s in noted:
                out.extend(f"  {s.env}/{s.app}: {note}" for note in s.runtime)
        for s in statuses:
            out.extend(click.style("Error: ", fg="red") + f"{s.env}/{s.app}: {e}" for e in s.errors)
        return "\n".join(out)

    def diffs(self, diffs: list[ResourceDiff]) -> str:
        """A unified diff, live → Git, per drifted resource; coloured unless --no-color/NO_COLOR."""
        import difflib

        if self.fmt != OutputFormat.TABLE:
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
        if self.fmt != OutputFormat.TABLE:
            return self.dump(
                {"schemaVersion": 1, "env": env, "allowed": allowed, "checks": [c.to_dict() for c in checks]}
            )
        rows = [
            [
                click.style("pass", fg="green") if c.result == GateResult.PASS else click.style("FAIL", fg="red"),
                c.name,
                c.app or "",
                c.reason,
            ]
            for c in checks
        ]
        verdict = f"{env} may be promoted now." if allowed else f"{env} is blocked."
        return tabulate(rows, headers=["RESULT", "CHECK", "APP", "REASON"], tablefmt="plain") + "\n\n" + verdict

    # --- pins --------------------------------------------------------------------------------------

    def unpinned(self, env: str, released: list[Any]) -> str:
        """What `promote unpin` released."""
        if self.fmt != OutputFormat.TABLE:
            doc = [
                {"env": p.env, "by": p.by, "at": p.at, "reason": p.reason, "pinnedAt": p.pinned_at} for p in released
            ]
            return self.dump({"schemaVersion": 1, "env": env, "released": doc})
        if not released:
            return f"{env} is not pinned"
        return "\n".join(f"released: {p.describe()}" for p in released)

    # --- watch -------------------------------------------------------------------------------------

    def watch_event(self, event: WatchEvent) -> str:
        """One watch event: a log line for people, or one machine document (see `stream`)."""
        if self.fmt != OutputFormat.TABLE:
            return self.dump(event.to_dict())
        head = f"{event.at:%Y-%m-%dT%H:%M:%SZ} {event.env}"
        message = _one_line(event.message)
        if event.event == WatchEventKind.HEAL_FAILED:
            return f"{head} self-heal failed: {message}"
        head += f" {event.app}"
        if event.event == WatchEventKind.ERROR:
            return f"{head} error {message}"
        if event.event == WatchEventKind.RUNTIME:
            return f"{head} runtime {message} (observed only: Kubernetes heals it)"
        if event.event == WatchEventKind.DRIFT:
            return f"{head} drift {_watch_drift_text(event)}"
        if event.event == WatchEventKind.PENDING:
            return f"{head} pending {message}"
        action = event.action.value if event.action is not None else ""
        changed = f"{action}: {', '.join(event.paths)}" if event.paths else action
        return f"{head} reverted {event.kind} {event.namespace or ''}/{event.name} ({changed})"

    # --- validation --------------------------------------------------------------------------------

    def violations(self, violations: list[Violation], checked: int) -> str:
        """Every violation, or a confirmation."""
        if self.fmt != OutputFormat.TABLE:
            return self.dump(
                {"schemaVersion": 1, "valid": not violations, "violations": [v.to_dict() for v in violations]}
            )
        if not violations:
            return f"All {checked} app environment(s) valid."
        rows = [
            [v.location, v.app, v.environment, v.path, v.expected, json.dumps(v.value), v.schema] for v in violations
        ]
        table = tabulate(rows, headers=["FILE", "APP", "ENV", "PATH", "EXPECTED", "VALUE", "SCHEMA"], tablefmt="plain")
        return f"{table}\n\n{len(violations)} violation(s)."

    # --- errors ------------------------------------------------------------------------------------

    def error(self, message: str, code: int) -> str:
        """An error, in the same format as the command's output."""
        if self.fmt != OutputFormat.TABLE:
            return self.dump({"error": message, "exitCode": code})
        return click.style("Error: ", fg="red", bold=True) + message
