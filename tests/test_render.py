"""Rendering and the client paths the performance work changed, each checked for what it must keep true.

- A chart whose templates never read the cluster or the install/upgrade state renders before promote has
  connected; one that does still renders for this cluster's version, as an install or an upgrade.
- helm template runs with Go's collector off unless the user set GOGC/GOMEMLIMIT, and with a locale whose
  message catalogue is small; what it prints is the same to the byte.
- helm's version is asked once per binary.
- The API client reads credentials once, and again when the server rejects them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from apply_helpers import apply, edit_env, env_values
from helpers import CHART, REPO_ROOT, cli, commit, make_repo

from devcluster.kube import Kube
from promote import chart, rendercache
from promote.cluster import Cluster, Resource
from promote.helm import binary as helm_binary

# --- which charts may render before the cluster is known ------------------------------------------


def _chart(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "chart"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (root / "templates" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_plain_chart_renders_the_same_on_any_cluster(tmp_path: Path) -> None:
    info = chart.chart_info(_chart(tmp_path, {"README.md": "uses .Capabilities in prose only\n"}))
    assert info.cluster_independent
    assert not info.uses_lookup


@pytest.mark.parametrize(
    ("rel", "text"),
    [
        ("templates/pdb.yaml", '{{ if .Capabilities.APIVersions.Has "policy/v1" }}x{{ end }}\n'),
        ("templates/ver.yaml", "{{ .Capabilities.KubeVersion.Minor }}\n"),
        ("templates/once.yaml", "{{ if .Release.IsInstall }}x{{ end }}\n"),
        ("templates/up.yaml", "{{ if .Release.IsUpgrade }}x{{ end }}\n"),
        ("charts/sub/templates/_h.tpl", '{{ define "x" }}{{ .Capabilities.KubeVersion }}{{ end }}\n'),
        ("charts/sub/Chart.yaml", "apiVersion: v2\nname: sub\nversion: 1.0.0\nkubeVersion: '>=1.19'\n"),
    ],
)
def test_chart_that_reads_the_cluster_waits_for_it(tmp_path: Path, rel: str, text: str) -> None:
    assert not chart.chart_info(_chart(tmp_path, {rel: text})).cluster_independent


def test_lookup_in_a_subchart_is_seen(tmp_path: Path) -> None:
    info = chart.chart_info(_chart(tmp_path, {"charts/sub/templates/s.yaml": '{{ lookup "v1" "Secret" "" "" }}\n'}))
    assert info.uses_lookup
    assert not info.cluster_independent


CAPABILITIES_TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-capabilities
data:
  kube: {{ .Capabilities.KubeVersion.Version | quote }}
  install: {{ .Release.IsInstall | quote }}
"""


def test_chart_reading_the_cluster_renders_for_its_version_and_state(
    tmp_path: Path, kube: Kube, make_namespace: Callable[[], str]
) -> None:
    default_ns, prod_ns = make_namespace(), make_namespace()
    repo = make_repo(tmp_path, default_ns, prod_ns)
    (repo / CHART / "templates" / "capabilities.yaml").write_text(CAPABILITIES_TEMPLATE)
    commit(repo, "a template that reads the cluster's version and the install state")
    server = kube.get("/version")["gitVersion"]

    first = cli(repo, "diff", "default", "-o", "json")
    assert first.exit_code in (0, 2), first.stdout + first.stderr
    git_side = {d["name"]: d["git"] for d in json.loads(first.stdout)["diffs"]}
    created = git_side["python-app-capabilities"]
    assert f"kube: {server}" in created, created
    assert 'install: "true"' in created or "install: 'true'" in created, created

    apply(repo, "default", code=0)
    edit_env(repo, "default", values={**env_values(repo, "default"), "config": {"greeting": "again"}})
    commit(repo, "a change, so the next sync is an upgrade")
    again = json.loads(cli(repo, "diff", "default", "-o", "json").stdout)
    by_name = {d["name"]: d for d in again["diffs"]}
    # As helm upgrade will render it: no longer an install.
    assert (
        "install: 'false'" in by_name["python-app-capabilities"]["git"]
        or 'install: "false"' in (by_name["python-app-capabilities"]["git"])
    ), by_name["python-app-capabilities"]


# --- helm's environment and version ----------------------------------------------------------------


