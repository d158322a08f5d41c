"""Drift versus runtime fluctuation, on the real local control plane, after `promote apply prod`.

Drift is a live field that departs from what Git declares (someone scaled, edited, deleted): it makes a
release OutOfSync and apply reverts it. Runtime fluctuation (pods deleted, restarting, unready) is healed
by Kubernetes itself: it is noted, never drift. Fields that another controller owns (an HPA's replicas,
a field written under another field manager, `ignoreDifferences`) are not drift either, while the same
edit made by a person with kubectl is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from devcluster.cluster import helm4_binary
from devcluster.kube import Kube
from tests.support.cli import (
    Deployed,
    apply_prod,
    cli,
    deploy,
    drift_fields,
    drifted,
    expect,
    release_status,
    replicas,
    status_json,
)
from tests.support.helm import helm_major, stored_revisions
from tests.support.kube import b64, delete_a_pod, get, kubectl, managers, patch_as, release_pods, restarts
from tests.support.repo import APP, CHART_PASSWORD, CONFIGMAP, PROD_RELEASE, SECRET, load_definition, make_repo
from tests.support.wait import wait_for, wait_past_sync_second


def _scale(d: Deployed, replicas: int) -> None:
    kubectl("scale", "-n", d.prod_ns, f"deployment/{PROD_RELEASE}", f"--replicas={replicas}")


# --- a fresh apply -------------------------------------------------------------------------------


def test_fresh_apply_is_synced_and_healthy_without_drift(deployed: Deployed) -> None:
    doc = status_json(deployed.repo, "--detailed-exitcode", code=0)
    assert [(r["env"], r["sync"], r["health"]) for r in doc["releases"]] == [
        ("default", "Synced", "Healthy"),
        ("prod", "Synced", "Healthy"),
    ]
    for rel in doc["releases"]:
        assert rel["drift"] == []
        assert rel["runtime"] == []
        assert rel["errors"] == []
        assert rel["promotedRevision"] == doc["revision"]
    table = expect(cli(deployed.repo, "status"), 0, "status").stdout
    assert "Drift" not in table
    assert "Runtime" not in table


# --- drift: a person scaled by hand --------------------------------------------------------------


def test_kubectl_scale_is_drift_and_apply_reverts_it(kube: Kube, deployed: Deployed) -> None:
    _scale(deployed, 1)

    doc = status_json(deployed.repo, "prod", "--detailed-exitcode", code=2)
    rel = release_status(doc, "prod")
    assert rel["sync"] == "OutOfSync"
    assert drifted(rel) == [("update", "Deployment", PROD_RELEASE)]
    assert drift_fields(rel) == {("Deployment", "spec.replicas"): {"path": "spec.replicas", "from": 1, "to": 3}}
    table = expect(cli(deployed.repo, "status", "prod"), 0, "status prod").stdout
    assert f"Deployment {deployed.prod_ns}/{PROD_RELEASE} drifted\n      spec.replicas: 3 promoted, 1 live" in table

    apply_prod(deployed.repo)

    assert replicas(kube, deployed) == 3
    assert stored_revisions(kube, deployed.prod_ns, PROD_RELEASE) == [1, 2]
    rel = release_status(status_json(deployed.repo, "prod"), "prod")
    assert (rel["sync"], rel["drift"]) == ("Synced", [])


# --- runtime: Kubernetes heals it ----------------------------------------------------------------


def test_a_deleted_pod_is_a_runtime_note_not_drift(kube: Kube, deployed: Deployed) -> None:
    wait_past_sync_second(kube, deployed.prod_ns)
    delete_a_pod(kube, deployed.prod_ns)

    rel = release_status(status_json(deployed.repo, "prod"), "prod")
    assert rel["drift"] == []
    assert rel["sync"] == "Synced"
    assert any(
        f"Deployment {PROD_RELEASE}: 1 pod(s) recreated since the last sync at" in n
        or (f"Pod {PROD_RELEASE}-" in n and "not ready" in n)
        for n in rel["runtime"]
    ), rel["runtime"]
    table = expect(cli(deployed.repo, "status", "prod"), 0, "status prod").stdout
    assert "Runtime (observed only, not drift: Kubernetes heals these):" in table
    assert "Drift" not in table


def test_a_crash_looping_pod_is_degraded_with_restart_notes_not_drift(kube: Kube, deployed: Deployed) -> None:
    # The pod, not the Deployment's template: annotating a running pod is a runtime fault (the simulated
    # kubelet honours annotation changes on running pods); editing the template would be drift.
    victim = release_pods(kube, deployed.prod_ns)[0]["metadata"]["name"]
    kubectl("annotate", "-n", deployed.prod_ns, "pod", victim, "sim.promote.dev/crash-loop=true")
    wait_for(
        f"{victim} to restart",
        lambda: any(p["metadata"]["name"] == victim and restarts(p) > 0 for p in release_pods(kube, deployed.prod_ns)),
        timeout=30,
    )

    doc = status_json(deployed.repo, "prod", "--detailed-exitcode", code=2)
    rel = release_status(doc, "prod")
    assert rel["drift"] == []
    assert rel["sync"] == "Synced"
    assert rel["health"] == "Degraded"
    assert rel["healthMessage"].startswith(f"Pod {victim}: container app keeps crashing:")
    assert any(n.startswith(f"Pod {victim}: ") and n.endswith(" restart(s)") for n in rel["runtime"]), rel["runtime"]


# --- fields another controller owns --------------------------------------------------------------


def test_replicas_an_hpa_scales_are_not_drift(kube: Kube, deployed: Deployed) -> None:
    kube.post(
        f"/apis/autoscaling/v1/namespaces/{deployed.prod_ns}/horizontalpodautoscalers",
        {
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": PROD_RELEASE},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": PROD_RELEASE},
                "minReplicas": 2,
                "maxReplicas": 5,
                "targetCPUUtilizationPercentage": 80,
            },
        },
    )
    _scale(deployed, 4)  # as the HPA would, through the scale subresource
    assert replicas(kube, deployed) == 4

    rel = release_status(status_json(deployed.repo, "prod"), "prod")
    assert ("Deployment", "spec.replicas") not in drift_fields(rel)
    assert rel["drift"] == []
    assert rel["sync"] == "Synced"


def test_a_field_another_controller_owns_is_not_drift_but_the_same_kubectl_edit_is(
    kube: Kube, deployed: Deployed
) -> None:
    label = "app.kubernetes.io/version"  # set by the chart on the Deployment
    path = f'metadata.labels["{label}"]'
    live = patch_as(kube, deployed.deployment_path, {"metadata": {"labels": {label: "1.0.0-canary"}}}, "my-controller")
    assert "my-controller" in managers(live)

    rel = release_status(status_json(deployed.repo, "prod"), "prod")
    assert ("Deployment", path) not in drift_fields(rel)
    assert rel["sync"] == "Synced"

    kubectl(
        "patch",
        "-n",
        deployed.prod_ns,
        "deployment",
        PROD_RELEASE,
        "-p",
        json.dumps({"metadata": {"labels": {label: "hand-edited"}}}),
    )

    rel = release_status(status_json(deployed.repo, "prod"), "prod")
    assert drift_fields(rel) == {("Deployment", path): {"path": path, "from": "hand-edited", "to": "1.0.0"}}
    assert rel["sync"] == "OutOfSync"


def test_labels_and_annotations_git_does_not_set_are_not_drift_but_a_git_label_is(deployed: Deployed) -> None:
    ns = deployed.prod_ns
    kubectl("label", "-n", ns, "deployment", PROD_RELEASE, "team=payments")
    kubectl("annotate", "-n", ns, "service", PROD_RELEASE, "example.com/owner=ops")
    kubectl("label", "-n", ns, "configmap", CONFIGMAP, "cost-centre=42")

    rel = release_status(status_json(deployed.repo, "prod", "--detailed-exitcode", code=0), "prod")
    assert rel["drift"] == []
    assert rel["sync"] == "Synced"

    kubectl("label", "--overwrite", "-n", ns, "deployment", PROD_RELEASE, "helm.sh/chart=python-app-9.9.9")

    rel = release_status(status_json(deployed.repo, "prod", "--detailed-exitcode", code=2), "prod")
    path = 'metadata.labels["helm.sh/chart"]'
    assert drift_fields(rel) == {
        ("Deployment", path): {"path": path, "from": "python-app-9.9.9", "to": "python-app-0.1.0"}
    }
    assert rel["sync"] == "OutOfSync"


def test_ignore_differences_hides_a_field(kube: Kube, tmp_path: Path, make_namespace: Callable[[], str]) -> None:
    ignore = [{"kind": "Deployment", "name": PROD_RELEASE, "jsonPointers": ["/spec/replicas"]}]
    d = deploy(tmp_path, make_namespace, top={"ignoreDifferences": ignore})
    _scale(d, 1)
    assert replicas(kube, d) == 1

    rel = release_status(status_json(d.repo, "prod"), "prod")
    assert rel["drift"] == []
    assert rel["sync"] == "Synced"
    diff_out = expect(cli(d.repo, "diff", "prod", "--detailed-exitcode"), 0, "diff prod").stdout
    assert diff_out.strip() == "No differences: live matches Git."


# --- hand edits and deletions of chart objects ---------------------------------------------------


def test_a_hand_edited_configmap_is_drift_field_by_field_and_apply_reverts_it(kube: Kube, deployed: Deployed) -> None:
    ns = deployed.prod_ns
    git_text = "greeting: hello\nlogLevel: info\n"
    live_text = "greeting: hello\nlogLevel: warn\n"
    path = f"/api/v1/namespaces/{ns}/configmaps/{CONFIGMAP}"
    cm = get(kube, path)
    assert cm is not None and cm["data"] == {"config.yaml": git_text}
    kubectl("patch", "-n", ns, "configmap", CONFIGMAP, "-p", json.dumps({"data": {"config.yaml": live_text}}))

    rel = release_status(status_json(deployed.repo, "prod", "--detailed-exitcode", code=2), "prod")
    assert rel["sync"] == "OutOfSync"
    assert drifted(rel) == [("update", "ConfigMap", CONFIGMAP)]
    field = 'data["config.yaml"]'
    assert drift_fields(rel) == {("ConfigMap", field): {"path": field, "from": live_text, "to": git_text}}

    apply_prod(deployed.repo)

    cm = get(kube, path)
    assert cm is not None and cm["data"] == {"config.yaml": git_text}
    assert release_status(status_json(deployed.repo, "prod", "--detailed-exitcode", code=0), "prod")["drift"] == []


def test_a_deleted_service_is_missing_and_apply_recreates_it(kube: Kube, deployed: Deployed) -> None:
    path = f"/api/v1/namespaces/{deployed.prod_ns}/services/{PROD_RELEASE}"
    kubectl("delete", "-n", deployed.prod_ns, "service", PROD_RELEASE, "--wait=true")
    assert get(kube, path) is None

    rel = release_status(status_json(deployed.repo, "prod", "--detailed-exitcode", code=2), "prod")
    assert rel["sync"] == "OutOfSync"
    assert rel["health"] == "Missing"
    assert drifted(rel) == [("create", "Service", PROD_RELEASE)]
    table = expect(cli(deployed.repo, "status", "prod"), 0, "status prod").stdout
    assert f"prod/{APP}: Service {deployed.prod_ns}/{PROD_RELEASE} missing" in table

    apply_prod(deployed.repo)

    assert get(kube, path) is not None
    rel = release_status(status_json(deployed.repo, "prod", "--detailed-exitcode", code=0), "prod")
    assert (rel["sync"], rel["health"], rel["drift"]) == ("Synced", "Healthy", [])


# --- Secrets never show ----------------------------------------------------------------------------


def test_a_hand_edited_secret_is_drift_and_no_value_appears_anywhere(kube: Kube, deployed: Deployed) -> None:
    ns = deployed.prod_ns
    hand_set = "hand-set-Pa55word"
    forbidden = {
        CHART_PASSWORD,
        b64(CHART_PASSWORD),
        b64(CHART_PASSWORD).rstrip("="),
        hand_set,
        b64(hand_set).rstrip("="),
    }
    secret = get(kube, f"/api/v1/namespaces/{ns}/secrets/{SECRET}")
    assert secret is not None and secret["data"]["password"] == b64(CHART_PASSWORD)
    kubectl("patch", "-n", ns, "secret", SECRET, "-p", json.dumps({"data": {"password": b64(hand_set)}}))

    outputs: dict[str, str] = {}
    doc = status_json(deployed.repo, "prod", "--detailed-exitcode", code=2)
    outputs["status -o json"] = json.dumps(doc)
    table = expect(cli(deployed.repo, "status", "prod"), 0, "status prod")
    outputs["status"] = table.stdout + table.stderr
    as_yaml = expect(cli(deployed.repo, "status", "prod", "-o", "yaml"), 0, "status -o yaml")
    outputs["status -o yaml"] = as_yaml.stdout + as_yaml.stderr
    diff = expect(cli(deployed.repo, "diff", "prod", "--detailed-exitcode"), 2, "diff prod")
    outputs["diff"] = diff.stdout + diff.stderr
    as_json = expect(cli(deployed.repo, "diff", "prod", "-o", "json"), 0, "diff -o json")
    outputs["diff -o json"] = as_json.stdout + as_json.stderr
    watch = expect(cli(deployed.repo, "watch", "prod", "--self-heal", "--max-iterations", "1"), 0, "watch prod")
    outputs["watch"] = watch.stdout + watch.stderr

    for name, text in outputs.items():
        leaked = sorted(v for v in forbidden if v in text)
        assert not leaked, f"`promote {name}` shows Secret values {leaked}:\n{text}"

    rel = release_status(doc, "prod")
    assert rel["sync"] == "OutOfSync"
    assert drifted(rel) == [("update", "Secret", SECRET)]
    (field,) = drift_fields(rel).values()
    assert field == {"path": "data.password", "from": "(sensitive)", "to": "(sensitive)", "sensitive": True}
    assert f"Secret {ns}/{SECRET} drifted\n      data.password: (sensitive value changed)" in table.stdout
    assert f"drift Secret {ns}/{SECRET} data.password: (sensitive value changed)" in watch.stdout
    assert f"reverted Secret {ns}/{SECRET} (update: data.password)" in watch.stdout
    secret = get(kube, f"/api/v1/namespaces/{ns}/secrets/{SECRET}")
    assert secret is not None and secret["data"]["password"] == b64(CHART_PASSWORD)
    # The drifted Secret is part of the diff, its value masked: a drifted resource without a hunk says nothing.
    assert f"--- live/Secret/{ns}/{SECRET}" in diff.stdout, diff.stdout
    assert f"+++ git/Secret/{ns}/{SECRET}" in diff.stdout


# --- Helm 4: server-side apply and its conflicts ---------------------------------------------------


def test_a_kubectl_scale_is_forecast_as_a_conflict_and_apply_resolves_it_as_planned(
    kube: Kube, deployed: Deployed
) -> None:
    """Under Helm 4 (server-side apply), `kubectl scale` makes another field manager own .spec.replicas:
    plan names the conflict and what apply will do; --on-conflict stop changes nothing, take reverts it.
    Under Helm 3 (client-side, a three-way merge) there is no such thing: plan says client-side and apply
    reverts the edit. Either way, no apply fails on something plan did not show."""
    d = deployed
    _scale(d, 5)
    plan = json.loads(expect(cli(d.repo, "plan", "prod", "-o", "json"), 0, "plan").stdout)
    (rel,) = plan["environments"][1]["releases"]
    (dep,) = [c for c in rel["changes"] if c["kind"] == "Deployment"]
    assert [(f["path"], f["from"], f["to"]) for f in dep["fields"]] == [("spec.replicas", 5, 3)]
    text = " ".join(expect(cli(d.repo, "plan", "prod"), 0, "plan").stdout.split())  # wrapped at 80 columns
    if helm_major() >= 4:
        assert plan["helmMajor"] == 4 and rel["applyMethod"] == "server-side"
        (conflict,) = dep["conflicts"]
        assert conflict["field"] == "spec.replicas" and conflict["manager"].startswith("kubectl")
        assert "! conflict: spec.replicas is owned by kubectl" in text and "apply takes it over" in text
        stop_text = " ".join(expect(cli(d.repo, "plan", "prod", "--on-conflict", "stop"), 0, "plan").stdout.split())
        assert "apply stops (--on-conflict stop)" in stop_text
        before = stored_revisions(kube, d.prod_ns, PROD_RELEASE)
        stopped = expect(cli(d.repo, "apply", "prod", "--on-conflict", "stop", "--yes"), 3, "apply, stop")
        assert "Deployment" in stopped.output and "spec.replicas (owned by kubectl" in " ".join(stopped.output.split())
        assert replicas(kube, d) == 5 and stored_revisions(kube, d.prod_ns, PROD_RELEASE) == before
    else:
        assert plan["helmMajor"] == 3 and rel["applyMethod"] == "client-side"
        assert "conflicts" not in dep and "conflict" not in text
    apply_prod(d.repo)
    assert replicas(kube, d) == 3
    if helm_major() >= 4:
        owners = [
            e["manager"]
            for e in kube.get(d.deployment_path)["metadata"]["managedFields"]
            if "f:replicas" in (e.get("fieldsV1") or {}).get("f:spec", {})
        ]
        assert owners == ["helm"], f"helm took .spec.replicas over: {owners}"
    expect(cli(d.repo, "plan", "prod", "--detailed-exitcode"), 0, "nothing left to do")


def test_a_release_helm_3_installed_stays_client_side_under_helm_4(
    tmp_path: Path, kube: Kube, make_namespace: Callable[[], str]
) -> None:
    """Helm 4 upgrades a release the way it was applied (--server-side=auto): a Helm 3 install stays
    client-side, where helm refuses --force-conflicts. promote plans it so and applies it cleanly."""
    helm3 = {"PROMOTE_HELM": str(Path(sys.executable).parent / "helm")}
    helm4 = {"PROMOTE_HELM": str(helm4_binary())}
    d = Deployed(make_repo(tmp_path, make_namespace(), make_namespace()), "", "")
    d = Deployed(d.repo, *(e["namespace"] for e in load_definition(d.repo)["environments"]))
    expect(cli(d.repo, "apply", "prod", "--yes", env=helm3), 0, "apply with Helm 3")
    _scale(d, 5)
    plan = json.loads(expect(cli(d.repo, "plan", "prod", "-o", "json", env=helm4), 0, "plan, Helm 4").stdout)
    assert plan["helmMajor"] == 4
    (rel,) = plan["environments"][1]["releases"]
    assert rel["applyMethod"] == "client-side"
    (dep,) = [c for c in rel["changes"] if c["kind"] == "Deployment"]
    assert [(f["path"], f["from"], f["to"]) for f in dep["fields"]] == [("spec.replicas", 5, 3)]
    assert "conflicts" not in dep
    expect(cli(d.repo, "apply", "prod", "--yes", env=helm4), 0, "apply with Helm 4")
    assert replicas(kube, d) == 3
    saved = tmp_path / "plan.json"
    _scale(d, 4)
    expect(cli(d.repo, "plan", "prod", "--out", str(saved), env=helm3), 0, "plan --out with Helm 3")
    refused = expect(cli(d.repo, "apply", "prod", "--plan", str(saved), env=helm4), 1, "apply --plan with Helm 4")
    assert "made with Helm 3, this apply runs Helm 4" in " ".join(refused.output.split())
    assert replicas(kube, d) == 4
