"""Shell completion through click's protocol, with the installed `promote` console script in a repo of definitions:
commands, environment names (from the chain) and app names (from the definitions) are offered.

No cluster is needed: completion reads definitions only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from promote.cli import main
from tests.support.repo import APP, definition, make_repo

# Environment names unlike the repo's own, so nothing can be hard-coded.
CHAIN = ["qa", "live"]
SECOND_APP = "worker"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo whose chain is qa → live, with two apps."""
    repo = make_repo(tmp_path_factory.mktemp("completion"), "t-unused-a", "t-unused-b")
    for app, file in ((APP, "python-app.yaml"), (SECOND_APP, f"{SECOND_APP}.yaml")):
        doc = definition("t-unused-a", "t-unused-b")
        doc["app"] = app
        for env, name in zip(doc["environments"], CHAIN, strict=True):
            env["name"] = name
        (repo / "environments" / file).write_text(yaml.safe_dump(doc, sort_keys=False))
    return repo


def complete(cwd: Path, line: str) -> list[str]:
    """What bash completion offers for `line` (the word under the cursor is the last, possibly empty)."""
    # The console script pip installed beside this Python (a venv's bin/ need not be on PATH).
    exe = shutil.which("promote", path=str(Path(sys.executable).parent)) or shutil.which("promote")
    assert exe, "the promote console script is not installed"
    words = line.split(" ")
    env = {
        **os.environ,
        "_PROMOTE_COMPLETE": "bash_complete",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
    }
    out = subprocess.run([exe], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    # bash_complete prints one "type,value" per line.
    return [ln.split(",", 1)[1] for ln in out.stdout.splitlines() if ln.startswith("plain,")]


def commands_with(param_name: str) -> list[str]:
    """Commands of the real click tree having a parameter of that name (the ENV argument, the --app option)."""
    return sorted(n for n, c in main.commands.items() if any(p.name == param_name for p in c.params))


def commands_with_option(opt: str) -> list[str]:
    """Commands of the real click tree accepting an option flag such as --app."""
    return sorted(
        n for n, c in main.commands.items() if any(isinstance(p, click.Option) and opt in p.opts for p in c.params)
    )


def test_commands_are_offered(repo: Path) -> None:
    offered = complete(repo, "promote ")

    assert set(offered) == set(main.commands)
    assert {"validate", "plan", "apply", "status", "history", "rollback", "diff"} <= set(offered)


def test_a_prefix_narrows_the_commands(repo: Path) -> None:
    assert complete(repo, "promote pl") == ["plan"]


@pytest.mark.parametrize("command", commands_with("env"))
def test_environment_names_are_offered(repo: Path, command: str) -> None:
    assert complete(repo, f"promote {command} ") == CHAIN


def test_a_prefix_narrows_the_environments(repo: Path) -> None:
    assert complete(repo, "promote plan l") == ["live"]
    assert complete(repo, "promote plan x") == []


@pytest.mark.parametrize("command", commands_with_option("--app"))
def test_app_names_are_offered(repo: Path, command: str) -> None:
    assert complete(repo, f"promote {command} live --app ") == [APP, SECOND_APP]


def test_a_prefix_narrows_the_apps(repo: Path) -> None:
    assert complete(repo, "promote plan live --app w") == [SECOND_APP]


def test_the_repository_given_with_C_is_the_one_completed(repo: Path, tmp_path: Path) -> None:
    # From outside the repo, as `promote -C path/to/repo plan <TAB>` is typed.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    assert complete(elsewhere, f"promote -C {repo} plan ") == CHAIN
    assert complete(elsewhere, f"promote -C {repo} plan live --app ") == [APP, SECOND_APP]


def test_outside_a_repository_nothing_is_offered_and_nothing_breaks(tmp_path: Path) -> None:
    assert complete(tmp_path, "promote plan ") == []
    assert complete(tmp_path, "promote plan live --app ") == []
