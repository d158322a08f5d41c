"""The promotion gate: may an environment receive an app's release artifact now?

An environment after the first may only run an artifact that its upstream already runs, healthy, and
(optionally) has run for a soak period. Gated environments also need a clean Git tree. Every check
returns a verdict with the reason a person needs; nothing here writes anything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from promote.health import Health, HealthStatus
from promote.release import ReleaseHistory, promotion_of
from promote.results import GateCheck, GateResult


def _span(seconds: float) -> str:
    """A duration as a countdown reads: 42s, 4m12s, 1h02m."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _fmt(seconds: float) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def artifact_since(hist: ReleaseHistory, artifact: str) -> datetime | None:
    """When the upstream started running this artifact without interruption (None if it doesn't)."""
    since: datetime | None = None
    for rec in reversed(hist.records):
        if rec.status not in ("deployed", "superseded"):
            continue
        p = promotion_of(hist, rec)
        if p is None or p.artifact != artifact:
            break
        since = p.at_time
    return since


def upstream_checks(
    *,
    app: str,
    env: str,
    upstream: str,
    artifact: str,
    soak_seconds: float,
    hist: ReleaseHistory,
    health: Health,
    now: datetime,
) -> list[GateCheck]:
    """Upstream runs the artifact, is healthy, and has soaked long enough."""
    short = artifact[:8]
    deployed = hist.deployed
    current = promotion_of(hist, deployed)
    if deployed is None or hist.latest is None or hist.latest.status != "deployed":
        state = hist.latest.status if hist.latest else "not installed"
        return [
            GateCheck(
                "upstream-artifact", GateResult.FAIL, f"{upstream} has no deployed release of {app} ({state})", app
            )
        ]
    if current is None or current.artifact != artifact:
        runs = f"artifact {current.artifact[:8]}" if current else "a release promote did not make"
        return [
            GateCheck(
                "upstream-artifact",
                GateResult.FAIL,
                f"{upstream} runs {runs}, not {short}: apply {upstream} first",
                app,
            )
        ]
    out = [GateCheck("upstream-artifact", GateResult.PASS, f"{upstream} runs artifact {short}", app)]
    if health.status != HealthStatus.HEALTHY:
        out.append(
            GateCheck("upstream-health", GateResult.FAIL, f"{upstream} is {health.status.value}: {health.message}", app)
        )
    else:
        out.append(GateCheck("upstream-health", GateResult.PASS, f"{upstream} is Healthy", app))
    if soak_seconds > 0:
        since = artifact_since(hist, artifact) or now
        elapsed = (now - since).total_seconds()
        verdict = GateResult.PASS if elapsed >= soak_seconds else GateResult.FAIL
        ran = f"{upstream} has run artifact {short} for {_span(elapsed)}; soak {_fmt(soak_seconds)}"
        if verdict == GateResult.PASS:
            reason = f"{ran}: done"
        else:
            opens = (since + timedelta(seconds=soak_seconds)).astimezone(UTC)
            reason = f"{ran}: {_span(soak_seconds - elapsed)} left, gate opens {opens:%H:%M:%S} UTC"
        out.append(GateCheck("soak", verdict, reason, app))
    return out


def clean_tree_check(dirty: list[str], allow_dirty: bool) -> GateCheck:
    """Gated environments take only committed definitions, unless the user says otherwise."""
    if not dirty:
        return GateCheck("clean-tree", GateResult.PASS, "the files involved are committed")
    listed = ", ".join(dirty[:5]) + (" …" if len(dirty) > 5 else "")
    if allow_dirty:
        return GateCheck("clean-tree", GateResult.PASS, f"uncommitted changes allowed (--allow-dirty): {listed}")
    return GateCheck(
        "clean-tree", GateResult.FAIL, f"uncommitted changes in {listed}: commit them, or pass --allow-dirty"
    )
