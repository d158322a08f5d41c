"""The engine core: every target against the live cluster, read-only, in one call.

plan, status, diff, apply (and the re-plan under a lock), rollback and watch are thin consumers of
`reconcile`: what they differ in is what they do with its answer, not how it is computed. How the work
is scheduled (helm's slots, early renders, the render cache, pacing the dry runs) is private to
`promote.engine.scheduler`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from promote.engine.compare import Detail
from promote.engine.runtime import Runtime
from promote.engine.workspace import Target
from promote.plan import ReleasePlan
from promote.release import ReleaseHistory
from promote.values import Violation


@dataclass(frozen=True, kw_only=True)
class Reconciled:
    """One target against the live cluster.

    `rendered` is what the chart renders (from the render cache: Secret values fingerprinted), so apply
    knows a release's workloads without rendering again; None when the target has errors. `history` is
    helm's record of the release as read for this comparison. `objects` holds every object's pair of
    live and predicted states, only when asked for (`promote diff`).
    """

    target: Target
    plan: ReleasePlan
    history: ReleaseHistory | None = None
    rendered: list[dict[str, Any]] | None = None
    objects: tuple[Detail, ...] = ()


def reconcile(
    targets: Sequence[Target],
    runtime: Runtime,
    *,
    violations: Sequence[Violation] = (),
    objects: bool = False,
    while_rendering: Callable[[], object] | None = None,
) -> list[Reconciled]:
    """Render every target and compare it with the live cluster, in parallel; one answer per target.

    A target with values violations is not rendered: its plan carries them as errors. `objects=True`
    dry-runs every object (nothing is proven unchanged from the render cache) and returns the pairs.
    `while_rendering` is called once the first renders run, before connecting: work that would otherwise
    delay the first helm (the caller asking Git its revision) goes there.
    """
    from promote.engine.scheduler import Scheduler

    return asyncio.run(Scheduler(list(targets), runtime, list(violations), objects).run(while_rendering))
