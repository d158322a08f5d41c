"""The command line's options and help, without a cluster: global options are taken before or after the
command (as kubectl and helm take them), and every command's `--help` says what it does, shows examples,
the exit codes and the format of durations, within 80 columns."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest

from promote import engine
from promote.cli import main
from promote.errors import ConfigError
from tests.support.cli import cli, strip_ansi
from tests.support.repo import make_repo

COMMANDS = sorted(main.commands)
DURATION_OPTIONS = {
    "apply": ["--timeout", "--lock-timeout", "--lock-ttl"],
    "rollback": ["--timeout", "--lock-timeout"],
    "watch": ["--interval", "--duration"],
}


def _help(*args: str) -> str:
    result = click.testing.CliRunner().invoke(main, [*args, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


# --- global options anywhere -----------------------------------------------------------------------


class _Captured(ConfigError):
    """Raised by the stand-in engine once it has the options it was called with."""


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Options the engine's plan is called with; the stand-in then stops the command (exit 1)."""
    seen: list[Any] = []

    def plan(opts: Any, env: str) -> None:
        seen.append(opts)
        raise _Captured("captured")

    monkeypatch.setattr(engine, "plan", plan)
    return seen


def test_global_options_after_the_command_are_taken_as_before_it(tmp_path: Path, captured: list[Any]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    given = ["-C", str(tmp_path), "--context", "ci", "--kubeconfig", str(kubeconfig), "--qps", "7"]
    runner = click.testing.CliRunner()

    before = runner.invoke(main, [*given, "plan", "prod"], catch_exceptions=False)
    after = runner.invoke(main, ["plan", "prod", *given], catch_exceptions=False)
    mixed = runner.invoke(main, ["--context", "first", "plan", "--context", "ci", "prod", *given[:2]])

    assert before.exit_code == after.exit_code == mixed.exit_code == 1
    assert "captured" in after.stderr and "No such option" not in after.stderr
    b, a, m = captured
    assert (a.root, a.context, a.kubeconfig, a.qps) == (tmp_path, "ci", str(kubeconfig), 7.0)
    assert (b.root, b.context, b.kubeconfig, b.qps) == (a.root, a.context, a.kubeconfig, a.qps)
    assert (m.root, m.context, m.kubeconfig, m.qps) == (tmp_path, "ci", None, 500.0)  # the later one wins


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_every_global_option(command: str) -> None:
    groups = {p.name for p in main.params if isinstance(p, click.Option)} - {"version", "help"}
    own = {p.name for p in main.commands[command].params}
    assert groups <= own, f"{command} lacks {groups - own}"


def test_debug_and_no_color_after_the_command(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "t-unused-a", "t-unused-b")
    runner = click.testing.CliRunner()

    debug = runner.invoke(main, ["-C", str(repo), "plan", "nosuch", "--debug"], catch_exceptions=False)
    coloured = runner.invoke(main, ["-C", str(repo), "plan", "nosuch"], color=True, catch_exceptions=False)
    plain = runner.invoke(main, ["-C", str(repo), "plan", "nosuch", "--no-color"], color=True, catch_exceptions=False)

    assert debug.exit_code == coloured.exit_code == plain.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "\x1b[" in coloured.stderr
    assert "\x1b[" not in plain.stderr
    assert plain.stderr == strip_ansi(coloured.stderr)


def test_a_bad_global_option_after_the_command_is_bad_input(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "t-unused-a", "t-unused-b")

    missing = cli(repo, "plan", "default", "--kubeconfig", "/nonexistent/kubeconfig")
    qps = cli(repo, "status", "--qps", "0")

    assert missing.exit_code == qps.exit_code == 1
    assert missing.stderr.startswith("Error: ") and "/nonexistent/kubeconfig" in missing.stderr
    assert "Invalid value for '--qps'" in qps.stderr
    assert "Traceback" not in missing.output + qps.output


# --- help ------------------------------------------------------------------------------------------


def test_the_command_list_reads_as_one_summary_per_command() -> None:
    text = _help()
    listed = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0].splitlines()

    assert [line.split()[0] for line in listed] == COMMANDS
    for line in listed:
        summary = line.split(None, 1)[1]
        assert summary[0].isupper() and summary.endswith("."), line  # a whole sentence, never cut with "..."
        assert not summary.endswith("..."), line
    assert re.search(r"^  status +Show sync and health of every release\.$", text, re.M), text
    assert "Global options may come before or after the command." in text


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_a_summary_examples_and_exit_codes(command: str) -> None:
    text = _help(command)
    lines = text.splitlines()
    summary = lines[2].strip()
    examples = text.split("Examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()

    assert summary == main.commands[command].get_short_help_str(limit=200), summary
    assert len(summary) <= 60 and summary.endswith("."), summary
    assert 2 <= len(examples) <= 3, examples
    assert examples[0].split()[:2] == ["promote", command], examples
    assert all(e.split()[0] == "promote" for e in examples), examples
    assert "Exit codes (identical for every command):" in text
    for code in ("0  success", "1  error", "2  success with changes pending", "3  blocked by a gate"):
        assert code in text, text
    assert "Global options (before or after the command):" in text
    assert max(len(line) for line in lines) <= 80


@pytest.mark.parametrize("command", sorted(DURATION_OPTIONS))
def test_durations_show_their_format(command: str) -> None:
    text = _help(command)
    for option in DURATION_OPTIONS[command]:
        assert re.search(rf"{option} DURATION\b", text), (option, text)
    assert "Durations (DURATION): a number and a unit, summed: 500ms, 30s, 5m, 1h30m." in text


def test_revision_says_what_each_command_does_with_it() -> None:
    def revision(command: str) -> str:
        text = _help(command)
        return " ".join(text.split("--revision REF", 1)[1].split("--app", 1)[0].split())

    assert revision("validate") == "Validate this Git commit, branch or tag (default: the working tree)."
    assert revision("plan") == "Plan this Git commit, branch or tag (default: the working tree)."
    assert revision("apply").startswith("Apply this Git commit")
    assert revision("status").startswith("Compare with this Git commit")
