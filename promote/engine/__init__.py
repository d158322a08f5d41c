"""The engine: the only layer that composes model, values, render, cluster, diff, health, sync and gate.

The CLI calls one function of it per command and hands the result to a view.
"""

from promote.engine.applying import ApplyOptions, apply, gate_checks, gate_report, rollback
from promote.engine.planning import compare, plan
from promote.engine.reporting import diffs, release_history, status, watch
from promote.engine.workspace import Options, Target, Workspace, validate

__all__ = [
    "ApplyOptions",
    "Options",
    "Target",
    "Workspace",
    "apply",
    "compare",
    "diffs",
    "gate_checks",
    "gate_report",
    "plan",
    "release_history",
    "rollback",
    "status",
    "validate",
    "watch",
]
