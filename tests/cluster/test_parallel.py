"""Parallel apply within an environment, and dependsOn between apps, on the real local control plane.

Concurrency is proven from the order of what happened (progress events, helm's history), never from
how long anything took: two releases whose progress interleaves were being synced at the same time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.charts import small_chart
from tests.support.cli import apply, plan_json, promote_json, start_promote
from tests.support.helm import helm_history
from tests.support.repo import commit
from tests.support.wait import wait_for

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: {{ .Release.Name }}}
spec:
  replicas: 1
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
      annotations: {{ toJson .Values.podAnnotations }}
    spec:
      containers: [{name: app, image: "example.com/app:{{ .Values.tag }}"}]
"""
# A pre-install/upgrade hook, failing when the values say so: a release that fails within seconds.
HOOK = """\
{{- if .Values.failHook }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-pre
  annotations: {helm.sh/hook: "pre-install,pre-upgrade", helm.sh/hook-delete-policy: before-hook-creation}
spec:
  backoffLimit: 0
  template:
    metadata: {annotations: {sim.promote.dev/fail: "true"}}
    spec:
      restartPolicy: Never
      containers: [{name: pre, image: example.com/pre:1}]
{{- end }}
"""
CONFIGMAP = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-config}\ndata: {tag: '{{ .Values.tag }}'}\n"
)
VALUES = "tag: '1'\nfailHook: false\npodAnnotations: {}\n"

SLOW = {"podAnnotations": {"sim.promote.dev/delay": "3s"}}  # a rollout that takes a few seconds
NEVER_READY = {"podAnnotations": {"sim.promote.dev/never-ready": "true"}}
FAILING_HOOK = {"failHook": True}


def _repo(tmp_path: Path, namespaces: tuple[str, str], apps: dict[str, dict[str, Any]]) -> Path:
    """A Git repository with one small chart and one app file per app (values given), in default and
    prod; files are named so that their order is the order of `apps` (the definition order)."""
    repo = tmp_path / "repo"
    small_chart(repo, {"templates/cm.yaml": CONFIGMAP, "templates/deploy.yaml": DEPLOYMENT, "values.yaml": VALUES})
    (repo / "chart" / "templates" / "hook.yaml").write_text(HOOK)
    (repo / "environments").mkdir()
    for i, (app, extra) in enumerate(apps.items()):
        _write_app(repo, i, app, extra, namespaces)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    commit(repo, "apps")
    return repo


