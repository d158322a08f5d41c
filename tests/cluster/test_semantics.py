"""Promotion semantics when things go wrong, on the real local control plane (issue 14).

Drift (a live edit), pending (Git not promoted yet) and runtime (pods) are three states; self-heal
restores what was promoted and never promotes; a rollback pins its environment; leftovers of failed
attempts are not the release's health; empty template fields are not drift; a failure names its cause;
everything that can be checked is checked before the first environment is touched.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from devcluster.kube import Kube
from tests.support.charts import small_chart
from tests.support.cli import apply, promote_json, start_promote, status_json
from tests.support.helm import helm_history
from tests.support.kube import deployment, image_of, kubectl, pods
from tests.support.repo import (
    APP,
    PROD_RELEASE,
    commit,
    edit_env,
    env_values,
    fail_pre_sync,
    make_repo,
    set_app_values,
)
from tests.support.wait import wait_for

NO_POST_HOOK = {"hooks": {"postSync": {"enabled": False}}}


def _repo(tmp_path: Path, default_ns: str, prod_ns: str) -> Path:
    return make_repo(tmp_path, default_ns, prod_ns, top={"values": NO_POST_HOOK})


def _release(doc: dict[str, Any], env: str) -> dict[str, Any]:
    (rel,) = [r for r in doc["releases"] if r["env"] == env]
    found: dict[str, Any] = rel
    return found


def _chart_repo(tmp_path: Path, app: str, templates: dict[str, str], *namespaces: str) -> Path:
    """A Git repository with one app of a small chart (its templates given), in one or two environments."""
    repo = tmp_path / "repo"
    small_chart(repo, templates)  # repo/chart
    envs = "".join(
        f"  - {{name: {n}, namespace: {ns}}}\n"
        for n, ns in zip(("default", "prod")[: len(namespaces)], namespaces, strict=True)
    )
    (repo / "environments").mkdir(parents=True)
    (repo / "environments" / f"{app}.yaml").write_text(f"app: {app}\nchart: ../chart\nenvironments:\n{envs}")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    commit(repo, app)
    return repo


def _new_tag(repo: Path, tag: str) -> str:
    set_app_values(repo, {**NO_POST_HOOK, "image": {"tag": tag}})
    return commit(repo, f"python-app {tag}")


# --- 1. three states, three words ------------------------------------------------------------------


def test_git_ahead_is_pending_and_a_hand_edit_is_drift(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "prod", code=0)
    _new_tag(repo, "1.1.0")
    kubectl("scale", "-n", prod_ns, f"deployment/{PROD_RELEASE}", "--replicas=1")

    doc = status_json(repo, "--detailed-exitcode", code=2)

    prod = _release(doc, "prod")
    assert [(c["kind"], [f["path"] for f in c["fields"]]) for c in prod["drift"]] == [("Deployment", ["spec.replicas"])]
    assert [c["kind"] for c in prod["pending"]] == ["Deployment"]
    assert any("image" in f["path"] for f in prod["pending"][0]["fields"])
    assert prod["pendingReason"].startswith("held by the gate"), prod["pendingReason"]
    default = _release(doc, "default")
    assert default["drift"] == []
    assert [c["kind"] for c in default["pending"]] == ["Deployment"]
    assert default["pendingReason"] == "not applied yet: `promote apply default`"
    table = subprocess.run(
        [sys.executable, "-m", "promote.cli", "status"], cwd=repo, capture_output=True, text=True, timeout=120
    ).stdout
    assert "Drift (live departs from what was promoted" in table
    assert "Pending (Git departs from what was promoted" in table


# --- 2. self-heal restores, never promotes ----------------------------------------------------------


def test_self_heal_restores_what_was_promoted_and_never_promotes_git(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "prod", code=0)
    _new_tag(repo, "1.1.0")
    apply(repo, "default", code=0)  # default runs 1.1.0; prod's gate would allow it, but nobody applied prod
    kubectl("scale", "-n", prod_ns, f"deployment/{PROD_RELEASE}", "--replicas=1")

    out = subprocess.run(
        [sys.executable, "-m", "promote.cli", "watch", "prod", "--self-heal", "--max-iterations", "1", "-o", "json"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["event"] for e in events if e["event"] in ("drift", "reverted")] == ["drift", "reverted"], events
    dep = deployment(kube, prod_ns, PROD_RELEASE)
    assert dep is not None and dep["spec"]["replicas"] == 3
    assert image_of(dep) == "registry.local/python-app:1.0.0"  # not promoted by self-heal
    history = helm_history(prod_ns, PROD_RELEASE)
    assert history[-1]["description"].startswith("Rollback to ")
    prod = _release(status_json(repo), "prod")
    assert prod["drift"] == [] and [c["kind"] for c in prod["pending"]] == ["Deployment"]


# --- 3. rollback sticks -----------------------------------------------------------------------------


def test_rollback_pins_the_environment_until_unpinned(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "default", code=0)
    _new_tag(repo, "1.1.0")
    apply(repo, "default", code=0)

    promote_json(repo, "rollback", "default", "--reason", "1.1.0 leaks memory", code=0)

    assert image_of(deployment(kube, default_ns, APP)) == "registry.local/python-app:1.0.0"
    blocked = apply(repo, "default", code=3)
    assert "default is pinned at" in blocked.doc["error"] and "1.1.0 leaks memory" in blocked.doc["error"]
    assert image_of(deployment(kube, default_ns, APP)) == "registry.local/python-app:1.0.0"
    gate = promote_json(repo, "gate", "prod", code=3).doc
    reasons = " ".join(c["reason"] for c in gate["checks"] if c["result"] == "fail")
    assert "was rolled back away from in default" in reasons
    assert "pinned" in _release(status_json(repo, "default"), "default")["pendingReason"]

    out = subprocess.run(
        [sys.executable, "-m", "promote.cli", "unpin", "default"], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "released: default is pinned at" in out.stdout, out
    apply(repo, "default", code=0)
    assert image_of(deployment(kube, default_ns, APP)) == "registry.local/python-app:1.1.0"


# --- 4. health sees the current attempt -------------------------------------------------------------


def test_a_failed_hook_pod_of_an_earlier_attempt_is_a_leftover_not_degraded(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "default", code=0)
    good = env_values(repo, "default")
    edit_env(repo, "default", values={**good, **fail_pre_sync(), "config": {"greeting": "x"}})
    commit(repo, "default: a failing migration")
    apply(repo, "default", "--timeout", "60s", code=1)
    edit_env(repo, "default", values=good)
    commit(repo, "default: back to the good values")
    assert any(p["metadata"]["name"] == f"{APP}-pre-sync" for p in pods(kube, default_ns))

    rel = _release(status_json(repo, "default"), "default")

    assert (rel["sync"], rel["health"]) == ("Synced", "Healthy"), rel
    assert any(f"leftover hook Pod {APP}-pre-sync" in n and "kubectl delete pod" in n for n in rel["runtime"])
    gate = promote_json(repo, "gate", "prod", code=0).doc
    assert all(c["result"] == "pass" for c in gate["checks"]), gate


# --- 5. templates as helm reads them ----------------------------------------------------------------

EMPTY_FIELDS = """\
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-svc
  annotations:
  labels:
