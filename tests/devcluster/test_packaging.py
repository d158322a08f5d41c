"""The wheel carries the product only: the dev-cluster harness is for this repository, not for users."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.paths import REPO_ROOT

# Built from a copy: setuptools reuses build/ in the source tree, so stale files there would reach the wheel.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".promote", "out"
)


def test_the_wheel_ships_promote_without_the_dev_cluster(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "wheels"
    shutil.copytree(REPO_ROOT, src, symlinks=True, ignore=NOT_SOURCES)
    assert (src / "devcluster" / "kube.py").is_file(), "the copy must hold the harness for this test to mean anything"

    # Offline: no index, no dependencies, and the installed setuptools instead of an isolated download.
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), "."],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr

    (wheel,) = out.glob("promote-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "promote/cli.py" in names
    assert "promote/environment.schema.json" in names
    assert [n for n in names if n.startswith("devcluster/") or "devcluster" in n] == []