def _write_app(repo: Path, i: int, app: str, extra: dict[str, Any], namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = namespaces
    doc = {
        "app": app,
        "chart": "../chart",
        **extra,
        "environments": [{"name": "default", "namespace": default_ns}, {"name": "prod", "namespace": prod_ns}],
    }
    (repo / "environments" / f"{i:02d}-{app}.yaml").write_text(json.dumps(doc))


def _spans(events: list[dict[str, Any]], apps: list[str]) -> dict[str, tuple[int, int]]:
    """Each release's first and last progress event (indices in emission order)."""
    spans: dict[str, tuple[int, int]] = {}
    for i, ev in enumerate(events):
        if ev["name"] in apps:
            first, _ = spans.get(ev["name"], (i, i))
            spans[ev["name"]] = (first, i)
    return spans


def _most_at_once(spans: dict[str, tuple[int, int]]) -> int:
    """The most releases whose progress was open at one point of the event stream."""
    return max(sum(1 for a, b in spans.values() if a <= i <= b) for span in spans.values() for i in span)


def test_releases_sync_at_once_bounded_and_report_in_definition_order(
    tmp_path: Path, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    apps = ["e", "d", "c", "b", "a"]  # definition order is not alphabetical
    repo = _repo(tmp_path, two_namespaces, {a: {"values": SLOW} for a in apps})

    run = apply(repo, "default", "--concurrency", "3", code=0)

    env = run.env("default")
    assert [r["app"] for r in env["releases"]] == apps
    assert [r["outcome"] for r in env["releases"]] == ["synced"] * 5
    assert [[h["status"] for h in helm_history(default_ns, a)] for a in apps] == [["deployed"]] * 5
    spans = _spans(run.events("default"), apps)
    assert set(spans) == set(apps), run.events("default")
    # Interleaved progress: several rollouts were under way at once, and never more than three.
    assert 2 <= _most_at_once(spans) <= 3, run.events("default")
    assert all(helm_history(prod_ns, a) == [] for a in apps)  # apply default leaves prod alone


def test_one_at_a_time_with_concurrency_1(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    apps = ["b", "a", "c"]
    repo = _repo(tmp_path, two_namespaces, {a: {"values": SLOW} for a in apps})

    run = apply(repo, "default", "--concurrency", "1", code=0)

    spans = _spans(run.events("default"), apps)
    assert _most_at_once(spans) == 1, run.events("default")
    assert sorted(spans.values()) == [spans[a] for a in apps]  # in definition order


def test_a_failure_stops_new_releases_and_later_environments(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    apps = {
        "first": {"values": FAILING_HOOK},  # fails within seconds
        "second": {"values": NEVER_READY},  # still waiting (until --timeout) when the first fails
        "third": {},
        "fourth": {},
    }
    repo = _repo(tmp_path, two_namespaces, apps)
    for concurrency in (1, 2):
        run = apply(repo, "prod", "--concurrency", str(concurrency), "--timeout", "20s", code=1)

        rels = run.env("default")["releases"]
        outcomes = [r["outcome"] for r in rels]
        assert [r["app"] for r in rels] == list(apps)
        assert outcomes == ["failed"] * concurrency + ["skipped"] * (4 - concurrency), rels
        assert "sync of release first" in run.doc["error"], run.doc["error"]
        assert rels[-1]["message"] == f"not started: {', '.join(list(apps)[:concurrency])} failed", rels[-1]
        assert run.doc["notReached"] == ["prod"]
        # The later apps never got a helm revision; the ones that ran were restored (a first install
        # failing is uninstalled, as --atomic does); prod was never touched.
        assert [helm_history(default_ns, a) for a in apps] == [[]] * 4
        assert [helm_history(prod_ns, a) for a in apps] == [[]] * 4


def test_depends_on_orders_the_sync_and_shows_in_plan(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, _ = two_namespaces
    # web is defined first, yet waits for db; cache does not wait for anything.
    apps = {"web": {"dependsOn": ["db"], "values": SLOW}, "cache": {"values": SLOW}, "db": {"values": SLOW}}
    repo = _repo(tmp_path, two_namespaces, apps)

    plan = plan_json(repo, "default")
    assert [(r["app"], r["after"]) for r in plan["environments"][0]["releases"]] == [
        ("web", ["db"]),
        ("cache", []),
        ("db", []),
    ]
    text = subprocess.run(
        [sys.executable, "-m", "promote.cli", "plan", "default"], cwd=repo, capture_output=True, text=True, timeout=120
    ).stdout
    assert f"web: release web in {default_ns}, chart c-0.1.0, after db" in " ".join(text.split()), text

    run = apply(repo, "default", "--concurrency", "3", code=0)

    assert [r["app"] for r in run.env("default")["releases"]] == list(apps)
    spans = _spans(run.events("default"), list(apps))
    assert spans["db"][1] < spans["web"][0], run.events("default")  # db healthy before web began
    db, web = helm_history(default_ns, "db")[-1], helm_history(default_ns, "web")[-1]
    assert db["updated"] <= web["updated"]  # helm agrees: db deployed before web
    # Nothing kept cache waiting: it ran alongside db.
    assert spans["cache"][0] < spans["db"][1], run.events("default")


def test_a_depends_on_cycle_is_refused_at_validate(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, _ = two_namespaces
    apps = {"web": {"dependsOn": ["api"]}, "api": {"dependsOn": ["web"]}, "db": {"dependsOn": ["dbb"]}}
    repo = _repo(tmp_path, two_namespaces, apps)

    for command in (("validate",), ("apply", "default")):
        error = promote_json(repo, *command, code=1).doc["error"]
        assert "environments/00-web.yaml, environments/01-api.yaml: dependsOn goes round in a cycle" in error, error
        assert "web → api → web" in error, error
        assert "environments/02-db.yaml: dependsOn: unknown app 'dbb' (did you mean 'db'?)" in error, error
    assert [helm_history(default_ns, a) for a in apps] == [[]] * 3


def test_sigterm_restores_every_release_that_was_syncing(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, _ = two_namespaces
    apps = ["one", "two", "three"]
    repo = _repo(tmp_path, two_namespaces, {a: {} for a in apps})
    apply(repo, "default", code=0)
    for i, a in enumerate(apps[:2]):
        _write_app(repo, i, a, {"values": {**NEVER_READY, "tag": "2"}}, two_namespaces)
    commit(repo, "two rollouts that wait")
    proc = start_promote(
        repo, tmp_path / "logs", "victim", "apply", "default", "--concurrency", "2", "--timeout", "120s", "-o", "json"
    )
    wait_for("both rollouts to start", lambda: all(len(helm_history(default_ns, a)) == 2 for a in apps[:2]), 60)

    proc.proc.send_signal(signal.SIGTERM)

    assert proc.wait(90) == 1
    error = proc.result()["error"]
    for a in apps[:2]:
        assert f"interrupted during the sync of release {a} in {default_ns}" in error, error
        statuses = [h["status"] for h in helm_history(default_ns, a)]
        assert statuses[-1] == "deployed" and len(statuses) == 3, statuses  # rolled back to revision 1
    rels = proc.result()["environments"][0]["releases"]
    assert [(r["app"], r["outcome"]) for r in rels] == [("one", "failed"), ("two", "failed"), ("three", "skipped")]
    assert len(helm_history(default_ns, "three")) == 1  # never started
