"""`promote diff` on the real local control plane: a unified diff, live → Git, of the drifted resources only,
coloured only when the output may be (a terminal, no --no-color, no NO_COLOR)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devcluster.kube import Kube
from tests.support.cli import Deployed, apply_prod, cli, expect, strip_ansi
from tests.support.kube import kubectl, namespaces
from tests.support.repo import CONFIGMAP, PROD_RELEASE, make_repo

LIVE_CONFIG = "greeting: hello\nlogLevel: warn\n"


@pytest.fixture(scope="module")
def drifted(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """Applied once for the module, then prod drifted: scaled to 1 and its ConfigMap hand-edited.

    The tests only read (`promote diff` is read-only), so they share it.
    """
    with namespaces(kube, 2) as names:
        repo = make_repo(tmp_path_factory.mktemp("diff"), *names)
        apply_prod(repo)
        d = Deployed(repo, *names)
        kubectl("scale", "-n", d.prod_ns, f"deployment/{PROD_RELEASE}", "--replicas=1")
        kubectl(
            "patch", "-n", d.prod_ns, "configmap", CONFIGMAP, "-p", json.dumps({"data": {"config.yaml": LIVE_CONFIG}})
        )
        yield d


def _headers(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("--- ", "+++ "))]


def test_only_drifted_resources_are_diffed_live_to_git(drifted: Deployed) -> None:
    out = expect(cli(drifted.repo, "diff", "prod"), 0, "diff prod").stdout
    ns = drifted.prod_ns
    # In helm's install order: the ConfigMap before the Deployment.
    assert _headers(out) == [
        f"--- live/ConfigMap/{ns}/{CONFIGMAP}",
        f"+++ git/ConfigMap/{ns}/{CONFIGMAP}",
        f"--- live/Deployment/{ns}/{PROD_RELEASE}",
        f"+++ git/Deployment/{ns}/{PROD_RELEASE}",
    ], out
    lines = out.splitlines()
    assert "-  replicas: 1" in lines and "+  replicas: 3" in lines, out
    assert "-    logLevel: warn" in lines and "+    logLevel: info" in lines, out
    assert any(line.startswith("@@ ") for line in lines)
    # Only what changed is marked: status, managedFields and the like never show.
    changed = [line for line in lines if line[:1] in "+-" and not line.startswith(("---", "+++"))]
    assert len(changed) == 4, changed
    assert "managedFields" not in out and "status:" not in out and "resourceVersion" not in out


def test_detailed_exitcode_is_2_when_drifted(drifted: Deployed) -> None:
    expect(cli(drifted.repo, "diff", "prod", "--detailed-exitcode"), 2, "diff prod --detailed-exitcode")


def test_no_differences_and_exit_0_when_not_drifted(drifted: Deployed) -> None:
    # default was applied with prod and nobody touched it.
    out = expect(cli(drifted.repo, "diff", "default", "--detailed-exitcode"), 0, "diff default").stdout
    assert out == "No differences: live matches Git.\n"


def test_no_colour_with_the_flag_even_on_a_terminal(drifted: Deployed) -> None:
    out = expect(cli(drifted.repo, "diff", "prod", no_color=True, color=True), 0, "diff --no-color").stdout
    assert "\x1b" not in out
    assert f"--- live/Deployment/{drifted.prod_ns}/{PROD_RELEASE}" in out


def test_no_colour_with_no_color_in_the_environment(drifted: Deployed) -> None:
    out = expect(
        cli(drifted.repo, "diff", "prod", no_color=False, color=True, env={"NO_COLOR": "1"}), 0, "NO_COLOR=1 diff"
    ).stdout
    assert "\x1b" not in out
    assert f"+++ git/Deployment/{drifted.prod_ns}/{PROD_RELEASE}" in out


def test_colours_when_forced(drifted: Deployed) -> None:
    coloured = expect(cli(drifted.repo, "diff", "prod", no_color=False, color=True), 0, "diff (colour)").stdout
    plain = expect(cli(drifted.repo, "diff", "prod"), 0, "diff --no-color").stdout
    assert "\x1b[32m+  replicas: 3\x1b[0m" in coloured
    assert "\x1b[31m-  replicas: 1\x1b[0m" in coloured
    assert "\x1b[1m--- live/Deployment/" in coloured
    assert strip_ansi(coloured) == plain


def test_json_carries_both_sides(drifted: Deployed) -> None:
    doc = json.loads(expect(cli(drifted.repo, "diff", "prod", "-o", "json"), 0, "diff -o json").stdout)
    by_kind = {d["kind"]: d for d in doc["diffs"]}
    assert set(by_kind) == {"Deployment", "ConfigMap"}
    assert "replicas: 1" in by_kind["Deployment"]["live"] and "replicas: 3" in by_kind["Deployment"]["git"]
    assert by_kind["ConfigMap"]["action"] == "update"
