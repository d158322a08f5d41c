"""The command line (promote.cli) without a cluster: --help lists the exit codes, and bad input or a usage
error exits 1 with one clear message and no traceback (never 2, which means "changes pending"), unless
--debug asks for the traceback. The exit codes of every command on the cluster are in
tests/cluster/test_exitcodes.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import cli
from tests.support.repo import CHART, DEFINITION, make_repo


def test_help_lists_the_exit_codes(tmp_path: Path) -> None:
    result = cli(tmp_path, "--help")

    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Exit codes" in text
    for line in (
        "0 success, nothing to do",
        "1 error: bad input",
        "2 success with changes pending (only with --detailed-exitcode)",
        "3 blocked by a gate or policy",
    ):
        assert line in text, result.stdout


def test_debug_shows_a_traceback_and_only_then(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "t-unused-a", "t-unused-b")

    plain = cli(repo, "plan", "nosuch")
    debug = cli(repo, "--debug", "plan", "nosuch")

    assert plain.exit_code == debug.exit_code == 1
    assert "Traceback" not in plain.output
    assert plain.stderr.strip() == "Error: unknown environment 'nosuch': the chain defines default, prod"
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ConfigError" in debug.stderr
    assert debug.stderr.rstrip().endswith("Error: unknown environment 'nosuch': the chain defines default, prod")


def _break_chart_values(repo: Path) -> list[str]:
    (repo / CHART / "values.yaml").write_text("replicaCount: [\n")
    return ["plan", "default"]


def _break_values_schema(repo: Path) -> list[str]:
    (repo / "schemas" / "python-app.values.schema.json").write_text("{not json")
    return ["validate"]


def _break_definition_yaml(repo: Path) -> list[str]:
    (repo / DEFINITION).write_text("app: [unclosed\n")
    return ["plan", "default"]


def _definition_is_a_list(repo: Path) -> list[str]:
    (repo / DEFINITION).write_text("- just\n- a list\n")
    return ["status"]


def _values_file_is_a_list(repo: Path) -> list[str]:
    (repo / "list.yaml").write_text("- a\n- b\n")
    return ["plan", "default", "-f", str(repo / "list.yaml")]


def _values_file_is_broken(repo: Path) -> list[str]:
    (repo / "bad.yaml").write_text("a: [\n")
    return ["validate", "-f", str(repo / "bad.yaml")]


def _plain(*args: str) -> Callable[[Path], list[str]]:
    return lambda repo: list(args)


BAD_INPUTS: dict[str, Callable[[Path], list[str]]] = {
    "broken chart values.yaml": _break_chart_values,
    "app schema not JSON": _break_values_schema,
    "definition not YAML": _break_definition_yaml,
    "definition is a list": _definition_is_a_list,
    "values file is a list": _values_file_is_a_list,
    "values file not YAML": _values_file_is_broken,
    "missing values file": _plain("plan", "default", "-f", "/nonexistent/values.yaml"),
    "--set without =": _plain("plan", "default", "--set", "replicaCount"),
    "--set with an empty key": _plain("validate", "--set", "=1"),
    "unknown revision": _plain("plan", "default", "--revision", "no-such-ref"),
    "unknown app": _plain("plan", "default", "--app", "no-such-app"),
    "bad duration": _plain("apply", "default", "--timeout", "banana"),
    "negative duration": _plain("apply", "default", "--timeout", "-5s"),
    "bad watch interval": _plain("watch", "default", "--interval", "soon"),
    "unknown kube context": _plain("--context", "no-such-context", "plan", "default"),
    "missing kubeconfig": _plain("--kubeconfig", "/nonexistent/kubeconfig", "plan", "default"),
    "not a repository": _plain("-C", "/nonexistent/dir", "plan", "default"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_1_with_one_clear_message_and_no_traceback(tmp_path: Path, case: str) -> None:
    repo = make_repo(tmp_path, "t-unused-a", "t-unused-b")
    args = BAD_INPUTS[case](repo)

    for fmt in ("table", "json"):
        result = cli(repo, *args, "-o", fmt)
        assert result.exit_code == 1, f"{case}: exit {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output, result.output
        # Bad input is something promote expects: a message saying what was wrong, not "unexpected SomeError".
        assert "unexpected" not in result.output, result.output
        if fmt == "json":
            assert json.loads(result.stdout)["exitCode"] == 1
        else:
            assert result.stderr.startswith("Error: "), result.output


USAGE_ERRORS = [
    ["plan"],
    ["plan", "prod", "-o", "xml"],
    ["plan", "prod", "--no-such-option"],
    ["no-such-command"],
    ["watch", "default", "--max-iterations", "0"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=[" ".join(a) for a in USAGE_ERRORS])
def test_a_usage_error_is_bad_input_exit_1_never_2(tmp_path: Path, args: list[str]) -> None:
    # 2 means "changes pending": a pipeline that treats 2 as success must not pass on a typo.
    repo = make_repo(tmp_path, "t-unused-a", "t-unused-b")

    result = cli(repo, *args)

    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output
    assert "Error:" in result.stderr
