"""`promote rollback` on the real local control plane: back to the previous promotion, or to a chosen one."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from devcluster.kube import Kube
from tests.support.cli import apply, promote_json
from tests.support.helm import helm_history, record_of
from tests.support.kube import available, deployment, image_of
from tests.support.repo import APP, commit, git, make_repo, set_app_values


def _template(kube: Kube, ns: str) -> dict[str, Any]:
    dep = deployment(kube, ns, APP)
    assert dep is not None
    template: dict[str, Any] = dep["spec"]["template"]
    return template


def _release_tag(repo: Path, tag: str) -> str:
    set_app_values(repo, {"image": {"tag": tag}, "config": {"greeting": f"hello from {tag}"}})
    return commit(repo, f"python-app {tag}")


def test_rollback_to_the_previous_promotion(tmp_path: Path, kube: Kube, namespace: str) -> None:
    repo = make_repo(tmp_path, namespace, f"{namespace}-prod-unused")
    v1 = git(repo, "rev-parse", "HEAD").strip()
    apply(repo, "default", code=0)
    v1_template = _template(kube, namespace)
    _release_tag(repo, "2.0.0")
    apply(repo, "default", code=0)
    assert image_of(deployment(kube, namespace, APP)) == "registry.local/python-app:2.0.0"

    run = promote_json(repo, "rollback", "default", code=0)

    assert run.doc["error"] is None
    assert [(e["name"], e["outcome"]) for e in run.doc["environments"]] == [("default", "rolled-back")]
    assert run.release("default")["outcome"] == "rolled-back"
    assert _template(kube, namespace) == v1_template
    assert image_of(deployment(kube, namespace, APP)) == "registry.local/python-app:1.0.0"
    assert available(deployment(kube, namespace, APP)) == (1, 1)

    revisions = helm_history(namespace, APP)
    assert [(r["revision"], r["status"]) for r in revisions] == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    rec = record_of(revisions[-1])
    assert rec["action"] == "rollback"
    assert rec["revision"] == v1
    assert rec["rolled_back_to"] == 1

    history = promote_json(repo, "history", "default", code=0).doc["history"]
    assert [(h["revision"], h["action"]) for h in history] == [(1, "sync"), (2, "sync"), (3, "rollback")]
    assert history[-1]["gitRevision"] == v1


def test_rollback_to_a_chosen_revision(tmp_path: Path, kube: Kube, namespace: str) -> None:
    repo = make_repo(tmp_path, namespace, f"{namespace}-prod-unused")
    v1 = git(repo, "rev-parse", "HEAD").strip()
    apply(repo, "default", code=0)
    v1_template = _template(kube, namespace)
    v2 = _release_tag(repo, "2.0.0")
    apply(repo, "default", code=0)
    v2_template = _template(kube, namespace)
    _release_tag(repo, "3.0.0")
    apply(repo, "default", code=0)

    to_one = promote_json(repo, "rollback", "default", "--to", "1", code=0)

    assert to_one.release("default")["outcome"] == "rolled-back"
    assert _template(kube, namespace) == v1_template
    assert available(deployment(kube, namespace, APP)) == (1, 1)
    rec = record_of(helm_history(namespace, APP)[-1])
    assert (rec["action"], rec["revision"], rec["rolled_back_to"]) == ("rollback", v1, 1)

    # A Git sha prefix of a promotion works too.
    to_v2 = promote_json(repo, "rollback", "default", "--to", v2[:8], code=0)

    assert to_v2.release("default")["outcome"] == "rolled-back"
    assert _template(kube, namespace) == v2_template
    revisions = helm_history(namespace, APP)
    assert [r["status"] for r in revisions] == ["superseded"] * 4 + ["deployed"]
    rec = record_of(revisions[-1])
    assert (rec["action"], rec["revision"], rec["rolled_back_to"]) == ("rollback", v2, 2)


def test_rollback_to_a_promotion_whose_commit_is_gone_uses_helms_stored_revision(
    tmp_path: Path, kube: Kube, namespace: str
) -> None:
    repo = make_repo(tmp_path, namespace, f"{namespace}-prod-unused")
    base = git(repo, "rev-parse", "HEAD").strip()
    gone = _release_tag(repo, "2.0.0")
    apply(repo, "default", code=0)
    v2_template = _template(kube, namespace)
    # History rewritten: the promoted commit is no longer in the repository.
    git(repo, "reset", "-q", "--hard", base)
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    assert subprocess.run(["git", "cat-file", "-e", gone], cwd=repo, capture_output=True, timeout=60).returncode != 0
    _release_tag(repo, "3.0.0")
    apply(repo, "default", code=0)

    run = promote_json(repo, "rollback", "default", "--to", "1", code=0)

    assert run.release("default")["outcome"] == "rolled-back"
    assert run.release("default")["message"] == "helm rollback to revision 1"
    assert _template(kube, namespace) == v2_template
    assert [r["status"] for r in helm_history(namespace, APP)] == ["superseded", "superseded", "deployed"]
