"""Unit tests of which helm revision a failed sync goes back to, and which revision counts as unverified.

As helm's --atomic: the newest deployed or superseded revision. Unlike it: a revision promote made but
never saw healthy (no synced-at stamp, its apply died waiting) is no place to go back to.
"""

from __future__ import annotations

from promote.record import SYNCED_AT_ANNOTATION, Promotion
from promote.release import ReleaseHistory, ReleaseRecord, last_good, unverified
from tests.support.helm import release_record

STAMP = {SYNCED_AT_ANNOTATION: "2026-11-25T10:00:00+00:00"}
# helm rewrites a revision's storage Secret when it supersedes it: superseded revisions never carry a stamp.


def _promoted() -> str:
    return Promotion(
        env="default",
        revision="0123456789abcdef0123456789abcdef01234567",
        artifact="a" * 64,
        values="c" * 64,
        by="ci@runner",
        at="2026-11-25T10:00:00+00:00",
    ).description()


def _rec(revision: int, status: str, description: str = "Upgrade complete", stamped: bool = False) -> ReleaseRecord:
    return release_record(revision, status, description, STAMP if stamped else None)


def _revisions(hist: ReleaseHistory) -> tuple[int | None, int | None]:
    good, odd = last_good(hist), unverified(hist)
    return (good.revision if good else None, odd.revision if odd else None)


def test_deployed_and_stamped_is_good() -> None:
    hist = ReleaseHistory((_rec(1, "superseded", _promoted()), _rec(2, "deployed", _promoted(), True)))
    assert _revisions(hist) == (2, None)


def test_unverified_current_revision_is_skipped() -> None:
    hist = ReleaseHistory((_rec(1, "superseded", _promoted()), _rec(2, "deployed", _promoted())))
    assert _revisions(hist) == (1, 2)


def test_revisions_helm_made_count_as_good() -> None:
    # helm's own "Rollback to 1", or a plain `helm upgrade`, carries no promote record: helm saw it through.
    hist = ReleaseHistory((_rec(1, "superseded", _promoted()), _rec(2, "deployed", "Rollback to 1")))
    assert _revisions(hist) == (2, None)


def test_nothing_deployed_after_a_failed_rollback_still_has_a_good_revision() -> None:
    # helm marks the current revision superseded and the rollback failed when its update fails.
    hist = ReleaseHistory((_rec(1, "superseded", _promoted()), _rec(2, "superseded", _promoted()), _rec(3, "failed")))
    assert _revisions(hist) == (2, None)


def test_unverified_revision_under_a_failed_rollback_is_found() -> None:
    hist = ReleaseHistory((_rec(1, "superseded", _promoted()), _rec(2, "deployed", _promoted()), _rec(3, "failed")))
    assert _revisions(hist) == (1, 2)


def test_below_a_revision() -> None:
    hist = ReleaseHistory((_rec(1, "superseded", _promoted()), _rec(2, "deployed", _promoted(), True)))
    good = last_good(hist, below=2)
    assert good is not None and good.revision == 1


def test_a_first_install_nobody_saw_healthy_has_nothing_to_go_back_to() -> None:
    hist = ReleaseHistory((_rec(1, "deployed", _promoted()),))
    assert _revisions(hist) == (None, 1)
    assert _revisions(ReleaseHistory((_rec(1, "failed"), _rec(2, "pending-install")))) == (None, None)


def test_a_crashed_apply_counts_only_for_the_release_it_was_syncing() -> None:
    from promote.lock import EnvLock

    lock = EnvLock(None, "ns", "default", "me@host/2")  # type: ignore[arg-type]  # no request is made here
    assert lock.crashed_on("app-a") is None
    lock.took_over, lock.took_over_subject = "ci@runner/1", "app-a"
    assert lock.crashed_on("app-a") == "ci@runner/1"
    assert lock.crashed_on("app-b") is None
    lock.took_over_subject = None  # a Lease from a promote that did not say: it may have been any release
    assert lock.crashed_on("app-b") == "ci@runner/1"


def test_a_sha_prefix_of_digits_only_is_still_a_sha() -> None:
    from promote.engine.rollingback import pick as _pick

    sha = "12345678" + "9abcdef0" * 4
    promoted = Promotion(
        env="default", revision=sha, artifact="a" * 64, values="c" * 64, by="ci@runner", at="2026-11-25T10:00:00+00:00"
    ).description()
    hist = ReleaseHistory((_rec(1, "superseded", promoted), _rec(2, "superseded", _promoted()), _rec(3, "deployed")))
    assert _pick(hist, "12345678")[0] == 1  # no revision 12345678: the Git sha
    assert _pick(hist, "2")[0] == 2  # a revision number wins


def test_a_failed_sync_returns_to_an_unverified_revision_rather_than_uninstalling() -> None:
    from promote.release import restore_point

    only = ReleaseHistory((_rec(1, "deployed", _promoted()),))
    assert last_good(only) is None
    point = restore_point(only)
    assert point is not None and point.revision == 1
    assert restore_point(ReleaseHistory((_rec(1, "failed"),))) is None
