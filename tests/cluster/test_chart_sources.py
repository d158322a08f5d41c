"""Charts from where they live (issue 16), on the real cluster with real chart servers on 127.0.0.1: an OCI
registry (CNCF Distribution, htpasswd) and a Helm repository (TLS, basic auth), python-app published to
both at two versions; a packaged chart in the source; and the failures users meet, each a clear error that
changes nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.kube import Kube
from devcluster.registries import ChartRepository, Credentials, OciRegistry, ca_bundle
from tests.support.cli import (
    apply,
    cli,
    drift_fields,
    drifted,
    expect,
    plan_json,
    promote_json,
    release_of,
    release_status,
    status_json,
)
from tests.support.helm import helm_history
from tests.support.kube import deployment, kubectl
from tests.support.paths import REPO_ROOT
from tests.support.registry import helm_env, login, package, publish, push, run_helm
from tests.support.repo import APP, CHART, PROD_RELEASE, commit, edit_env, load_definition, make_repo, write_definition


@pytest.fixture
def packages(tmp_path: Path) -> dict[str, Path]:
    """charts/python-app packaged at 0.1.0 and 0.2.0."""
    return {v: package(REPO_ROOT / CHART, tmp_path / "pkg", version=v) for v in ("0.1.0", "0.2.0")}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[OciRegistry]:
    with OciRegistry(tmp_path / "oci", Credentials.generate()) as reg:
        yield reg


def _use_chart(checkout: Path, /, **top: Any) -> None:
    """Set (or, given None, remove) top-level keys of the definition, and commit."""
    doc = load_definition(checkout)
    doc.update(top)
    write_definition(checkout, {k: v for k, v in doc.items() if v is not None})
    commit(checkout, f"chart {top}")


def _set_env(repo: Path, env: str, **fields: Any) -> None:
    """Set (or, given None, remove) fields of one environment (uncommitted)."""
    doc = load_definition(repo)
    (entry,) = [e for e in doc["environments"] if e["name"] == env]
    entry.update(fields)
    for key in [k for k, v in entry.items() if v is None]:
        del entry[key]
    write_definition(repo, doc)


def _chart_of(namespace: str, release: str) -> str:
    return str(helm_history(namespace, release)[-1]["chart"])


@dataclass(frozen=True)
class Published:
    """python-app at 0.1.0 and 0.2.0 on a chart server: how an app file names it, and each version's digest."""

    chart: dict[str, Any]  # the app file's chart keys (chart, repo, plainHttp)
    digests: dict[str, str]
    by_digest: str | None  # a chart reference by the 0.2.0 digest, where the server has one (OCI)


@pytest.fixture(params=["oci", "repository"])
def published(
    request: pytest.FixtureRequest, tmp_path: Path, packages: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Published]:
    """python-app published to an OCI registry (htpasswd) or a Helm repository (TLS, basic auth), with helm's
    login in the environment promote's helm runs in, as the user's would be."""
    if request.param == "oci":
        with OciRegistry(tmp_path / "oci", Credentials.generate()) as registry:
            env = helm_env(tmp_path / "helm")
            login(registry, env)
            digests = {v: push(registry, tgz, env) for v, tgz in packages.items()}
            for name in ("HELM_REGISTRY_CONFIG", "HELM_REPOSITORY_CONFIG", "HELM_REPOSITORY_CACHE"):
                monkeypatch.setenv(name, env[name])
            ref = f"{registry.url}/charts/{APP}"
            yield Published({"chart": ref, "plainHttp": True}, digests, f"{ref}@{digests['0.2.0']}")
        return
    with ChartRepository(tmp_path / "repo-server", Credentials.generate()) as server:
        for tgz in packages.values():
            publish(server, tgz)
        assert server.ca_file is not None and server.credentials is not None
        env = helm_env(tmp_path / "helm", SSL_CERT_FILE=str(ca_bundle(tmp_path / "ca.pem", server.ca_file)))
        user = server.credentials
        added = run_helm("repo", "add", "team", server.url, "--username", user.username, "--password-stdin",
                         env=env, input=user.password)  # fmt: skip
        assert added.returncode == 0, added.stderr
        for name in ("HELM_REGISTRY_CONFIG", "HELM_REPOSITORY_CONFIG", "HELM_REPOSITORY_CACHE", "SSL_CERT_FILE"):
            monkeypatch.setenv(name, env[name])
        digests = {v: "sha256:" + hashlib.sha256(tgz.read_bytes()).hexdigest() for v, tgz in packages.items()}
        yield Published({"chart": APP, "repo": server.url}, digests, None)