spec:
  selector:
    app: x
  ports:
    - port: 80
  externalIPs: []
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
  annotations: {}
data:
"""


def test_empty_template_fields_are_never_a_change(tmp_path: Path, namespace: str) -> None:
    repo = _chart_repo(tmp_path, "empty", {"templates/all.yaml": EMPTY_FIELDS}, namespace)
    apply(repo, "default", code=0)

    again = apply(repo, "default", code=0)

    assert [r["outcome"] for r in again.doc["environments"][0]["releases"]] == ["unchanged"]
    assert [r["revision"] for r in helm_history(namespace, "empty")] == [1]
    doc = promote_json(repo, "plan", "default", "--detailed-exitcode", code=0).doc
    assert doc["summary"]["update"] == 0


# --- 6. ownership and cluster-scoped collisions -----------------------------------------------------

CLUSTER_ROLE = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .Release.Name }}-reader
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get"]
"""


def test_two_environments_claiming_one_cluster_role_stop_before_any_change(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    role = CLUSTER_ROLE.replace("{{ .Release.Name }}", f"r{default_ns}")
    repo = _chart_repo(tmp_path, "r", {"templates/role.yaml": role}, default_ns, prod_ns)

    run = apply(repo, "prod", code=1)

    assert "ClusterRole" in run.doc["error"] and "render it on one cluster" in run.doc["error"], run.doc["error"]
    assert run.doc["environments"] == [] and run.doc["notReached"] == ["default", "prod"]
    assert helm_history(default_ns, "r") == []
    apply(repo, "default", code=0)
    plan = promote_json(repo, "plan", "prod", code=1).doc
    errors = " ".join(e for env in plan["environments"] for r in env["releases"] for e in r["errors"])
    assert f"belongs to release r in namespace {default_ns}, not to release r in {prod_ns}" in errors, errors
    kubectl("delete", "clusterrole", f"r{default_ns}-reader")


# --- 7. failures explained once ---------------------------------------------------------------------

FAILING_JOB_HOOK = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations:
        sim.promote.dev/fail: "true"
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: registry.local/migrate:1
"""


def test_a_failing_hook_job_shows_in_progress_and_names_its_cause(tmp_path: Path, namespace: str) -> None:
    repo = _chart_repo(tmp_path, "j", {"templates/job.yaml": FAILING_JOB_HOOK}, namespace)

    run = apply(repo, "default", "--timeout", "60s", code=1)

    job_events = [e for e in run.events("default") if e["kind"] == "Job"]
    assert job_events and job_events[-1]["hook"] == "PreSync" and job_events[-1]["status"] == "Failed", job_events
    assert "Job migrate" in run.doc["error"] and "uninstalled" in run.doc["error"], run.doc["error"]
    assert run.doc["error"].count("Error:") <= 1


def test_a_rollout_that_never_gets_ready_names_the_pod_once_and_prod_is_not_reached(
    tmp_path: Path, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "default", code=0)
    values = {**env_values(repo, "default"), "podAnnotations": {"sim.promote.dev/never-ready": "true"}}
    edit_env(repo, "default", values={**values, "config": {"greeting": "changed"}})
    commit(repo, "default: pods that never become ready")

    run = apply(repo, "prod", "--timeout", "8s", code=1)

    error = run.doc["error"]
    assert f"Pod {APP}-" in error and "not ready" in error and "rolled back to revision 1" in error, error
    assert run.doc["notReached"] == ["prod"]
    waits = [e["message"] for e in run.events("default") if e["message"].startswith("waiting for Deployment")]
    assert len(waits) == len(set(waits)), waits  # each reason said once
    table = subprocess.run(
        [sys.executable, "-m", "promote.cli", "apply", "prod", "--timeout", "8s"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    # default failed: its summary says so, and claims no revision it was synced to
    assert "  failed after " in table and " synced to " not in table, table
    assert "Environment prod  not reached" in table, table


# --- 8. interrupts ----------------------------------------------------------------------------------


def test_sigterm_during_apply_restores_and_says_so(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "default", code=0)
    values = {**env_values(repo, "default"), "podAnnotations": {"sim.promote.dev/never-ready": "true"}}
    edit_env(repo, "default", values={**values, "config": {"greeting": "changed"}})
    commit(repo, "default: a rollout that waits")
    proc = start_promote(repo, tmp_path / "logs", "victim", "apply", "default", "--timeout", "120s", "-o", "json")
    wait_for("the rollout to start", lambda: len(helm_history(default_ns, APP)) == 2, 60)

    proc.proc.send_signal(signal.SIGTERM)

    assert proc.wait(60) == 1
    assert "interrupted during the sync of release python-app" in proc.result()["error"], proc.result()
    statuses = [r["status"] for r in helm_history(default_ns, APP)]
    assert statuses[-1] == "deployed", statuses  # the stopped revision stays in history, no longer current
    assert promote_json(repo, "plan", "default", code=0).doc["environments"][0]["releases"][0]["currentStatus"] == (
        "deployed"
    )


# --- 9. preflight and confirmation ------------------------------------------------------------------


def test_a_dirty_tree_stops_apply_prod_before_default_changes(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)
    apply(repo, "prod", code=0)
    set_app_values(repo, {**NO_POST_HOOK, "image": {"tag": "1.2.0"}})  # not committed

    run = apply(repo, "prod", code=3)

    assert "uncommitted changes" in run.doc["error"]
    assert len(helm_history(default_ns, APP)) == 1  # default untouched


def test_status_on_a_render_error_exits_1(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = _repo(tmp_path, *two_namespaces)
    (repo / "charts" / "python-app" / "templates" / "broken.yaml").write_text("{{ .Values.nope.nope }}\n")
    out = subprocess.run(
        [sys.executable, "-m", "promote.cli", "status", "--detailed-exitcode"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, (out.stdout, out.stderr)


def _apply_on_a_terminal(repo: Path, answer: str) -> tuple[int, str]:
    """`promote apply default` with a terminal for stdin and stdout, answering its question."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "promote.cli", "apply", "default"],
        cwd=repo,
        stdin=follower,
        stdout=follower,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "80"},
    )
    os.close(follower)
    seen = b""
    answered = False
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if not answered and b"Apply these changes" in seen:
            os.write(leader, answer.encode() + b"\n")
            answered = True
    code = proc.wait(300)
    os.close(leader)
    return code, seen.decode(errors="replace")


