"""Keyed fingerprints (promote.fingerprint): nothing promote writes or prints lets anyone check a guess at
a Secret or writeOnly value offline, yet promote can still tell equal values apart on its own machine."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from promote import diff, fingerprint, rendercache, saved, values
from promote.chart import ChartInfo
from promote.engine.workspace import Target
from promote.errors import ConfigError
from promote.model import App, ChartRef, Environment
from promote.plan import Plan

PASSWORD = "hunter2"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine of its own: an empty cache folder, no shared plan key, no key remembered in-process."""
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(fingerprint.PLAN_KEY_ENV, raising=False)
    fingerprint._machine_key.cache_clear()
    return tmp_path / "cache"


def _plain_digests(value: str) -> set[str]:
    """Every unkeyed digest of the value an attacker would try."""
    return {hashlib.sha256(value.encode()).hexdigest(), hashlib.sha256(json.dumps(value).encode()).hexdigest()}


def test_the_machine_key_is_created_private_and_kept(cache: Path) -> None:
    key = fingerprint.machine_key()
    path = cache / "key"
    assert len(key) == fingerprint.KEY_BYTES
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    fingerprint._machine_key.cache_clear()
    assert fingerprint.machine_key() == key, "a second run reads the same key back"


def test_runs_creating_the_key_at_once_agree(cache: Path) -> None:
    code = "from promote import fingerprint; print(fingerprint.machine_key().hex())"
    env = {**os.environ, "PROMOTE_CACHE": str(cache)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) for _ in range(6)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert keys == {(cache / "key").read_bytes().hex()}


def test_secret_fingerprints_are_keyed_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = diff.secret_fingerprint(PASSWORD)
    assert mine == diff.secret_fingerprint(PASSWORD), "equal values, equal fingerprints"
    assert mine != diff.secret_fingerprint("hunter3")
    assert not any(d in mine for d in _plain_digests(PASSWORD))
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "other-machine"))
    fingerprint._machine_key.cache_clear()
    assert diff.secret_fingerprint(PASSWORD) != mine, "another machine's key gives another fingerprint"


def test_the_render_cache_holds_no_plain_digest_of_a_secret(cache: Path) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"pw": PASSWORD}}
    k = rendercache.key("chart-digest", values.digest({"db": {"password": PASSWORD}}))
    rendercache.store(k, [diff.fingerprint_secret(secret)], "m" * 64)
    (entry,) = (cache / "render").iterdir()
    text = entry.read_text()
    assert PASSWORD not in text
    for d in _plain_digests(PASSWORD):
        assert d not in text and d not in entry.name
    loaded = rendercache.load(k)
    # stringData is kept as the data the apiserver would hold: the fingerprint of its base64 form
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    assert encoded not in text
    assert loaded is not None and loaded[0][0]["data"]["pw"] == diff.secret_fingerprint(encoded)


def test_a_shared_plan_key_names_itself_the_same_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = fingerprint.key_id(fingerprint.plan_key())
    assert local == fingerprint.key_id(fingerprint.machine_key())
    monkeypatch.setenv(fingerprint.PLAN_KEY_ENV, "ci-secret")
    shared = fingerprint.key_id(fingerprint.plan_key())
    assert shared != local
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "other-machine"))
    fingerprint._machine_key.cache_clear()
    assert fingerprint.key_id(fingerprint.plan_key()) == shared, "the CI secret, not the machine, decides"
    monkeypatch.setenv(fingerprint.PLAN_KEY_ENV, "another-secret")
    assert fingerprint.key_id(fingerprint.plan_key()) != shared


def _plan_file(tmp_path: Path, digest_key: str) -> str:
    path = tmp_path / "plan.json"
    saved.write(Plan(target="prod", revision="1" * 40, digest_key=digest_key), str(path))
    return str(path)


def test_a_saved_plan_is_read_back_with_its_own_key(tmp_path: Path) -> None:
    key = fingerprint.key_id(fingerprint.plan_key())
    assert saved.read(_plan_file(tmp_path, key))["digestKey"] == key


def test_a_saved_plan_from_another_key_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _plan_file(tmp_path, fingerprint.key_id(fingerprint.plan_key()))
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "other-machine"))
    fingerprint._machine_key.cache_clear()
    with pytest.raises(ConfigError, match=r"planned with another digest key .* PROMOTE_PLAN_KEY"):
        saved.read(path)


def test_masked_at_replaces_what_sits_at_the_paths() -> None:
    doc = {"db": {"password": PASSWORD, "host": "db"}, "tokens": ["a", "b"], "gone": None}
    out = values.masked_at(doc, {("db", "password"), ("tokens", 1), ("missing", "x"), ("gone",)})
    assert out == {
        "db": {"password": values.WRITE_ONLY_MARK, "host": "db"},
        "tokens": ["a", values.WRITE_ONLY_MARK],
        "gone": None,
    }
    assert doc["db"]["password"] == PASSWORD, "the input is left alone"
    assert values.masked_at(doc, {()}) == values.WRITE_ONLY_MARK


def _target(password: str, replicas: int = 1) -> Target:
    env = Environment("prod", "prod", "app", None, None, 0.0, (), {}, ())
    app = App("app", "environments/app.yaml", ChartRef(ref="charts/app", local="charts/app"), (), {}, None, (env,))
    chart = ChartInfo(path=Path("/nonexistent"), name="app", version="1.0.0", digest="c" * 64, uses_lookup=False)
    vals: dict[str, Any] = {"db": {"password": password}, "replicaCount": replicas}
    return Target(
        app=app,
        env=env,
        chart=chart,
        values=vals,
        effective=vals,
        app_values={"db": {"password": password}},
        context=None,
        hidden=frozenset({password}),
        hidden_paths=frozenset({("db", "password")}),
        artifact_hidden_paths=frozenset({("db", "password")}),
    )


def test_recorded_digests_leave_write_only_values_out() -> None:
    a, b = _target(PASSWORD), _target("hunter3")
    assert a.artifact_digest == b.artifact_digest, "the artifact says nothing about a writeOnly value"
    assert a.values_digest == b.values_digest
    assert a.cache_digest != b.cache_digest, "the render cache still tells them apart (under its key)"
    assert _target(PASSWORD, replicas=3).values_digest != a.values_digest, "other values still count"
