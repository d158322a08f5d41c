"""Plans for people, as terraform prints them: what changes, one resource and one field per line.

Per environment and release: each resource apply would create, update or delete, each changed field
below it (`~ spec.replicas: 1 → 3`), a value too long for the line moved under its path, never folded into
a table cell; unchanged resources as a count (`--show-unchanged` lists them); hooks only where apply runs
helm; `No changes.` when there is nothing to do. Secret values never reach here (the plan holds none).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from promote.plan import Action, ApplyMethod, FieldChange, Plan, ReleasePlan, ResourceChange
from promote.views.layout import Layout, text_width, truncate_middle, wrap

SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-", Action.UNCHANGED: "="}
COLOR = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.DELETE: "red", Action.UNCHANGED: None}
SENSITIVE = "(sensitive value changed)"


def plain(value: Any) -> str:
    """A value as people read it: text as is, everything else as compact JSON (`true`, `null`, `[1, 2]`)."""
    if isinstance(value, str) and "\n" not in value:
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def field_lines(head: str, parts: Sequence[str], layout: Layout, indent: int) -> list[str]:
    """`head` (`~ path:`) and its value parts on one line when they fit; else the values on the lines below,
    together or one part per line; a part still too long is cut in its middle on a terminal only."""
    pad, deeper = " " * indent, " " * (indent + 4)
    one = f"{pad}{head} {' '.join(parts)}"
    if layout.wide or text_width(one) <= layout.width:
        return [one]
    joined = deeper + " ".join(parts)
    if text_width(joined) <= layout.width:
        return [pad + head, joined]
    room = layout.width - len(deeper)
    return [pad + head, *(deeper + (truncate_middle(p, room) if layout.tty else p) for p in parts)]


def change_parts(f: FieldChange) -> tuple[str, list[str]]:
    """A field change as a symbol and its value parts: `~` before → after, `+` added, `-` removed."""
    if f.sensitive:
        return "~", [SENSITIVE]
    if f.before is None:
        return "+", [plain(f.after)]
    if f.after is None:
        return "-", [plain(f.before)]
    return "~", [plain(f.before), f"→ {plain(f.after)}"]


def where(c: ResourceChange) -> str:
    """`Kind namespace/name`, or `Kind name` when cluster-scoped."""
    return f"{c.kind} {c.namespace + '/' if c.namespace else ''}{c.name}"


class PlanView:
    """One plan as lines of text, for a layout."""

    def __init__(self, layout: Layout, *, show_unchanged: bool = False, on_conflict: str = "take") -> None:
        self.layout = layout
        self.show_unchanged = show_unchanged
        self.on_conflict = on_conflict

    def render(self, plan: Plan) -> str:
        """The whole plan: its revision, every environment, and the summary (or `No changes.`)."""
        lines = [f"Revision {plan.revision}", ""]
        for env in plan.environments:
            ctx = env.context or "current context"
            lines.append(click.style(f"Environment {env.name}", bold=True) + f"  (context {ctx})")
            if not env.releases:
                lines.append("  no apps deployed here")
            for rel in env.releases:
                lines.extend(self.release(rel))
            lines.append("")
        s = plan.summary
        if not plan.has_changes and not plan.all_errors:
            lines.append(f"No changes. Live matches Git: {s.unchanged} unchanged.")
        else:
            lines.append(
                f"Plan: {s.create} to create, {s.update} to update, {s.delete} to delete, {s.unchanged} unchanged."
            )
        for e in plan.all_errors:
            lines.extend(wrap(click.style("Error: ", fg="red", bold=True) + e, self.layout, hanging=2))
        return "\n".join(lines)

    def release(self, rel: ReleasePlan) -> list[str]:
        """One release: where it goes and what it runs now, then its changes."""
        state = f"revision {rel.current_revision}, {rel.current_status}" if rel.current_revision else "not installed"
        if rel.current_unverified:
            state += ", never seen healthy (an apply stopped while waiting for it)"
        if rel.apply_method is ApplyMethod.SERVER_SIDE:
            state += ", server-side apply"
        if (rel.current_status or "").startswith("pending-"):
            state += (
                ": a helm operation was stopped midway or still runs; apply recovers it once no apply holds the lock"
            )
        chart = f"{rel.chart}-{rel.chart_version}" if rel.chart_version else rel.chart
        if rel.current_chart_version and rel.chart_version and rel.current_chart_version != rel.chart_version:
            chart = f"{rel.chart} {rel.current_chart_version} → {rel.chart_version}"
        head = f"  {rel.app}: release {rel.release} in {rel.namespace}, chart {chart}"
        if rel.after:
            head += f", after {', '.join(rel.after)}"
        if self.layout.wide or text_width(f"{head} ({state})") <= self.layout.width:
            out = [f"{head} ({state})"]
        else:  # what runs now on a line of its own, rather than cut in the middle
            out = [*wrap(head.strip(), self.layout, indent=2), *wrap(state, self.layout, indent=4)]
        if rel.errors:
            for e in rel.errors:
                out.extend(wrap(click.style("error: ", fg="red") + e, self.layout, indent=4))
            return out
        resources = [c for c in rel.changes if c.hook is None]
        changed = [c for c in resources if c.action != Action.UNCHANGED]
        unchanged = [c for c in resources if c.action == Action.UNCHANGED]
        for c in changed:
            out.extend(self.resource(c))
        for c in unchanged:
            if c.note:  # Git differs, and apply leaves it so on purpose: say so, with what differs
                out.extend(self.resource(c))
                out.extend(wrap(c.note, self.layout, indent=8))
        if rel.needs_apply:
            for c in rel.changes:
                if c.hook is not None:
                    out.extend(wrap(self._head(c) + f" ({c.hook.value} hook)", self.layout, indent=4))
        if self.show_unchanged:
            for c in unchanged:
                out.extend(wrap(self._head(c), self.layout, indent=4))
        if not changed and not rel.needs_apply:
            out.append(f"    no changes ({len(unchanged)} unchanged)")
        elif unchanged and not self.show_unchanged:
            out.append(f"    {len(unchanged)} unchanged")
        return out

    def _head(self, c: ResourceChange) -> str:
        mark = f"{SYMBOL[c.action]} {c.action.value}"
        return click.style(mark, fg=COLOR[c.action]) + f" {where(c)}"

    def resource(self, c: ResourceChange) -> list[str]:
        """A changed resource and each of its changed fields on a line of its own."""
        out = wrap(self._head(c), self.layout, indent=4)
        for f in c.fields:
            symbol, parts = change_parts(f)
            out.extend(field_lines(f"{symbol} {f.path}:", parts, self.layout, indent=8))
        for x in c.conflicts:
            then = "apply takes it over" if self.on_conflict == "take" else "apply stops (--on-conflict stop)"
            text = click.style("! conflict: ", fg="red") + f"{x.field} is owned by {x.manager}; {then}"
            out.extend(wrap(text, self.layout, indent=8))
        return out
