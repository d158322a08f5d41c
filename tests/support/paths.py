"""Where things are: the checkout, its published schemas, and the tests' fixture files."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = REPO_ROOT / "schemas"
TESTDATA = REPO_ROOT / "tests" / "testdata"