def test_a_published_chart_through_validate_plan_apply_a_gated_version_bump_drift_and_rollback(
    tmp_path: Path,
    kube: Kube,
    two_namespaces: tuple[str, str],
    published: Published,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default_ns, prod_ns = two_namespaces
    digests = published.digests
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    repo = make_repo(tmp_path, default_ns, prod_ns)
    _use_chart(repo, **published.chart, version="0.1.0")

    expect(cli(repo, "validate"), 0, "validate")
    plan = plan_json(repo, "prod")
    for env_name in ("default", "prod"):
        rel = release_of(plan, env_name)
        assert (rel["chartVersion"], rel["chartDigest"]) == ("0.1.0", digests["0.1.0"]), rel
    apply(repo, "prod", code=0)
    assert _chart_of(default_ns, APP) == _chart_of(prod_ns, PROD_RELEASE) == "python-app-0.1.0"

    # A new chart version goes to default first; prod stays on its own version until it is promoted.
    _use_chart(repo, version="0.2.0")
    _set_env(repo, "prod", version="0.1.0")
    commit(repo, "prod stays on 0.1.0")
    plan = plan_json(repo, "prod")
    assert release_of(plan, "default")["chartVersion"] == "0.2.0"
    assert release_of(plan, "prod")["chartVersion"] == "0.1.0"
    apply(repo, "prod", code=0)
    assert _chart_of(default_ns, APP) == "python-app-0.2.0"
    assert _chart_of(prod_ns, PROD_RELEASE) == "python-app-0.1.0"
    assert len(helm_history(prod_ns, PROD_RELEASE)) == 1, "prod unchanged"

    # prod asks for 0.2.0 while default is still soaking it: the gate blocks.
    _set_env(repo, "prod", version=None, soak="1h")
    _set_env(repo, "default", soak="1h")
    commit(repo, "promote 0.2.0 to prod, after an hour in default")
    blocked = expect(cli(repo, "apply", "prod", "--only", "--yes"), 3, "apply prod before the soak")
    assert "soak" in blocked.stdout + blocked.stderr
    assert _chart_of(prod_ns, PROD_RELEASE) == "python-app-0.1.0"
    _set_env(repo, "prod", soak=None)
    _set_env(repo, "default", soak=None)
    commit(repo, "no soak")
    apply(repo, "prod", code=0)
    assert _chart_of(prod_ns, PROD_RELEASE) == "python-app-0.2.0"

    # Drift: a hand edit shows as drift against the pulled chart, and apply reverts it.
    kubectl("-n", prod_ns, "scale", f"deployment/{PROD_RELEASE}", "--replicas=5")
    status = status_json(repo, "prod", code=0)
    assert ("Deployment", "spec.replicas") in drift_fields(release_status(status, "prod")), status
    apply(repo, "prod", code=0)
    assert (deployment(kube, prod_ns, PROD_RELEASE) or {})["spec"]["replicas"] == 3

    # Rollback: prod goes back to its first promotion, and the chart version it ran then.
    promote_json(repo, "rollback", "prod", "--to", "1", code=0)
    assert _chart_of(prod_ns, PROD_RELEASE) == "python-app-0.1.0"
    expect(cli(repo, "unpin", "prod"), 0, "unpin prod")

    # Plan names the move back up (with OCI, the chart named by its digest: the exact bytes).
    if published.by_digest:
        _use_chart(repo, chart=published.by_digest, version=None)
    doc = plan_json(repo, "prod")
    assert release_of(doc, "prod")["chartDigest"] == digests["0.2.0"]
    assert release_of(doc, "prod")["chartVersion"] == "0.2.0" and doc["summary"]["update"] > 0, "prod moves back up"
    assert all(c["action"] == "unchanged" for c in release_of(doc, "default")["changes"]), "default runs it already"


def _refused(repo: Path, what: str, *needles: str) -> str:
    out = expect(cli(repo, "apply", "default", "--yes"), 1, what)
    text = " ".join((out.stdout + out.stderr).split())  # errors are wrapped to the terminal's width
    assert "Traceback" not in text and "unexpected" not in text, text
    for needle in needles:
        assert needle in text, text
    return text


def test_registry_failures_are_clear_and_change_nothing(
    tmp_path: Path,
    two_namespaces: tuple[str, str],
    registry: OciRegistry,
    packages: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default_ns, prod_ns = two_namespaces
    env = helm_env(tmp_path / "helm")
    login(registry, env)
    digest = push(registry, packages["0.1.0"], env)
    for name in ("HELM_REGISTRY_CONFIG", "HELM_REPOSITORY_CONFIG", "HELM_REPOSITORY_CACHE"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    repo = make_repo(tmp_path, default_ns, prod_ns)
    ref = f"{registry.url}/charts/{APP}"

    _use_chart(repo, chart=ref, version="0.1.0", plainHttp=True)
    apply(repo, "default", code=0)
    before = len(helm_history(default_ns, APP))

    _use_chart(repo, chart=ref, version="9.9.9")
    _refused(repo, "a wrong version", "cannot pull chart", "9.9.9")
    _use_chart(repo, chart=f"{ref}@sha256:{'0' * 64}", version=None)
    _refused(repo, "a bad digest", "cannot pull chart", "sha256:" + "0" * 64)
    assert digest != "sha256:" + "0" * 64

    _use_chart(repo, chart=ref, version="0.2.0")  # not cached: asks the registry
    wrong = Credentials(registry.credentials.username if registry.credentials else "x", "wrong-password")
    other = helm_env(tmp_path / "other")
    done = run_helm("registry", "login", registry.host, "-u", wrong.username, "--password-stdin", env=other,
                    input=wrong.password)  # fmt: skip
    assert done.returncode != 0
    monkeypatch.setenv("HELM_REGISTRY_CONFIG", other["HELM_REGISTRY_CONFIG"])
    _refused(repo, "no credentials", "refused the credentials")
    monkeypatch.setenv("HELM_REGISTRY_CONFIG", env["HELM_REGISTRY_CONFIG"])

    registry.stop()
    _refused(repo, "an unreachable registry", "unreachable")
    assert len(helm_history(default_ns, APP)) == before, "no failure changed the cluster"
    assert helm_history(prod_ns, PROD_RELEASE) == []


def test_a_chart_from_a_helm_repository_with_a_version_range(
    tmp_path: Path, two_namespaces: tuple[str, str], packages: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    default_ns, prod_ns = two_namespaces
    with ChartRepository(tmp_path / "repo-server", Credentials.generate()) as server:
        publish(server, packages["0.1.0"])
        assert server.ca_file is not None and server.credentials is not None
        env = helm_env(tmp_path / "helm", SSL_CERT_FILE=str(ca_bundle(tmp_path / "ca.pem", server.ca_file)))
        user = server.credentials
        added = run_helm("repo", "add", "team", server.url, "--username", user.username, "--password-stdin",
                         env=env, input=user.password)  # fmt: skip
        assert added.returncode == 0, added.stderr
        for name in ("HELM_REPOSITORY_CONFIG", "HELM_REPOSITORY_CACHE", "SSL_CERT_FILE", "HELM_REGISTRY_CONFIG"):
            monkeypatch.setenv(name, env[name])
        monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
        repo = make_repo(tmp_path, default_ns, prod_ns)
        _use_chart(repo, chart=APP, repo=server.url, version="^0.1.0 || ^0.2.0")

        plan = plan_json(repo, "default")
        assert release_of(plan, "default")["chartVersion"] == "0.1.0"
        apply(repo, "default", code=0)
        assert _chart_of(default_ns, APP) == "python-app-0.1.0"

        publish(server, packages["0.2.0"])
        plan = plan_json(repo, "default")
        assert release_of(plan, "default")["chartVersion"] == "0.2.0", "the range resolves anew every run"
        apply(repo, "default", code=0)
        assert _chart_of(default_ns, APP) == "python-app-0.2.0"

        # The same repository by the name helm knows it by.
        _use_chart(repo, chart=f"team/{APP}", repo=None, version="0.1.0")
        assert release_of(plan_json(repo, "default"), "default")["chartVersion"] == "0.1.0"


def test_a_packaged_chart_in_the_source(
    tmp_path: Path, two_namespaces: tuple[str, str], packages: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    default_ns, prod_ns = two_namespaces
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    repo = make_repo(tmp_path, default_ns, prod_ns)
    (repo / "charts" / "python-app-0.2.0.tgz").write_bytes(packages["0.2.0"].read_bytes())
    _use_chart(repo, chart="../charts/python-app-0.2.0.tgz")
    plan = plan_json(repo, "default")
    rel = release_of(plan, "default")
    assert rel["chartVersion"] == "0.2.0" and str(rel["chartDigest"]).startswith("sha256:")
    apply(repo, "default", code=0)
    assert _chart_of(default_ns, APP) == "python-app-0.2.0"


GENERATED_SECRET = """\
{{- $existing := lookup "v1" "Secret" .Release.Namespace "generated-password" }}
{{- if and .Release.IsUpgrade (not $existing) }}
{{- fail "PASSWORDS ERROR: the generated password was not found; pass it with --set" }}
{{- end }}
apiVersion: v1
kind: Secret
metadata:
  name: generated-password
data:
  password: {{ if $existing }}{{ index $existing.data "password" }}{{ else }}{{ randAlphaNum 16 | b64enc }}{{ end }}
"""


def test_a_chart_using_lookup_keeps_its_generated_password(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Bitnami's redis does: a password generated on install and read back with `lookup` on every upgrade
    (failing without it). Rendered with `helm template` alone, lookup finds nothing: every plan after the
    first install failed on "PASSWORDS ERROR"."""
    default_ns, prod_ns = two_namespaces
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    repo = make_repo(tmp_path, default_ns, prod_ns)
    (repo / CHART / "templates" / "generated-password.yaml").write_text(GENERATED_SECRET)
    commit(repo, "a generated password")
    apply(repo, "default", code=0)
    path = f"/api/v1/namespaces/{default_ns}/secrets/generated-password"
    password = kube.get(path)["data"]["password"]

    plan = plan_json(repo, "default")
    assert not release_of(plan, "default")["errors"]
    assert plan["summary"]["create"] == plan["summary"]["update"] == plan["summary"]["delete"] == 0, plan["summary"]
    expect(cli(repo, "plan", "default", "--detailed-exitcode"), 0, "plan: no changes")

    edit_env(repo, "default", values={"replicaCount": 2})
    commit(repo, "two replicas")
    apply(repo, "default", code=0)
    assert kube.get(path)["data"]["password"] == password, "the upgrade kept the generated password"
    rel = release_status(status_json(repo, "default"), "default")
    assert drifted(rel) == [] and not rel.get("pending"), rel


def test_a_chart_with_a_dependency_from_a_repository(
    tmp_path: Path,
    kube: Kube,
    two_namespaces: tuple[str, str],
    packages: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dependencies are fetched as helm dependency build would, into the cache, never into the user's tree;
    one that cannot be fetched is a validation error naming the chart and the dependency."""
    default_ns, prod_ns = two_namespaces
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    with ChartRepository(tmp_path / "repo-server", tls=False) as server:
        publish(server, packages["0.1.0"])
        repo = make_repo(tmp_path, default_ns, prod_ns)
        umbrella = repo / "charts" / "umbrella"
        (umbrella / "templates").mkdir(parents=True)
        dependency = {"name": APP, "version": "0.1.0", "repository": server.url}
        (umbrella / "Chart.yaml").write_text(
            yaml.safe_dump({"apiVersion": "v2", "name": "umbrella", "version": "1.0.0", "dependencies": [dependency]})
        )
        _use_chart(repo, chart="../charts/umbrella", schema=None)

        expect(cli(repo, "validate"), 0, "validate")
        apply(repo, "default", code=0)
        assert _chart_of(default_ns, APP) == "umbrella-1.0.0"
        deployments = kube.get(f"/apis/apps/v1/namespaces/{default_ns}/deployments")["items"]
        assert [d["metadata"]["name"] for d in deployments] == [APP], "the dependency's objects were applied"
        assert not (umbrella / "charts").exists(), "the user's tree is not written"
        expect(cli(repo, "plan", "default", "--detailed-exitcode"), 0, "plan after apply: no changes")

        dependency["version"] = "9.9.9"
        (umbrella / "Chart.yaml").write_text(
            yaml.safe_dump({"apiVersion": "v2", "name": "umbrella", "version": "1.0.1", "dependencies": [dependency]})
        )
        commit(repo, "a dependency that does not exist")
        refused = expect(cli(repo, "validate"), 1, "validate with a missing dependency")
        text = refused.output
        assert "chart umbrella: dependency python-app 9.9.9" in text and "Traceback" not in text, text
        assert _chart_of(default_ns, APP) == "umbrella-1.0.0"


def test_a_chart_package_at_a_url(
    tmp_path: Path, two_namespaces: tuple[str, str], packages: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    default_ns, prod_ns = two_namespaces
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    with ChartRepository(tmp_path / "repo-server", tls=False) as server:
        publish(server, packages["0.2.0"])
        repo = make_repo(tmp_path, default_ns, prod_ns)
        _use_chart(repo, chart=f"{server.url}/python-app-0.2.0.tgz")
        rel = release_of(plan_json(repo, "default"), "default")
        digest = "sha256:" + hashlib.sha256(packages["0.2.0"].read_bytes()).hexdigest()
        assert (rel["chartVersion"], rel["chartDigest"]) == ("0.2.0", digest)
        apply(repo, "default", code=0)
        assert _chart_of(default_ns, APP) == "python-app-0.2.0"
    # Remembered: with the server gone, plan still has the exact bytes.
    assert release_of(plan_json(repo, "default"), "default")["chartDigest"] == digest