def test_helm_template_runs_without_go_gc_unless_the_user_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    env = helm_binary.short_lived_env()
    assert (env["GOGC"], env["GOMEMLIMIT"]) == ("off", "256MiB")
    monkeypatch.setenv("GOGC", "50")
    env = helm_binary.short_lived_env()
    assert env["GOGC"] == "50" and "GOMEMLIMIT" not in env
    monkeypatch.delenv("GOGC")
    monkeypatch.setenv("GOMEMLIMIT", "2GiB")
    env = helm_binary.short_lived_env()
    assert env["GOMEMLIMIT"] == "2GiB" and "GOGC" not in env


def _helm_template(chart_dir: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[bytes]:
    argv = [helm_binary.executable(), "template", "r", str(chart_dir), "-n", "ns", *extra]
    return subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)


def _plain_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k not in ("GOGC", "GOMEMLIMIT")}
    env["LANG"] = "C.UTF-8"
    return env


@pytest.mark.parametrize("chart_dir", [CHART, "tests/testdata/charts/hooked", "bench/charts/svc"])
def test_helm_templates_the_same_in_the_short_lived_environment(chart_dir: str) -> None:
    # The locale and GC settings may only change what helm costs, never a byte of what it prints.
    plain = _helm_template(REPO_ROOT / chart_dir, _plain_env(), "--set", "replicaCount=2")
    short = _helm_template(
        REPO_ROOT / chart_dir, helm_binary.short_lived_env(helm_binary.executable()), "--set", "replicaCount=2"
    )
    assert plain.returncode == 0, plain.stderr
    assert (short.returncode, short.stdout, short.stderr) == (0, plain.stdout, plain.stderr)


def test_helm_errors_read_the_same_in_the_short_lived_environment(tmp_path: Path) -> None:
    broken = _chart(tmp_path, {"templates/bad.yaml": "{{ .Values.missing.key }}\n"})
    plain = _helm_template(broken, _plain_env())
    short = _helm_template(broken, helm_binary.short_lived_env(helm_binary.executable()))
    assert plain.returncode == 1 and b"nil pointer" in plain.stderr
    assert (short.returncode, short.stdout, short.stderr) == (plain.returncode, plain.stdout, plain.stderr)


def _catalogue_init_bytes(env: dict[str, str]) -> int:
    """Bytes that the init of kubectl's `get` package (which unpacks the message catalogue) allocates."""
    out = _helm_template(REPO_ROOT / CHART, {**env, "GODEBUG": "inittrace=1"})
    line = next((x for x in out.stderr.decode().splitlines() if x.startswith("init k8s.io/kubectl/pkg/cmd/get ")), None)
    assert line is not None, "helm no longer links kubectl's get command: is SMALL_CATALOGUE_LOCALE still needed?"
    return int(line.split(",")[2].split()[0])


def test_the_short_lived_locale_skips_the_big_message_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    # Allocation counts are deterministic, unlike timings: if a helm release grows this catalogue, this
    # fails and SMALL_CATALOGUE_LOCALE needs another pick.
    monkeypatch.setenv("LC_ALL", "en_US.UTF-8")  # the user's own locale does not stop the override
    env = helm_binary.short_lived_env(helm_binary.executable())
    assert env["LC_ALL"] == helm_binary.SMALL_CATALOGUE_LOCALE
    assert _catalogue_init_bytes(env) * 3 < _catalogue_init_bytes(_plain_env())


def test_a_script_in_front_of_helm_keeps_the_users_locale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A version manager's shim is a shell script: an uninstalled locale would make its shell warn on
    # stderr, which would then stand in every helm error.
    shim = tmp_path / "helm"
    shim.write_text(f'#!/bin/sh\nexec {helm_binary.executable()} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    assert helm_binary.short_lived_env(str(shim))["LC_ALL"] == "C.UTF-8"
    assert helm_binary.short_lived_env()["LC_ALL"] == "C.UTF-8"


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


def test_helm_version_is_the_real_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path))
    first = helm_binary.version(helm_binary.executable())
    assert first.startswith("3.")
    assert len(list((tmp_path / "render").glob("helm-version-*"))) == 1
    assert helm_binary.version(helm_binary.executable()) == first


# --- credentials -----------------------------------------------------------------------------------


def test_rejected_credentials_are_read_again(kube: Kube) -> None:
    del kube  # the session cluster, through KUBECONFIG
    cluster = Cluster()
    assert cluster.server_version().startswith("v1.")
    real = cluster._auth
    assert real and next(iter(real.values())).startswith("Bearer ")
    # As if the token had been rotated since it was read: the server answers 401 and we read it again.
    cluster._auth = {"authorization": "Bearer not-a-valid-token"}
    cluster._auth_at = time.monotonic()
    assert cluster.namespace_exists("default")
    assert cluster._auth == real


