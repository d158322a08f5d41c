"""The render cache's memo of facts (promote.rendercache.remembered): computed once per key."""

from __future__ import annotations

from pathlib import Path

import pytest

from promote import rendercache


def test_a_remembered_fact_is_computed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path))
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "3.17.3"

    assert rendercache.remembered("helm-version", ("/bin/helm", "1", "2"), compute) == "3.17.3"
    assert rendercache.remembered("helm-version", ("/bin/helm", "1", "2"), compute) == "3.17.3"
    assert len(calls) == 1
    # Another binary (or the same path rebuilt: another size or mtime) is asked again.
    assert rendercache.remembered("helm-version", ("/bin/helm", "1", "3"), compute) == "3.17.3"
    assert len(calls) == 2
