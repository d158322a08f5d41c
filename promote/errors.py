"""One exception tree for promote, and the single place where errors become exit codes.

Every raise says what was being attempted and chains the library's error as its cause, so the CLI can
print one clear paragraph and `--debug` can still show where it came from.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    """The pipeline contract: identical for every command."""

    OK = 0
    ERROR = 1
    CHANGES = 2
    BLOCKED = 3


class PromoteError(Exception):
    """Base of every error promote raises on purpose."""

    exit_code: ExitCode = ExitCode.ERROR


class ConfigError(PromoteError):
    """An environment definition, values file or command-line argument is wrong."""


class ValidationError(PromoteError):
    """Merged values break a schema; carries every violation, not just the first."""

    def __init__(self, message: str, violations: list[object] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []


class SourceError(PromoteError):
    """Git could not give us the files of the requested revision."""


class UnknownRevision(SourceError):
    """No commit, branch or tag has that name (or the commit is gone from this clone)."""


class HelmError(PromoteError):
    """helm failed to render, install, upgrade or roll back."""


class HelmTimeout(HelmError):
    """helm, or what it waited for, did not finish in time."""


class HelmConflict(HelmError):
    """Server-side apply met fields another field manager owns (Helm 4 without --force-conflicts)."""


class ReleaseBusy(HelmError):
    """Another helm operation on the release is in progress (or died and left it pending)."""


class ReleaseNotFound(HelmError):
    """The release, or the revision asked for, does not exist."""


class ChartError(HelmError):
    """The chart does not render: a template error, a bad Chart.yaml, or a kubeVersion it refuses."""


class ClusterError(PromoteError):
    """The Kubernetes API was unreachable, refused us, or rejected an object."""


class HealthError(PromoteError):
    """A release did not become healthy within the timeout."""


class LockError(PromoteError):
    """Another apply holds the environment's lock."""


class Interrupted(PromoteError):
    """Ctrl-C or SIGTERM: the message says in what state promote left what it was doing."""


class GateBlocked(PromoteError):
    """A promotion gate or policy forbids the change; pipelines stop without calling it a failure."""

    exit_code = ExitCode.BLOCKED


class PolicyViolation(GateBlocked, ValidationError):
    """The target environment's policy schema rejects its values."""

    def __init__(self, message: str, violations: list[object] | None = None) -> None:
        ValidationError.__init__(self, message, violations)


def exit_code_for(error: BaseException) -> ExitCode:
    """Map any exception to the exit code the pipeline contract promises."""
    if isinstance(error, PromoteError):
        return error.exit_code
    return ExitCode.ERROR


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when one of `choices` is close to a misspelt `word`, else nothing.

    The cutoff (difflib's ratio, 0.6 by default) is 0.7: `replicas` would otherwise suggest `release`.
    """
    close = difflib.get_close_matches(word, [c for c in choices if c != word], n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""
