"""The engine: the only layer that composes model, values, render, cluster, diff, health, sync and gate.

The CLI calls one function of it per command and hands the result to a view. Names are loaded on
first use (PEP 562), so that `promote plan` does not pay for importing apply's modules (sync, gate,
lock, health, results): on a small machine that import alone is tens of milliseconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promote.engine.applying import apply
    from promote.engine.core import Reconciled, reconcile
    from promote.engine.gating import gate_checks, gate_report
    from promote.engine.planning import plan
    from promote.engine.reporting import diffs, release_history, status, watch, watch_checks
    from promote.engine.rollingback import rollback, unpin
    from promote.engine.runtime import Clock, Runtime
    from promote.engine.workspace import ApplyOptions, Options, Target, Workspace, validate

_HOME = {
    "ApplyOptions": "workspace",
    "apply": "applying",
    "gate_checks": "gating",
    "gate_report": "gating",
    "rollback": "rollingback",
    "unpin": "rollingback",
    "Reconciled": "core",
    "reconcile": "core",
    "Clock": "runtime",
    "Runtime": "runtime",
    "plan": "planning",
    "diffs": "reporting",
    "release_history": "reporting",
    "status": "reporting",
    "watch": "reporting",
    "watch_checks": "reporting",
    "Options": "workspace",
    "Target": "workspace",
    "Workspace": "workspace",
    "validate": "workspace",
}

__all__ = [
    "ApplyOptions",
    "Clock",
    "Options",
    "Reconciled",
    "Runtime",
    "Target",
    "Workspace",
    "apply",
    "diffs",
    "gate_checks",
    "gate_report",
    "plan",
    "reconcile",
    "release_history",
    "rollback",
    "status",
    "unpin",
    "validate",
    "watch",
    "watch_checks",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines `name`, once."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
