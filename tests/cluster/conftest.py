"""Fixtures shared by the command tests on the real cluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import Deployed, deploy


@pytest.fixture
def deployed(tmp_path: Path, make_namespace: Callable[[], str]) -> Deployed:
    """The python-app definition applied to default (1 replica) and prod (3 replicas)."""
    return deploy(tmp_path, make_namespace)
