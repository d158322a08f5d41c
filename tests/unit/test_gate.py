"""Unit tests of promote.gate: pure verdicts from a release history, a health and a fixed `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from promote.gate import artifact_since, clean_tree_check, upstream_checks
from promote.health import Health, HealthStatus
from promote.record import Promotion, RecordAction
from promote.release import ReleaseHistory, ReleaseRecord
from promote.results import GateCheck, GateResult
from tests.support.helm import release_record

A = "a" * 64
B = "b" * 64
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HEALTHY = Health(HealthStatus.HEALTHY, "5 resources healthy")


def _promotion(artifact: str, at: datetime, action: RecordAction = RecordAction.SYNC) -> str:
    return Promotion(
        env="default",
        revision="0123456789abcdef0123456789abcdef01234567",
        artifact=artifact,
        values="c" * 64,
        by="ci@runner",
        at=at.isoformat(),
        action=action,
    ).description()


def _rec(revision: int, status: str, description: str) -> ReleaseRecord:
    return release_record(revision, status, description)


def _history(*records: ReleaseRecord) -> ReleaseHistory:
    return ReleaseHistory(tuple(records))


def _checks(
    hist: ReleaseHistory, *, artifact: str = A, soak: float = 0, now: datetime = T0, health: Health = HEALTHY
) -> dict[str, GateCheck]:
    checks = upstream_checks(
        app="python-app",
        env="prod",
        upstream="default",
        artifact=artifact,
        soak_seconds=soak,
        hist=hist,
        health=health,
        now=now,
    )
    return {c.name: c for c in checks}


# --- upstream artifact ---------------------------------------------------------------------------


def test_upstream_not_installed_fails() -> None:
    (check,) = _checks(_history()).values()
    assert (check.name, check.result, check.reason) == (
        "upstream-artifact",
        GateResult.FAIL,
        "default has no deployed release of python-app (not installed)",
    )


def test_upstream_mid_upgrade_fails_with_its_state() -> None:
    hist = _history(_rec(1, "deployed", _promotion(A, T0)), _rec(2, "pending-upgrade", "Preparing upgrade"))
    reason = _checks(hist)["upstream-artifact"].reason
    assert reason == "default has no deployed release of python-app (pending-upgrade)"


def test_artifact_mismatch_fails() -> None:
    hist = _history(_rec(1, "deployed", _promotion(B, T0)))
    check = _checks(hist, artifact=A)["upstream-artifact"]
    assert (check.result, check.reason) == (
        GateResult.FAIL,
        f"default runs artifact {B[:8]}, not {A[:8]}: apply default first",
    )


def test_release_promote_did_not_make_fails() -> None:
    hist = _history(_rec(1, "deployed", "Install complete"))
    check = _checks(hist)["upstream-artifact"]
    assert (check.result, check.reason) == (
        GateResult.FAIL,
        f"default runs a release promote did not make, not {A[:8]}: apply default first",
    )


def test_same_artifact_healthy_passes_without_soak() -> None:
    hist = _history(_rec(1, "deployed", _promotion(A, T0)))
    assert {n: c.result for n, c in _checks(hist).items()} == {
        "upstream-artifact": GateResult.PASS,
        "upstream-health": GateResult.PASS,
    }


def test_unhealthy_upstream_fails() -> None:
    hist = _history(_rec(1, "deployed", _promotion(A, T0)))
    check = _checks(hist, health=Health(HealthStatus.DEGRADED, "Deployment python-app: 0 of 1 available"))[
        "upstream-health"
    ]
    assert (check.result, check.reason) == (
        GateResult.FAIL,
        "default is Degraded: Deployment python-app: 0 of 1 available",
    )


# --- soak ----------------------------------------------------------------------------------------


def test_soak_not_elapsed_fails() -> None:
    hist = _history(_rec(1, "deployed", _promotion(A, T0)))
    check = _checks(hist, soak=600, now=T0 + timedelta(minutes=5))["soak"]
    assert (check.result, check.reason) == (
        GateResult.FAIL,
        f"default has run artifact {A[:8]} for 5m00s; soak 10m: 5m00s left, gate opens 12:10:00 UTC",
    )


def test_soak_elapsed_passes() -> None:
    hist = _history(_rec(1, "deployed", _promotion(A, T0)))
    check = _checks(hist, soak=600, now=T0 + timedelta(minutes=10, seconds=1))["soak"]
    assert (check.result, check.reason) == (
        GateResult.PASS,
        f"default has run artifact {A[:8]} for 10m01s; soak 10m: done",
    )


def test_soak_exactly_elapsed_passes() -> None:
    hist = _history(_rec(1, "deployed", _promotion(A, T0)))
    assert _checks(hist, soak=600, now=T0 + timedelta(minutes=10))["soak"].result == GateResult.PASS


def test_soak_counts_from_the_first_uninterrupted_run_of_the_artifact() -> None:
    # The same artifact re-synced later (say, an env-only values change) does not restart the clock.
    hist = _history(
        _rec(1, "superseded", _promotion(B, T0 - timedelta(hours=5))),
        _rec(2, "superseded", _promotion(A, T0)),
        _rec(3, "deployed", _promotion(A, T0 + timedelta(minutes=8))),
    )
    assert artifact_since(hist, A) == T0


def test_soak_clock_restarts_when_the_artifact_changed_in_between() -> None:
    hist = _history(
        _rec(1, "superseded", _promotion(A, T0 - timedelta(hours=5))),
        _rec(2, "superseded", _promotion(B, T0 - timedelta(hours=1))),
        _rec(3, "deployed", _promotion(A, T0)),
    )
    assert artifact_since(hist, A) == T0


def test_failed_revisions_do_not_interrupt_the_soak() -> None:
    hist = _history(
        _rec(1, "superseded", _promotion(A, T0)),
        _rec(2, "failed", "Upgrade failed: pre-upgrade hooks failed"),
        _rec(3, "deployed", _promotion(A, T0 + timedelta(minutes=30), RecordAction.ROLLBACK)),
    )
    assert artifact_since(hist, A) == T0


def test_soak_of_hours_is_reported_in_hours() -> None:
    hist = _history(_rec(1, "deployed", _promotion(A, T0)))
    reason = _checks(hist, soak=7200, now=T0 + timedelta(hours=1, seconds=5))["soak"].reason
    assert reason.startswith(f"default has run artifact {A[:8]} for 1h00m; soak 2h: 59m55s left, gate opens "), reason


# --- clean tree ----------------------------------------------------------------------------------


def test_clean_tree_passes() -> None:
    check = clean_tree_check([], allow_dirty=False)
    assert (check.name, check.result) == ("clean-tree", GateResult.PASS)


def test_dirty_tree_fails_naming_the_files() -> None:
    check = clean_tree_check(["environments/python-app.yaml"], allow_dirty=False)
    assert (check.result, check.reason) == (
        GateResult.FAIL,
        "uncommitted changes in environments/python-app.yaml: commit them, or pass --allow-dirty",
    )


def test_dirty_tree_allowed_passes() -> None:
    check = clean_tree_check(["environments/python-app.yaml"], allow_dirty=True)
    assert (check.result, check.reason) == (
        GateResult.PASS,
        "uncommitted changes allowed (--allow-dirty): environments/python-app.yaml",
    )


def test_many_dirty_files_are_shortened() -> None:
    dirty = [f"charts/python-app/templates/t{i}.yaml" for i in range(7)]
    check = clean_tree_check(dirty, allow_dirty=False)
    assert check.reason == f"uncommitted changes in {', '.join(dirty[:5])} …: commit them, or pass --allow-dirty"
