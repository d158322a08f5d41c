"""helm's stderr, classified into promote's HelmError subclasses: the one place that reads its text.

Callers branch on the class (a conflict, a busy release, a chart that does not render), never on a
message, so a helm that rewords an error changes this table and nothing else.
"""

from __future__ import annotations

import re

from promote.errors import ChartError, HelmConflict, HelmError, HelmTimeout, ReleaseBusy, ReleaseNotFound

# First match wins: a failed upgrade's rollback that timed out is still, first, a conflict if it says so.
_KINDS: tuple[tuple[re.Pattern[str], type[HelmError]], ...] = (
    (re.compile(r"conflict occurred while applying|Apply failed with \d+ conflicts?"), HelmConflict),
    (re.compile(r"another operation \(install/upgrade/rollback\) is in progress"), ReleaseBusy),
    (re.compile(r"timed out waiting for the condition|context deadline exceeded"), HelmTimeout),
    (re.compile(r"release: not found|has no deployed releases|release has no \d+ version"), ReleaseNotFound),
    (
        re.compile(r"parse error|template: |execution error at|chart requires kubeVersion|Chart\.yaml"),
        ChartError,
    ),
)


def one_paragraph(stderr: str) -> str:
    """helm's stderr as one paragraph, without its advice to use helm's own --debug flag."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return " ".join(line for line in lines if "--debug flag" not in line)


def classify(what: str, stderr: str) -> HelmError:
    """The error for `helm WHAT` that failed with this stderr."""
    text = one_paragraph(stderr)
    kind = next((cls for pattern, cls in _KINDS if pattern.search(text)), HelmError)
    return kind(f"helm {what} failed: {text}")