def test_on_a_terminal_apply_shows_the_plan_and_asks(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = _repo(tmp_path, default_ns, prod_ns)

    code, text = _apply_on_a_terminal(repo, "n")
    assert code == 1 and "Plan: " in text and "apply cancelled" in text, text
    assert helm_history(default_ns, APP) == []

    code, text = _apply_on_a_terminal(repo, "y")
    assert code == 0, text
    assert [r["status"] for r in helm_history(default_ns, APP)] == ["deployed"]


# --- CRDs from crds/ ---------------------------------------------------------------------------------

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.GROUP
spec:
  group: GROUP
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def test_the_charts_crds_show_in_the_plan_of_a_first_install(tmp_path: Path, namespace: str) -> None:
    group = f"{namespace}.example.com"
    repo = _chart_repo(tmp_path, "w", {"crds/widget.yaml": CRD.replace("GROUP", group)}, namespace)
    try:
        plan = promote_json(repo, "plan", "default", code=0).doc
        (release,) = plan["environments"][0]["releases"]
        crds = [(c["action"], c["name"]) for c in release["changes"] if c["kind"] == "CustomResourceDefinition"]
        assert crds == [("create", f"widgets.{group}")], release["changes"]

        apply(repo, "default", code=0)

        kubectl("get", "crd", f"widgets.{group}")  # apply created it
        again = promote_json(repo, "plan", "default", code=0).doc["environments"][0]["releases"][0]
        crds = [(c["action"], c["name"]) for c in again["changes"] if c["kind"] == "CustomResourceDefinition"]
        assert crds == [("unchanged", f"widgets.{group}")], again["changes"]
        assert all(c["action"] == "unchanged" for c in again["changes"])
    finally:
        subprocess.run(["kubectl", "delete", "crd", f"widgets.{group}", "--ignore-not-found"], capture_output=True)
