"""Publishing charts to the test chart servers (devcluster.registries) the way users do: `helm package`,
then `helm push` to the OCI registry or `helm repo index` into the repository folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from devcluster.registries import ChartRepository, Credentials, OciRegistry

HELM_TIMEOUT = 120


def helm_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment whose helm keeps its registry logins and repositories under `home`, not the user's."""
    return {
        **os.environ,
        "HELM_REGISTRY_CONFIG": str(home / "registry" / "config.json"),
        "HELM_REPOSITORY_CONFIG": str(home / "repositories.yaml"),
        "HELM_REPOSITORY_CACHE": str(home / "repository-cache"),
        **extra,
    }


def run_helm(
    *args: str, env: Mapping[str, str], input: str | None = None, helm: str = "helm"
) -> subprocess.CompletedProcess[str]:
    """helm with a timeout, its output captured (not checked)."""
    return subprocess.run(
        [helm, *args], env=dict(env), input=input, capture_output=True, text=True, timeout=HELM_TIMEOUT, check=False
    )


def package(chart_dir: Path, out: Path, version: str | None = None) -> Path:
    """`helm package` a chart folder (optionally at another version) into out; the .tgz."""
    out.mkdir(parents=True, exist_ok=True)
    args = ["package", str(chart_dir), "-d", str(out)] + (["--version", version] if version else [])
    done = run_helm(*args, env=os.environ)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().split(": ", 1)[1])  # "Successfully packaged chart and saved it to: PATH"


def login(registry: OciRegistry, env: Mapping[str, str], credentials: Credentials | None = None) -> None:
    """`helm registry login` with the registry's user (or another one)."""
    user = credentials or registry.credentials
    assert user is not None
    done = run_helm(
        "registry", "login", registry.host, "-u", user.username, "--password-stdin", env=env, input=user.password
    )
    assert done.returncode == 0, done.stderr


def push(registry: OciRegistry, tgz: Path, env: Mapping[str, str], repository: str = "charts") -> str:
    """`helm push` a packaged chart; the manifest digest the registry gave it."""
    done = run_helm("push", str(tgz), f"{registry.url}/{repository}", env=env)
    assert done.returncode == 0, done.stderr
    (digest,) = [line.split()[-1] for line in (done.stdout + done.stderr).splitlines() if line.startswith("Digest:")]
    return digest


def publish(repo: ChartRepository, tgz: Path) -> None:
    """Put a packaged chart into the repository and index it, merging with what is there."""
    shutil.copy(tgz, repo.charts_dir / tgz.name)
    index = repo.charts_dir / "index.yaml"
    args = ["repo", "index", str(repo.charts_dir), "--url", repo.url]
    done = run_helm(*args, *(["--merge", str(index)] if index.exists() else []), env=os.environ)
    assert done.returncode == 0, done.stderr