def _tgz(path: Path, files: dict[str, str]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_packaged_dependency_is_looked_into(tmp_path: Path) -> None:
    root = _chart(tmp_path, {})
    (root / "charts").mkdir()
    _tgz(
        root / "charts" / "common-2.0.0.tgz",
        {
            "common/Chart.yaml": "apiVersion: v2\nname: common\nversion: 2.0.0\ntype: library\n",
            "common/templates/_capabilities.tpl": '{{ define "common.kv" }}{{ .Capabilities.KubeVersion }}{{ end }}',
        },
    )
    assert not chart.chart_info(root).cluster_independent
    plain = _chart(tmp_path / "plain", {})
    (plain / "charts").mkdir()
    _tgz(plain / "charts" / "dep-1.0.0.tgz", {"dep/templates/cm.yaml": "kind: ConfigMap\n"})
    assert chart.chart_info(plain).cluster_independent


def test_tpl_makes_a_chart_depend_on_its_values(tmp_path: Path) -> None:
    info = chart.chart_info(_chart(tmp_path, {"templates/extra.yaml": "{{ tpl .Values.extra . }}\n"}))
    assert info.uses_tpl and not info.cluster_independent and not info.uses_lookup
    assert not info.reads_cluster({"extra": "kind: ConfigMap"})
    assert info.reads_cluster({"extra": '{{ (lookup "v1" "Secret" "ns" "s").data }}'})


def test_a_version_managers_shim_is_asked_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    shim = tmp_path / "helm"
    shim.write_text(f'#!/bin/sh\nexec "{helm_binary.executable()}" "$@"\n')
    shim.chmod(0o755)
    assert helm_binary.version(str(shim)).startswith("3.")
    assert not list((tmp_path / "cache").rglob("helm-version-*"))


def test_an_api_blip_during_the_health_wait_is_not_a_verdict(tmp_path: Path) -> None:
    from promote import health, sync

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        "clusters: [{name: gone, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: u}}]\n"
    )
    cluster = Cluster(kubeconfig=str(kubeconfig))
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    # Discovery known, so the failing request is the read of the object itself (nothing listens on :9).
    cluster._discovery["v1"] = {"ConfigMap": Resource("v1", "ConfigMap", "configmaps", True)}
    h = sync.wait_healthy(cluster, "default", [cm], timeout=0.3)
    assert h.status == health.HealthStatus.PROGRESSING
    assert "cannot read the release's objects" in h.message and "unreachable" in h.message


def test_a_prefetched_helm_version_is_the_one_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path))
    exe = helm_binary.executable()
    asking = helm_binary.prefetch_version(exe)
    assert asking is not None  # asking in the background
    version = helm_binary.version(exe, asking)
    assert version.startswith("3.") and not asking.is_alive()
    assert helm_binary.prefetch_version(exe) is None  # now remembered: nothing to ask


def test_a_damaged_memo_is_asked_again_and_mended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path))
    exe = helm_binary.executable()
    real = helm_binary.version(exe)
    (memo,) = (tmp_path / "render").glob("helm-version-*")
    memo.write_text("garbage")
    assert helm_binary.version(exe) == real
    assert memo.read_text() == real


def test_lookup_reached_through_tpl_is_never_cached(tmp_path: Path) -> None:
    info = chart.chart_info(
        _chart(
            tmp_path,
            {
                "templates/extra.yaml": '{{ tpl (.Files.Get "conf/extra.tpl") . }}\n',
                "conf/extra.tpl": '{{ (lookup "v1" "Secret" "ns" "s").data }}\n',
            },
        )
    )
    assert info.uses_lookup and info.reads_cluster({})


def test_a_corrupt_packaged_dependency_counts_as_reading_the_cluster(tmp_path: Path) -> None:
    root = _chart(tmp_path, {})
    (root / "charts").mkdir()
    (root / "charts" / "broken-1.0.0.tgz").write_bytes(b"\x1f\x8b\x08\x00" + b"not gzip at all" * 10)
    assert not chart.chart_info(root).cluster_independent


def test_the_render_cache_holds_no_secret_value(
    tmp_path: Path, two_namespaces: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    repo = make_repo(tmp_path, *two_namespaces)
    password = "s3cret-in-the-cache-test"
    assert cli(repo, "plan", "prod", "--set", f"secret.password={password}").exit_code == 0

    entries = [p for p in (tmp_path / "cache" / "render").glob("*.json")]
    assert entries, "the plan stored no render"
    text = "".join(p.read_text() for p in entries)
    assert "python-app-secret" in text  # the Secret itself is cached, as fingerprints
    for form in (password, base64.b64encode(password.encode()).decode()):
        assert form not in text
