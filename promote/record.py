"""The promotion record: what was promoted, by whom and when, kept where helm keeps the release.

helm stores a free-text description with every revision; we put the record there as JSON behind a
`promote ` prefix, so `helm history` shows it, it survives helm's own bookkeeping (which rewrites the
storage Secret's labels on every upgrade), and no extra object has to be kept in sync with the release.
"""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum

PREFIX = "promote "
# On the current helm storage Secret: when the sync finished healthy. helm ignores it, and drops it when it
# supersedes the revision (it rewrites the Secret), so only the current revision can carry it.
SYNCED_AT_ANNOTATION = "promote.dev/synced-at"
# Beside it, the UIDs of the workloads' pods at that moment: a pod not among them was recreated since.
SYNCED_PODS_ANNOTATION = "promote.dev/synced-pods"


class RecordAction(StrEnum):
    """Why a revision was made."""

    SYNC = "sync"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Promotion:
    """One promotion, as stored in the helm revision's description."""

    env: str
    revision: str
    artifact: str
    values: str
    by: str
    at: str
    action: RecordAction = RecordAction.SYNC
    rolled_back_to: int | None = None

    def description(self) -> str:
        """The text handed to helm --description."""
        d = asdict(self)
        d["action"] = self.action.value
        if self.rolled_back_to is None:
            d.pop("rolled_back_to")
        return PREFIX + json.dumps(d, separators=(",", ":"))

    @staticmethod
    def parse(description: str) -> Promotion | None:
        """The record in a helm description, or None for revisions promote did not make."""
        if not description.startswith(PREFIX):
            return None
        try:
            d = json.loads(description[len(PREFIX) :])
            return Promotion(
                env=d["env"],
                revision=d["revision"],
                artifact=d["artifact"],
                values=d["values"],
                by=d["by"],
                at=d["at"],
                action=RecordAction(d.get("action", "sync")),
                rolled_back_to=d.get("rolled_back_to"),
            )
        except (ValueError, KeyError):
            return None

    @property
    def at_time(self) -> datetime:
        """`at` as a datetime."""
        return datetime.fromisoformat(self.at)


def who() -> str:
    """user@host, as pipelines and people both understand it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def now() -> datetime:
    """The current time, timezone-aware (a seam for tests of soak windows)."""
    return datetime.now(UTC)
