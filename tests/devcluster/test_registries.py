"""The test chart servers (devcluster.registries) are the real thing: helm 3 and Helm 4 push to and pull
from them as from any registry or repository, and their credentials are enforced."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.cluster import helm4_binary
from devcluster.registries import ChartRepository, Credentials, OciRegistry, ca_bundle
from tests.support.registry import helm_env, login, package, publish, push, run_helm


@pytest.fixture
def chart_tgz(tmp_path: Path) -> Path:
    """`helm create`'s chart, packaged."""
    done = run_helm("create", str(tmp_path / "demo"), env=helm_env(tmp_path))
    assert done.returncode == 0, done.stderr
    return package(tmp_path / "demo", tmp_path / "pkg", version="1.2.3")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[OciRegistry]:
    with OciRegistry(tmp_path / "oci", Credentials.generate()) as reg:
        yield reg


def _listening_on_loopback_only(port: int) -> bool:
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, timeout=30, check=True).stdout
    addresses = {line.split()[3] for line in out.splitlines() if line.split()[3].endswith(f":{port}")}
    return addresses == {f"127.0.0.1:{port}"}


def test_the_oci_registry_enforces_its_user_and_serves_both_helms(
    tmp_path: Path, registry: OciRegistry, chart_tgz: Path
) -> None:
    env = helm_env(tmp_path / "home")
    assert _listening_on_loopback_only(registry.port)
    denied = run_helm("push", str(chart_tgz), f"{registry.url}/charts", env=env)
    assert denied.returncode != 0 and "authorization" in denied.stderr, denied.stderr
    wrong = Credentials(registry.credentials.username if registry.credentials else "x", "not-the-password")
    refused = run_helm(
        "registry", "login", registry.host, "-u", wrong.username, "--password-stdin", env=env, input=wrong.password
    )
    assert refused.returncode != 0, "a wrong password is refused at login"

    login(registry, env)
    digest = push(registry, chart_tgz, env)
    assert digest.startswith("sha256:") and len(digest) == 71
    ref = f"{registry.url}/charts/demo"
    helm3 = run_helm("show", "chart", ref, "--version", "1.2.3", env=env)
    assert helm3.returncode == 0 and "version: 1.2.3" in helm3.stdout, helm3.stderr
    helm4 = run_helm("show", "chart", f"{ref}@{digest}", "--plain-http", env=env, helm=str(helm4_binary()))
    assert helm4.returncode == 0 and "version: 1.2.3" in helm4.stdout, helm4.stderr
    anonymous = run_helm("show", "chart", ref, "--version", "1.2.3", env=helm_env(tmp_path / "nobody"))
    assert anonymous.returncode != 0 and "authorization" in anonymous.stderr


def test_the_chart_repository_over_tls_with_basic_auth(tmp_path: Path, chart_tgz: Path) -> None:
    with ChartRepository(tmp_path / "repo", Credentials.generate()) as repo:
        assert repo.url.startswith("https://127.0.0.1:") and _listening_on_loopback_only(repo.port)
        publish(repo, chart_tgz)
        assert repo.ca_file is not None and repo.credentials is not None
        env = helm_env(tmp_path / "home", SSL_CERT_FILE=str(ca_bundle(tmp_path / "ca.pem", repo.ca_file)))
        anonymous = run_helm("repo", "add", "t", repo.url, env=env)
        assert anonymous.returncode != 0 and "401" in anonymous.stderr, anonymous.stderr
        user = repo.credentials
        added = run_helm("repo", "add", "t", repo.url, "--username", user.username, "--password-stdin", env=env,
                         input=user.password)  # fmt: skip
        assert added.returncode == 0, added.stderr
        out = tmp_path / "pulled"
        out.mkdir()
        pulled = run_helm("pull", "t/demo", "--version", "1.2.3", "-d", str(out), env=env)
        assert pulled.returncode == 0, pulled.stderr
        got = (out / "demo-1.2.3.tgz").read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(chart_tgz.read_bytes()).digest()


def test_a_plain_http_repository_without_auth(tmp_path: Path, chart_tgz: Path) -> None:
    with ChartRepository(tmp_path / "repo", tls=False) as repo:
        publish(repo, chart_tgz)
        out = tmp_path / "pulled"
        out.mkdir()
        env = helm_env(tmp_path / "home")
        pulled = run_helm("pull", "demo", "--repo", repo.url, "--version", "1.2.3", "-d", str(out), env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert (out / "demo-1.2.3.tgz").read_bytes() == chart_tgz.read_bytes()
    gone = run_helm("pull", "demo", "--repo", repo.url, "-d", str(out), env=env)
    assert gone.returncode != 0, "stopped means stopped"
