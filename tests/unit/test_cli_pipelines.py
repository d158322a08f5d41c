"""The pipeline examples and the pre-commit hook call the promote that exists: every `promote ...` command
line in them parses against the real click command tree, so renaming a command or a flag breaks this test.

Also checked: the flows the examples promise (validate and plan on merge requests, gate/apply of
default, a saved plan of prod applied behind a manual approval) and the explicit handling of exit
codes 2 (changes) and 3 (blocked).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from promote.cli import main
from tests.support.paths import REPO_ROOT

GITHUB = REPO_ROOT / "docs" / "pipelines" / "github-actions.yml"
GITLAB = REPO_ROOT / "docs" / "pipelines" / "gitlab-ci.yml"
HOOKS = REPO_ROOT / ".pre-commit-hooks.yaml"
PRE_COMMIT_EXAMPLE = REPO_ROOT / "docs" / "pipelines" / "pre-commit-config.example.yaml"
ENVIRONMENTS = ("default", "prod")  # the chain of the repo's own environments/

# `promote` where a shell expects a command: line start, after && || ; ! ( $( `if`/`then`/`do`.
COMMAND = re.compile(r"(?:^|&&|\|\||[;!(]|\$\(|\b(?:if|then|do|else)\b)\s*promote\s+(?P<args>[^\n]*)")
# A file-descriptor redirection such as 2> (the digit is not an argument).
FD_REDIRECT = re.compile(r"(?<=\s)[0-9]+(?=[<>])")


def load(path: Path) -> Any:
    """A YAML file, as PyYAML reads it (GitHub's `on:` key becomes True)."""
    return yaml.safe_load(path.read_text())


def _logical_lines(script: str) -> Iterator[str]:
    """Script lines with backslash continuations joined."""
    buf = ""
    for line in script.splitlines():
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield buf + line
        buf = ""
    if buf:
        yield buf


def promote_commands(script: str) -> list[list[str]]:
    """Every `promote ...` invocation of a shell script, as argv after `promote`."""
    found = []
    for line in _logical_lines(script):
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        for m in COMMAND.finditer(code):
            lexer = shlex.shlex(FD_REDIRECT.sub("", m.group("args")), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = []
            # The command's own words end at the first operator: redirection, pipe, list, subshell end.
            for word in lexer:
                if set(word) <= set("();<>|&"):
                    break
                words.append(word)
            found.append(words)
    return found


def github_scripts() -> list[tuple[str, str]]:
    """(job/step, run script) of every step of the GitHub workflow."""
    doc = load(GITHUB)
    return [
        (f"{job}/{step.get('name') or step.get('uses')}", step["run"])
        for job, spec in doc["jobs"].items()
        for step in spec.get("steps", [])
        if "run" in step
    ]


def gitlab_scripts() -> list[tuple[str, str]]:
    """(job/section, script) of every job of the GitLab file, before_script included."""
    doc = load(GITLAB)
    out: list[tuple[str, str]] = []
    for job, spec in doc.items():
        if not isinstance(spec, dict):
            continue
        for key in ("before_script", "script", "after_script"):
            lines = spec.get(key) or []
            out.extend((f"{job}/{key}", line) for line in ([lines] if isinstance(lines, str) else lines))
    return out


def hook_scripts() -> list[tuple[str, str]]:
    return [(f"pre-commit/{h['id']}", h["entry"]) for h in load(HOOKS)]


def all_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every promote command in the pipelines and the hooks."""
    out: list[tuple[str, list[str]]] = []
    for where, script in github_scripts() + gitlab_scripts() + hook_scripts():
        out.extend((where, argv) for argv in promote_commands(script))
    return out


def check(argv: list[str]) -> tuple[str, click.Context]:
    """Parse argv exactly as `promote` would (global options, command, its options); the command's context."""
    rest = list(argv)
    globals_ = {opt: p for p in main.params for opt in [*p.opts, *p.secondary_opts]}
    while rest and rest[0].startswith("-"):
        name = rest.pop(0).split("=", 1)[0]
        assert name in globals_, f"promote has no global option {name}"
        param = globals_[name]
        if isinstance(param, click.Option) and not param.is_flag and "=" not in name:
            rest.pop(0)
    assert rest, f"no command in {argv}"
    name = rest.pop(0)
    assert name in main.commands, f"promote has no command {name!r}; it has {sorted(main.commands)}"
    command = main.commands[name]
    parent = click.Context(main, info_name="promote")
    try:
        ctx = command.make_context(name, rest, parent=parent)
    except click.UsageError as e:
        raise AssertionError(f"promote {' '.join(argv)}: {e.format_message()}") from e
    env = ctx.params.get("env")
    if env is not None and not str(env).startswith("$"):
        assert env in ENVIRONMENTS, f"promote {' '.join(argv)}: no environment {env!r} in the chain"
    return name, ctx


def options_used(ctx: click.Context, argv: list[str]) -> set[str]:
    """The long names of the options argv sets."""
    opts = {o for p in ctx.command.params for o in p.opts}
    used = set()
    for tok in argv:
        name = tok.split("=", 1)[0]
        if name in opts:
            (param,) = [p for p in ctx.command.params if name in p.opts]
            used.add(max(param.opts, key=len))
    return used


# --- every command line parses ---------------------------------------------------------------------


def test_the_examples_are_found() -> None:
    commands = all_commands()
    wheres = {w.split("/")[0] for w, _ in commands}

    assert len(commands) >= 15, commands
    assert {"plan", "apply-default", "plan-prod", "apply-prod"} <= wheres  # GitHub jobs
    assert {"validate", "plan:merge-request", "apply:default", "plan:prod", "apply:prod"} <= wheres  # GitLab
    assert "pre-commit" in wheres


@pytest.mark.parametrize(
    ("where", "argv"), all_commands(), ids=[f"{w}: promote {' '.join(a)}" for w, a in all_commands()]
)
def test_every_promote_command_exists_in_the_click_tree(where: str, argv: list[str]) -> None:
    check(argv)


def test_the_command_extractor_sees_what_a_shell_runs() -> None:
    script = (
        "code=0\n"
        "promote plan prod -o json --detailed-exitcode > plan.json || code=$?\n"
        'if ! promote gate prod; then echo "### promote plan prod"; fi\n'
        "promote apply prod \\\n  --plan plan.json -o json\n"
        "echo promote is great  # promote plan nothing\n"
        "x=$(promote history prod -o json)\n"
    )

    assert promote_commands(script) == [
        ["plan", "prod", "-o", "json", "--detailed-exitcode"],
        ["gate", "prod"],
        ["apply", "prod", "--plan", "plan.json", "-o", "json"],
        ["history", "prod", "-o", "json"],
    ]


def test_a_renamed_flag_would_fail() -> None:
    with pytest.raises(AssertionError, match="no-such-flag"):
        check(["plan", "prod", "--no-such-flag"])
    with pytest.raises(AssertionError, match="no command"):
        check(["plann", "prod"])
    with pytest.raises(AssertionError, match="no environment"):
        check(["apply", "staging"])


# --- the flows the examples promise ----------------------------------------------------------------


def _used(commands: list[tuple[str, list[str]]], job_prefix: str) -> list[tuple[str, set[str], list[str]]]:
    out = []
    for where, argv in commands:
        if where.startswith(job_prefix + "/"):
            name, ctx = check(argv)
            out.append((name, options_used(ctx, argv), argv))
    return out


def _flows(commands: list[tuple[str, list[str]]], mr_job: str, jobs: dict[str, str]) -> None:
    mr = _used(commands, mr_job)
    assert any(name == "plan" and "--detailed-exitcode" in opts and argv[1] == "prod" for name, opts, argv in mr), mr
    assert any(name == "plan" and "--output" in opts for name, opts, _ in mr), "the merge request plan is JSON"
    default = _used(commands, jobs["apply-default"])
    assert [(n, a[1]) for n, _, a in default] == [("gate", "default"), ("apply", "default")], default
    plan_prod = _used(commands, jobs["plan-prod"])
    assert any(n == "plan" and "--out" in o and a[1] == "prod" for n, o, a in plan_prod), plan_prod
    apply_prod = _used(commands, jobs["apply-prod"])
    assert [(n, a[1]) for n, _, a in apply_prod] == [("gate", "prod"), ("apply", "prod")], apply_prod
    assert "--plan" in apply_prod[-1][1], "prod applies the saved, approved plan"


def test_github_flows() -> None:
    doc = load(GITHUB)
    on = doc.get("on", doc.get(True))
    commands = [(w, a) for w, a in all_commands() if w.split("/")[0] in doc["jobs"]]

    assert "pull_request" in on
    assert on["push"]["branches"] == ["main"]
    assert "pull_request" in doc["jobs"]["plan"]["if"]
    assert doc["jobs"]["plan"]["permissions"]["pull-requests"] == "write"
    assert any("gh pr comment" in s for w, s in github_scripts() if w.startswith("plan/"))
    _flows(
        commands,
        "plan",
        {"apply-default": "apply-default", "plan-prod": "plan-prod", "apply-prod": "apply-prod"},
    )
    assert any(w.startswith("plan/") and a == ["validate"] for w, a in commands)
    # Order and approval: prod after default, behind the `production` environment's reviewers.
    assert doc["jobs"]["plan-prod"]["needs"] == "apply-default"
    assert doc["jobs"]["apply-prod"]["needs"] == "plan-prod"
    assert doc["jobs"]["apply-prod"]["environment"] == "production"
    steps = doc["jobs"]["apply-prod"]["steps"]
    assert any(s.get("uses", "").startswith("actions/download-artifact") for s in steps)
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in doc["jobs"]["plan-prod"]["steps"])


def test_gitlab_flows() -> None:
    doc = load(GITLAB)
    commands = [(w, a) for w, a in all_commands() if w.split("/")[0] in doc]

    _flows(
        commands,
        "plan:merge-request",
        {"apply-default": "apply:default", "plan-prod": "plan:prod", "apply-prod": "apply:prod"},
    )
    assert any(w.startswith("validate/") and a == ["validate"] for w, a in commands)
    mr_rules = doc[".on-merge-request"]["rules"]
    assert any('"merge_request_event"' in r["if"] for r in mr_rules)
    assert doc["plan:merge-request"]["extends"] == ".on-merge-request"
    assert any("merge_requests/$CI_MERGE_REQUEST_IID/notes" in s for s in doc["plan:merge-request"]["script"])
    assert "plan.json" in doc["plan:merge-request"]["artifacts"]["paths"]
    prod = doc["apply:prod"]
    assert prod["environment"]["name"] == "production"
    assert all(r.get("when") == "manual" for r in prod["rules"])
    assert prod["allow_failure"] is False, "a blocking manual job: the pipeline waits for the approval"
    assert prod["needs"] == ["plan:prod"]
    assert "plan.json" in doc["plan:prod"]["artifacts"]["paths"]
    assert doc["plan:prod"]["needs"] == ["apply:default"]
    assert doc["apply:default"]["allow_failure"]["exit_codes"] == [3]
    assert list(doc["stages"]).index("apply-default") < list(doc["stages"]).index("apply-prod")


@pytest.mark.parametrize("source", ["github", "gitlab"])
def test_exit_codes_2_and_3_are_handled_explicitly(source: str) -> None:
    scripts = github_scripts() if source == "github" else _gitlab_job_scripts()
    for where, script in scripts:
        for argv in promote_commands(script):
            name, ctx = check(argv)
            may_exit_2 = "--detailed-exitcode" in options_used(ctx, argv)
            if may_exit_2:
                # The code is captured (so the shell's -e does not fail the job on 2) and 2 is a success.
                assert "|| code=$?" in script, f"{where}: exit 2 would fail the job"
                assert re.search(r"\b2\)", script), f"{where}: exit 2 is not handled"
            if name in ("apply", "gate") and "|| code=$?" in script:
                assert re.search(r'"\$code" -eq 3|\b3\)', script), f"{where}: exit 3 (blocked) is not handled"


def _gitlab_job_scripts() -> list[tuple[str, str]]:
    """Each GitLab job's script as one shell script (GitLab runs the lines in one shell)."""
    doc = load(GITLAB)
    return [
        (job, "\n".join(spec["script"]))
        for job, spec in doc.items()
        if isinstance(spec, dict) and isinstance(spec.get("script"), list)
    ]


# --- pre-commit --------------------------------------------------------------------------------------


def test_pre_commit_hook_definition() -> None:
    (hook,) = load(HOOKS)

    assert hook["id"] == "promote-validate"
    assert hook["entry"] == "promote validate"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    assert hook["files"] == "^(environments|schemas|charts)/"
    pattern = re.compile(hook["files"])
    assert pattern.search("environments/python-app.yaml")
    assert pattern.search("charts/python-app/values.yaml")
    assert pattern.search("schemas/prod.policy.schema.json")
    assert not pattern.search("promote/cli.py")
    assert not pattern.search("docs/environments/x.yaml")


def test_pre_commit_example_uses_the_hook() -> None:
    ids = {h["id"] for h in load(HOOKS)}
    example = load(PRE_COMMIT_EXAMPLE)

    used = [h["id"] for r in example["repos"] for h in r["hooks"]]
    assert used and set(used) <= ids
    assert all({"repo", "rev", "hooks"} <= set(r) for r in example["repos"])
