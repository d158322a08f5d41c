"""What people read, exactly, at 80 columns, on the real cluster: plan, apply's progress and result, status
and history. Only what is genuinely variable is normalised: times, durations, the test's namespaces,
Git revisions, and how many times a rollout was seen in progress (it depends on how fast it goes)."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import Result

from tests.support.cli import APPLY_TIMEOUT, cli, expect
from tests.support.repo import commit, edit_env, env_values, make_repo

COLUMNS = {"COLUMNS": "80"}


def _normal(text: str, default_ns: str, prod_ns: str) -> list[str]:
    # The namespaces are t-<8 hex>: their placeholders are as long, so alignment shows as it is.
    text = text.replace(default_ns, "t-default0").replace(prod_ns, "t-prod0000")
    text = re.sub(r"\b\d\d:\d\d:\d\d\b", "HH:MM:SS", text)
    text = re.sub(r"\d{4}-\d\d-\d\d HH:MM|\d{4}-\d\d-\d\d \d\d:\d\d", "YYYY-MM-DD HH:MM", text)
    text = re.sub(r"\b[0-9a-f]{40}\b", "<sha>", text)
    text = re.sub(r"\b[0-9a-f]{12}\b", "<sha-twelve>", text)  # as long as what it stands for
    text = re.sub(r"\b[0-9a-f]{7}\b", "<sha-7>", text)
    text = re.sub(r"artifact [0-9a-f]{8}\b", "artifact <art>", text)
    text = re.sub(r"in \d+\.\ds", "in N.Ns", text)
    text = re.sub(r"\(context [^)]+\)", "(context <ctx>)", text)
    return text.splitlines()


def _run(repo: Path, *args: str) -> Result:
    return expect(cli(repo, *args, env=COLUMNS), 0, " ".join(args))


def test_plan_apply_status_and_history_at_80_columns(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)

    def normal(text: str) -> list[str]:
        return _normal(text, default_ns, prod_ns)

    assert normal(_run(repo, "plan", "default").stdout) == [
        "Revision <sha>",
        "",
        "Environment default  (context <ctx>)",
        "  python-app: release python-app in t-default0, chart python-app-0.1.0",
        "    not installed",
        "    + create ServiceAccount t-default0/python-app",
        "    + create Secret t-default0/python-app-secret",
        "    + create ConfigMap t-default0/my-app-config",
        "    + create Service t-default0/python-app",
        "    + create Deployment t-default0/python-app",
        "    + create Pod t-default0/python-app-pre-sync (PreSync hook)",
        "    + create Pod t-default0/python-app-post-sync (PostSync hook)",
        "",
        "Plan: 5 to create, 0 to update, 0 to delete, 0 unchanged.",
    ]

    applied = _run(repo, "apply", "prod", "--timeout", APPLY_TIMEOUT)

    # How often a rollout is seen in progress depends on its speed: those rows are checked, not counted.
    rollout = re.compile(r"HH:MM:SS  Deployment  python-app(-prod)?  +Synced     Progressing  \S.*")
    progress = normal(applied.stderr)
    hooks = [
        "HH:MM:SS  Pod         python-a…{}  Pending    Progressing  pending",
        "HH:MM:SS  Pod         python-a…{}  Running    Progressing  running",
        "HH:MM:SS  Pod         python-a…{}  Succeeded  Healthy      completed",
        "HH:MM:SS  Pod         python-a…{}  Deleted    Healthy      hook pod deleted by its policy",
    ]
    pre, post = [h.format("re-sync") for h in hooks], [h.format("st-sync") for h in hooks]
    assert [line for line in progress if not rollout.fullmatch(line)] == [
        "TIME      KIND        NAME              STATUS     HEALTH       MESSAGE",
        "── default",
        *pre,
        "HH:MM:SS  Deployment  python-app        Synced     Healthy      1/1 available",
        *post,
        "── prod",
        *pre,
        "HH:MM:SS  Deployment  python-app-prod   Synced     Healthy      3/3 available",
        *post,
    ], applied.stderr
    assert normal(applied.stdout) == [
        "Environment default  (context <ctx>)",
        "  APP         RELEASE     OUTCOME  REV  HEALTH   MESSAGE",
        "  python-app  python-app  synced     1  Healthy  5 resources healthy",
        "  synced to main (<sha-7>) in N.Ns: 1 synced, 0 unchanged, 0 failed; Healthy",
        "",
        "Environment prod  (context <ctx>)",
        "  gate clean-tree: pass the files involved are committed",
        "  gate upstream-artifact: pass default runs artifact <art>",
        "  gate upstream-health: pass default is Healthy",
        "  APP         RELEASE          OUTCOME  REV  HEALTH   MESSAGE",
        "  python-app  python-app-prod  synced     1  Healthy  5 resources healthy",
        "  synced to main (<sha-7>) in N.Ns: 1 synced, 0 unchanged, 0 failed; Healthy",
    ]

    assert normal(_run(repo, "status").stdout) == [
        "Git revision <sha>",
        "",
        "ENV      APP         SYNC    HEALTH   PROMOTED  REV  MESSAGE",
        "default  python-app  Synced  Healthy  <sha-7>     1  5 resources healthy",
        "prod     python-app  Synced  Healthy  <sha-7>     1  5 resources healthy",
    ]
    assert normal(_run(repo, "history", "prod").stdout) == [
        "APP         REV  UPDATED           STATUS    CHART             GIT      ACTION",
        "python-app    1  YYYY-MM-DD HH:MM  deployed  python-app-0.1.0  <sha-7>  sync",
    ]
    assert normal(_run(repo, "plan", "prod").stdout) == [
        "Revision <sha>",
        "",
        "Environment default  (context <ctx>)",
        "  python-app: release python-app in t-default0, chart python-app-0.1.0",
        "    revision 1, deployed",
        "    no changes (5 unchanged)",
        "",
        "Environment prod  (context <ctx>)",
        "  python-app: release python-app-prod in t-prod0000, chart python-app-0.1.0",
        "    revision 1, deployed",
        "    no changes (5 unchanged)",
        "",
        "No changes. Live matches Git: 10 unchanged.",
    ]
    wide = normal(expect(cli(repo, "status", "-o", "wide", env=COLUMNS), 0, "status -o wide").stdout)
    assert wide[2:] == [
        "ENV      APP         RELEASE          NAMESPACE   SYNC    HEALTH   PROMOTED      REV  MESSAGE",
        "default  python-app  python-app       t-default0  Synced  Healthy  <sha-twelve>    1  5 resources healthy",
        "prod     python-app  python-app-prod  t-prod0000  Synced  Healthy  <sha-twelve>    1  5 resources healthy",
    ]


def test_a_changed_field_is_a_line_of_its_own(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)
    _run(repo, "apply", "default", "--timeout", APPLY_TIMEOUT)
    edit_env(repo, "default", values={**env_values(repo, "default"), "replicaCount": 2, "image": {"tag": "1.1.0"}})
    commit(repo, "default: two replicas of 1.1.0")

    plan = _normal(_run(repo, "plan", "default").stdout, default_ns, prod_ns)

    assert plan == [
        "Revision <sha>",
        "",
        "Environment default  (context <ctx>)",
        "  python-app: release python-app in t-default0, chart python-app-0.1.0",
        "    revision 1, deployed",
        "    ~ update Deployment t-default0/python-app",
        "        ~ spec.replicas: 1 → 2",
        "        ~ spec.template.spec.containers[name=app].image:",
        "            registry.local/python-app:1.0.0 → registry.local/python-app:1.1.0",
        "    + create Pod t-default0/python-app-pre-sync (PreSync hook)",
        "    + create Pod t-default0/python-app-post-sync (PostSync hook)",
        "    4 unchanged",
        "",
        "Plan: 0 to create, 1 to update, 0 to delete, 4 unchanged.",
    ]
    assert max(len(line) for line in plan) <= 80
