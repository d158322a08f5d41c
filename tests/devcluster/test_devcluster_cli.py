"""The dev cluster's command line (`scripts/dev-cluster`): `--state-dir` before or after the command, and
`env` output that, eval'd, points kubectl at the cluster and puts this checkout's `promote` on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster import ClusterHandle
from devcluster.__main__ import _parser
from tests.support.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "dev-cluster"


def _run(*args: str, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess[str]:
    """`scripts/dev-cluster ARGS` with this interpreter and a PATH that has no promote on it."""
    env = {**os.environ, "PROMOTE_PYTHON": sys.executable, "PATH": path}
    env.pop("DEV_CLUSTER_DIR", None)
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.mark.parametrize("command", ["up", "down", "status", "env"])
def test_state_dir_before_or_after_the_command(command: str, tmp_path: Path) -> None:
    before = _parser().parse_args(["--state-dir", str(tmp_path), command])
    after = _parser().parse_args([command, "--state-dir", str(tmp_path)])
    neither = _parser().parse_args([command])

    assert before.state_dir == after.state_dir == tmp_path
    assert before.command == after.command == command
    assert neither.state_dir is None


def test_env_puts_kubeconfig_and_promote_on_path(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    shell = f'eval "$({SCRIPT} env --state-dir {tmp_path})" && echo "$KUBECONFIG" && command -v promote'

    result = subprocess.run(
        ["bash", "-c", shell],
        capture_output=True,
        text=True,
        env={**os.environ, "PROMOTE_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    kubeconfig, promote = result.stdout.splitlines()
    assert kubeconfig == str(tmp_path / "kubeconfig")
    assert Path(promote).parent in (REPO_ROOT / ".venv" / "bin", Path(sys.executable).parent)
    version = subprocess.run([promote, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert version.returncode == 0 and "version" in version.stdout


def test_env_adds_nothing_to_a_path_that_has_promote_already(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    first = _run("env", "--state-dir", str(tmp_path))
    folder = first.stdout.splitlines()[1].split("=", 1)[1].split(":", 1)[0]

    again = _run("env", "--state-dir", str(tmp_path), path=f"{folder}:/usr/bin:/bin")

    assert first.returncode == again.returncode == 0
    assert again.stdout.splitlines() == [f"export KUBECONFIG={tmp_path / 'kubeconfig'}"]


def test_env_without_a_cluster_says_so(tmp_path: Path) -> None:
    result = _run("env", "--state-dir", str(tmp_path))

    assert result.returncode == 1
    assert result.stdout == ""
    assert f"no kubeconfig in {tmp_path}; run 'dev-cluster up' first" in result.stderr


def test_status_with_state_dir_after_the_command(dev_cluster: ClusterHandle) -> None:
    before = _run("--state-dir", str(dev_cluster.state_dir), "status")
    after = _run("status", "--state-dir", str(dev_cluster.state_dir))

    assert before.returncode == after.returncode == 0, after.stderr
    assert before.stdout == after.stdout
    assert after.stdout.count("running (pid") == 5
