"""Source: reading the working tree or a commit, and `-dirty` only for files a plan actually read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from promote.errors import SourceError
from promote.source import Source
from tests.support.repo import commit, git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "environments").mkdir(parents=True)
    (root / "charts" / "app" / "templates").mkdir(parents=True)
    (root / "environments" / "web.yaml").write_text("app: web\n")
    (root / "environments" / "api.yaml").write_text("app: api\n")
    (root / "charts" / "app" / "Chart.yaml").write_text("name: app\n")
    (root / "charts" / "app" / "templates" / "cm.yaml").write_text("kind: ConfigMap\n")
    (root / "README.md").write_text("readme\n")
    git(root, "init", "-q", "-b", "main")
    commit(root, "first")
    return root


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def test_clean_working_tree(repo: Path) -> None:
    src = Source(repo)
    assert src.read_text("environments/web.yaml") == "app: web\n"
    assert src.list_dir("environments") == ["api.yaml", "web.yaml"]
    assert src.is_dir("charts/app") and src.exists("charts/app/Chart.yaml")
    assert not src.exists("charts/none")
    assert src.revision() == head(repo)
    assert src.short_sha() == head(repo)[:7]
    assert src.dirty_paths() == []


def test_modified_file_that_was_read_is_dirty(repo: Path) -> None:
    src = Source(repo)
    src.read_text("environments/web.yaml")
    (repo / "environments" / "web.yaml").write_text("app: web\nvalues: {a: 1}\n")
    assert src.revision() == head(repo) + "-dirty"
    assert src.dirty_paths() == ["environments/web.yaml"]


def test_changes_to_files_not_read_are_not_dirty(repo: Path) -> None:
    src = Source(repo)
    src.read_text("environments/web.yaml")
    (repo / "README.md").write_text("changed\n")
    (repo / "notes.txt").write_text("untracked\n")
    assert src.revision() == head(repo)


def test_untracked_file_inside_a_read_chart_is_dirty(repo: Path) -> None:
    src = Source(repo)
    src.local_path("charts/app")
    (repo / "charts" / "app" / "templates" / "new.yaml").write_text("kind: Secret\n")
    assert src.dirty_paths() == ["charts/app/templates/new.yaml"]
    assert src.revision().endswith("-dirty")


def test_deleting_a_definition_in_a_listed_directory_is_dirty(repo: Path) -> None:
    # The plan would silently lose the api app; that must not pass for a clean commit.
    (repo / "environments" / "api.yaml").unlink()
    src = Source(repo)
    for name in src.list_dir("environments"):
        src.read_text(f"environments/{name}")
    assert src.revision() == head(repo) + "-dirty"


def test_reading_a_revision_ignores_the_working_tree(repo: Path) -> None:
    first = head(repo)
    (repo / "environments" / "web.yaml").write_text("app: web2\n")
    (repo / "charts" / "app" / "templates" / "cm.yaml").unlink()
    second = commit(repo, "second")
    (repo / "environments" / "web.yaml").write_text("uncommitted\n")

    with Source(repo, "HEAD~1") as src:
        assert src.read_text("environments/web.yaml") == "app: web\n"
        assert src.revision() == first
        assert src.list_dir("charts/app/templates") == ["cm.yaml"]
        chart = src.local_path("charts/app")
        assert (chart / "templates" / "cm.yaml").read_text() == "kind: ConfigMap\n"
        assert chart != repo / "charts" / "app"
        assert src.dirty_paths() == []
    assert not chart.exists(), "close() removes the materialised chart"
    assert (repo / "environments" / "web.yaml").read_text() == "uncommitted\n"
    assert not (repo / "charts" / "app" / "templates" / "cm.yaml").exists()
    assert Source(repo, "main").revision() == second


def test_revision_errors(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot resolve Git revision 'nope'"):
        Source(repo, "nope")
    src = Source(repo, "HEAD")
    with pytest.raises(SourceError, match="no such file at revision HEAD"):
        src.read_text("environments/none.yaml")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert Source(plain).revision() == "untracked"
    with pytest.raises(SourceError, match="is not a Git repository"):
        Source(plain, "HEAD")


def test_root_in_a_subdirectory_of_the_repository(repo: Path) -> None:
    (repo / "deploy").mkdir()
    git(repo, "mv", "environments", "charts", "deploy/")
    sha = commit(repo, "move into deploy/")
    src = Source(repo / "deploy")
    assert src.read_text("environments/web.yaml") == "app: web\n"
    assert src.revision() == sha
    (repo / "deploy" / "environments" / "web.yaml").write_text("changed\n")
    assert src.dirty_paths() == ["deploy/environments/web.yaml"]
    with Source(repo / "deploy", "HEAD") as at_commit:
        assert at_commit.read_text("environments/web.yaml") == "app: web\n"
        assert (at_commit.local_path("charts/app") / "Chart.yaml").read_text() == "name: app\n"


def _fresh_python(code: str, cwd: Path) -> str:
    """Run code in a new interpreter (so earlier imports in this test process don't count); its stdout."""
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_the_working_tree_is_read_without_importing_git(repo: Path) -> None:
    # GitPython costs a plan ~50 ms before its first render; only the revision needs it.
    code = (
        "import sys; from pathlib import Path; from promote.source import Source\n"
        "s = Source(Path('.')); s.read_text('environments/web.yaml')\n"
        "print('git' in sys.modules, s.revision())"
    )
    assert _fresh_python(code, repo) == f"False {head(repo)}"


def test_branch_names_the_checkout_and_none_when_detached(repo: Path) -> None:
    assert Source(repo).branch() == "main"
    git(repo, "checkout", "-q", "--detach")
    assert Source(repo).branch() is None


def test_branch_outside_git_is_none(tmp_path: Path) -> None:
    (tmp_path / "environments").mkdir()
    assert Source(tmp_path).branch() is None
    assert Source(tmp_path).revision() == "untracked"
