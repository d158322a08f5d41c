"""The command line: parse, call the engine once, hand the result to a view, exit with the contract code.

No helm or Kubernetes calls happen here. Heavy imports are deferred into command bodies so that
`promote --help` stays instant.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from promote.errors import ConfigError, ExitCode, Interrupted, exit_code_for

EXIT_CODES = (
    ("0", "success, nothing to do"),
    ("1", "error: bad input, cluster unreachable, helm failure, failed rollout"),
    ("2", "success with changes pending (only with --detailed-exitcode)"),
    ("3", "blocked by a gate or policy"),
)
DURATIONS = "a number and a unit, summed: 500ms, 30s, 5m, 1h30m"


def epilog(*examples: str, durations: bool = False, notes: tuple[str, ...] = ()) -> str:
    """The end of every `--help`: examples, the duration format where one is taken, and the exit codes.

    Each paragraph starts with click's `\\b` marker, so that its lines are kept as written.
    """
    parts = []
    if examples:
        parts.append("\b\nExamples:\n" + "\n".join(f"  {e}" for e in examples))
    if durations:
        parts.append(f"\b\nDurations (DURATION): {DURATIONS}.")
    parts.extend(f"\b\n{note}" for note in notes)
    codes = "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES)
    parts.append(f"\b\nExit codes (identical for every command):\n{codes}")
    return "\n\n".join(parts)


F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    """Global options, shared by every command."""

    debug: bool
    root: Path
    kubeconfig: str | None
    context: str | None
    color: bool | None
    qps: float = 500.0
    fmt: str = "table"
    stream: bool = False  # the command prints a document per event (watch), not one in all

    def view(self, *, err: bool = False) -> Any:
        """The view for this run's output format, fitted to stdout (or stderr, where progress goes)."""
        from promote.views import OutputFormat, View
        from promote.views.layout import layout_for

        layout = layout_for(sys.stderr if err else sys.stdout, wide=self.fmt == "wide")
        return View(OutputFormat(self.fmt), stream=self.stream, layout=layout)

    def progress(self) -> Callable[[Any], None]:
        """Where apply and rollback report progress: a table on stderr, whatever the output format."""
        table = self.view(err=True).progress()

        def emit(event: Any) -> None:
            for line in table.event(event):
                self.echo(line, err=True)

        return emit

    def echo(self, text: str, *, err: bool = False) -> None:
        """Print, stripping colour when asked or when not on a terminal, and with no credential in it:
        every byte promote prints passes here (views, errors, tracebacks, library log records)."""
        from promote import redact

        click.echo(redact.scrub(text), err=err, color=self.color)

    def abort(self, error: BaseException) -> NoReturn:
        """Every failing exit goes through here: one paragraph, the contract's code, a traceback only in debug."""
        code = exit_code_for(error)
        if self.debug:
            self.echo("".join(traceback.format_exception(error)).rstrip("\n"), err=True)
        message = str(error) if str(error) else type(error).__name__
        if not isinstance(error, Exception) or type(error).__module__.split(".")[0] != "promote":
            message = f"unexpected {type(error).__name__}: {message} (run with --debug for a traceback)"
        view = self.view()
        text = view.error(message, int(code))
        # Machine formats carry the error on stdout so pipelines parse one document; people read stderr.
        self.echo(text, err=self.fmt in ("table", "wide"))
        sys.exit(int(code))

    def run(self, fn: Callable[[], int]) -> NoReturn:
        """Run a command body, routing every exception through abort."""
        import signal

        def terminate(signum: int, frame: object) -> None:
            raise KeyboardInterrupt  # SIGTERM (a CI job cancelled) is handled as Ctrl-C is

        signal.signal(signal.SIGTERM, terminate)
        try:
            code = fn()
        except click.exceptions.Exit:
            raise
        except KeyboardInterrupt:
            self.abort(Interrupted("interrupted"))
        except Exception as e:
            self.abort(e)
        sys.exit(code)


def on_conflict_option(f: F) -> F:
    """--on-conflict take|stop: what apply does with fields another field manager owns (Helm 4)."""
    return click.option(
        "--on-conflict",
        type=click.Choice(["take", "stop"]),
        default="take",
        show_default=True,
        help="Helm 4 server-side apply: take over fields another field manager owns (Git wins), "
        "or stop before changing anything.",
    )(f)


def sync_options(f: F) -> F:
    """--timeout, --lock-timeout and --concurrency: how apply and rollback sync releases."""
    for opt in reversed(
        [
            click.option(
                "--timeout",
                default="5m",
                show_default=True,
                metavar="DURATION",
                help="How long each release may take to become healthy.",
            ),
            click.option(
                "--lock-timeout",
                default="60s",
                show_default=True,
                metavar="DURATION",
                help="How long to wait for another apply's lock.",
            ),
            click.option(
                "--concurrency",
                type=click.IntRange(min=1),
                default=4,
                show_default=True,
                metavar="N",
                help="How many releases of one environment sync at once (1: one after another).",
            ),
        ]
    ):
        f = opt(f)
    return f


def output_option(f: F) -> F:
    """-o table|json|yaml."""
    return click.option(
        "-o",
        "--output",
        "fmt",
        type=click.Choice(["table", "wide", "json", "yaml"]),
        default="table",
        show_default=True,
        help="Output format: wide is the table with every column.",
    )(f)


def values_options(revision: str) -> Callable[[F], F]:
    """Revision, app filter and helm-style values options; `revision` says what the command does with REF."""
    return lambda f: _values_options(f, revision)


def _values_options(f: F, revision: str) -> F:
    for opt in reversed(
        [
            click.option(
                "--revision",
                metavar="REF",
                help=f"{revision} this Git commit, branch or tag (default: the working tree).",
            ),
            click.option(
                "--app",
                "apps",
                multiple=True,
                metavar="NAME",
                help="Only these apps (repeatable).",
                shell_complete=_complete_apps,
            ),
            click.option(
                "-f",
                "--values",
                "values_files",
                multiple=True,
                type=click.Path(dir_okay=False),
                metavar="FILE",
                help="Extra values file, highest precedence (repeatable).",
            ),
            click.option(
                "--set",
                "set_values",
                multiple=True,
                metavar="K=V",
                help="Set values on the command line, as helm does (repeatable).",
            ),
            click.option(
                "--set-string", "set_string", multiple=True, metavar="K=V", help="Like --set, values stay strings."
            ),
        ]
    ):
        f = opt(f)
    return f


def _definitions(ctx: click.Context) -> Any:
    """The definitions under -C (or the working directory), for shell completion."""
    from promote import model
    from promote.source import Source

    root = ctx.find_root().params.get("root") or Path.cwd()
    return model.load(Source(Path(root)))


def _complete_envs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        return [CompletionItem(e) for e in _definitions(ctx).chain if e.startswith(incomplete)]
    except Exception:  # completion must never fail loudly
        return []


def _complete_apps(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        return [CompletionItem(a.name) for a in _definitions(ctx).apps if a.name.startswith(incomplete)]
    except Exception:  # completion must never fail loudly
        return []


def app_option(f: F) -> F:
    """--app NAME, repeatable, with completion."""
    return click.option(
        "--app",
        "apps",
        multiple=True,
        metavar="NAME",
        help="Only these apps (repeatable).",
        shell_complete=_complete_apps,
    )(f)


def _options(app: AppContext, **kw: Any) -> Any:
    from promote.engine import Options

    return Options(
        root=app.root,
        revision=kw.get("revision"),
        apps=tuple(kw.get("apps") or ()),
        values_files=tuple(kw.get("values_files") or ()),
        set_values=tuple(kw.get("set_values") or ()),
        set_string=tuple(kw.get("set_string") or ()),
        context=app.context,
        kubeconfig=app.kubeconfig,
        qps=app.qps,
    )


class GlobalOption(click.Option):
    """An option of the group that every command takes too, so that it may come before or after the command."""


class PromoteCommand(click.Command):
    """A command whose help lists its own options apart from the global ones."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own: list[tuple[str, str]] = []
        shared: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                (shared if isinstance(param, GlobalOption) else own).append(record)
        for title, records in (("Options", own), ("Global options (before or after the command)", shared)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


class PromoteGroup(click.Group):
    """click exits 2 on usage errors, which our contract reserves for "changes pending": make it 1."""

    command_class = PromoteCommand

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(int(ExitCode.ERROR))
        except click.ClickException as e:
            e.show()
            sys.exit(int(ExitCode.ERROR))
        sys.exit(rv if isinstance(rv, int) else 0)


def _after_command(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A global option given after the command overrides what the group set, as kubectl and helm allow."""
    from click.core import ParameterSource

    app = ctx.find_object(AppContext)
    given = ctx.get_parameter_source(param.name or "") == ParameterSource.COMMANDLINE
    if app is None or not given:
        return value
    if param.name == "no_color":
        app.color = False if value else app.color
    elif param.name == "kube_context":
        app.context = value
    elif param.name == "debug":
        app.debug = app.debug or bool(value)
    else:
        setattr(app, str(param.name), value)
    return value


def global_options(*, command: bool) -> Callable[[F], F]:
    """The global options, defined once: on the group (with defaults), and on every command (overrides)."""

    def option(*decls: str, default: Any = None, envvar: str | None = None, **kw: Any) -> Callable[[F], F]:
        if command:
            return click.option(*decls, cls=GlobalOption, expose_value=False, callback=_after_command, **kw)
        return click.option(*decls, default=default, envvar=envvar, **kw)

    options = [
        option("--debug", is_flag=True, default=False, envvar="PROMOTE_DEBUG", help="Show tracebacks."),
        option(
            "-C",
            "--chdir",
            "root",
            type=click.Path(file_okay=False, path_type=Path),
            default=".",
            metavar="DIR",
            help="Repository root (default: the working directory).",
        ),
        option("--kubeconfig", type=click.Path(dir_okay=False), help="Path to a kubeconfig (default: KUBECONFIG)."),
        option(
            "--context",
            "kube_context",
            metavar="NAME",
            help="Kube context for environments whose definition sets none.",
        ),
        option("--no-color", is_flag=True, default=False, help="No colours (NO_COLOR is respected too)."),
        option(
            "--qps",
            type=click.FloatRange(min=1),
            default=500,
            metavar="N",
            help="Kubernetes API requests per second (default: 500).",
        ),
    ]

    def decorate(f: F) -> F:
        for opt in reversed(options):
            f = opt(f)
        return f

    return decorate


@click.group(
    cls=PromoteGroup,
    epilog=epilog(
        "promote validate",
        "promote plan prod",
        "promote apply prod --context kind-ci",
        "promote status --context kind-ci -o json",
        notes=("Global options may come before or after the command.",),
    ),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@global_options(command=False)
@click.version_option(package_name="promote")
@click.pass_context
def main(
    ctx: click.Context,
    debug: bool,
    root: Path,
    kubeconfig: str | None,
    kube_context: str | None,
    no_color: bool,
    qps: float,
) -> None:
    """Promote Helm-charted apps through an ordered chain of environments, Git being the source of truth."""
    color = False if (no_color or os.environ.get("NO_COLOR")) else None
    ctx.obj = AppContext(debug=debug, root=root, kubeconfig=kubeconfig, context=kube_context, color=color, qps=qps)
    _route_library_logs(ctx.obj)


class _EchoHandler(logging.Handler):
    """Library log records (the kubernetes client reports a failing exec plugin on the root logger,
    urllib3 its warnings) printed on stderr through AppContext.echo, so they are masked like the rest."""

    def __init__(self, app: AppContext) -> None:
        super().__init__(logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.app.echo(f"{record.levelname.lower()}: {self.format(record)}", err=True)
        except Exception:  # a log record must never break the command
            self.handleError(record)


def _route_library_logs(app: AppContext) -> None:
    """Send library log records through `app.echo` for this run (Python's last-resort handler would
    print them unmasked); the handler of an earlier run in this process is replaced."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _EchoHandler)]:
        root.removeHandler(handler)
    root.addHandler(_EchoHandler(app))
    # asyncio's child watcher warns "Unknown child process pid N" when a helm it waits for was reaped by
    # another waiter; the result is read from helm's own output either way, so it is noise to users.
    logging.getLogger("asyncio").setLevel(logging.ERROR)


@main.command(
    epilog=epilog(
        "promote validate",
        "promote validate prod --set replicaCount=3",
        "promote validate --revision main -o json",
    )
)
@click.argument("env", required=False, shell_complete=_complete_envs)
@values_options("Validate")
@output_option
@global_options(command=True)
@click.pass_obj
def validate(app: AppContext, /, env: str | None, fmt: str, **kw: Any) -> NoReturn:
    """Check definitions and values against every schema.

    Validates every definition file, and each environment's merged values (of the chain up to ENV, or
    all) against the chart's schema, the app's schema and the environment's policy. Every violation is
    reported, with the file and line (or the option) that set the value.
    """
    app.fmt = fmt

    def body() -> int:
        from promote import engine

        opts = _options(app, **kw)
        with engine.Workspace(opts) as ws:
            chain = ws.defs.chain_to(env) if env else ws.defs.chain
            targets = ws.targets(chain)
            violations = ws.validate(targets)
        app.echo(app.view().violations(violations, len(targets)))
        return int(ExitCode.ERROR if violations else ExitCode.OK)

    app.run(body)


@main.command(
    epilog=epilog(
        "promote plan prod",
        "promote plan prod --revision v1.2.0 --detailed-exitcode",
        "promote plan prod --out plan.json    # then: promote apply --plan plan.json",
    )
)
@click.argument("env", shell_complete=_complete_envs)
@values_options("Plan")
@output_option
@global_options(command=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes, 0 when none.")
@click.option(
    "--out", "out", type=click.Path(dir_okay=False), help="Save the plan for `apply --plan` (no Secret values)."
)
@click.option("--show-unchanged", is_flag=True, help="List unchanged resources too, not just their count.")
@on_conflict_option
@click.pass_obj
def plan(
    app: AppContext,
    /,
    env: str,
    fmt: str,
    detailed_exitcode: bool,
    out: str | None,
    show_unchanged: bool,
    on_conflict: str,
    **kw: Any,
) -> NoReturn:
    """Show what apply would change in the live cluster.

    For each environment of the chain up to ENV: what is created, updated (field by field), deleted,
    and which hooks run, compared with the live cluster through server-side dry runs. Read-only.
    """
    app.fmt = fmt

    def body() -> int:
        from promote import engine

        result = engine.plan(_options(app, **kw), env)
        if out and not result.all_errors:
            from promote import saved

            saved.write(result, out)
        app.echo(app.view().plan(result, show_unchanged=show_unchanged, on_conflict=on_conflict))
        if result.all_errors:
            return int(ExitCode.ERROR)
        if detailed_exitcode and result.has_changes:
            return int(ExitCode.CHANGES)
        return int(ExitCode.OK)

    app.run(body)


def _duration(text: str, option: str) -> float:
    from promote.model import parse_duration

    try:
        return parse_duration(text)
    except ConfigError as e:
        raise ConfigError(f"{option}: {e}") from None


def _at_least(text: str, minimum: float, option: str) -> float:
    seconds = _duration(text, option)
    if seconds < minimum:
        raise ConfigError(f"{option} {text} is too short: at least {minimum:g}s")
    return seconds


@main.command(
    epilog=epilog(
        "promote apply prod",
        "promote apply prod --only --timeout 10m --yes",
        "promote apply --plan plan.json",
        durations=True,
    )
)
@click.argument("env", required=False, shell_complete=_complete_envs)
@values_options("Apply")
@output_option
@global_options(command=True)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False),
    help="Apply exactly this saved plan; refuse if anything moved.",
)
@click.option("--only", is_flag=True, help="Sync only ENV, not its upstream; the gate is still checked.")
@click.option("--allow-dirty", is_flag=True, help="Allow uncommitted changes when promoting to a gated environment.")
@sync_options
@click.option(
    "--lock-ttl",
    default="30s",
    show_default=True,
    metavar="DURATION",
    help="Lease duration; a crashed apply's lock expires after it.",
)
@click.option("--unpin", is_flag=True, help="Release a pin left by `promote rollback` on ENV, then apply.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (never asked without a terminal).")
@on_conflict_option
@click.pass_obj
def apply(
    app: AppContext,
    /,
    env: str | None,
    fmt: str,
    plan_file: str | None,
    only: bool,
    allow_dirty: bool,
    timeout: str,
    lock_timeout: str,
    lock_ttl: str,
    unpin: bool,
    concurrency: int,
    yes: bool,
    on_conflict: str,
    **kw: Any,
) -> NoReturn:
    """Sync the chain up to ENV, in order, through each gate.

    Each environment is synced with helm and waited for until healthy; the next one is promoted only
    when the gate allows (upstream healthy on the same artifact, soaked). A failed release is rolled
    back and stops the chain. On a terminal, the plan is shown and confirmed first.
    """
    app.fmt = fmt

    def body() -> int:
        from promote import engine
        from promote.plan import ConflictPolicy

        aopts = engine.ApplyOptions(
            timeout=_duration(timeout, "--timeout"),
            lock_timeout=_duration(lock_timeout, "--lock-timeout"),
            lock_ttl=_at_least(lock_ttl, 1.0, "--lock-ttl"),
            concurrency=concurrency,
            only=only,
            allow_dirty=allow_dirty,
            unpin=unpin,
            on_conflict=ConflictPolicy(on_conflict),
        )
        target, saved_plan = env, None
        if plan_file:
            from promote import saved

            saved_plan = saved.read(plan_file)
            if env and env != saved_plan["target"]:
                raise ConfigError(f"ENV {env} differs from the saved plan's target {saved_plan['target']}")
            target = saved_plan["target"]
            kw["apps"] = kw.get("apps") or saved.apps_of(saved_plan)
        if not target:
            raise ConfigError("apply needs ENV, or a saved plan with --plan")
        confirm = None
        if saved_plan is None and not yes and fmt in ("table", "wide") and sys.stdin.isatty() and sys.stdout.isatty():
            # As terraform apply: the engine shows its plan here and asks before changing anything.
            def confirm(shown: Any) -> bool:
                app.echo(app.view().plan(shown))
                return click.confirm(f"\nApply these changes to {target}?", default=False)

        # Progress goes to stderr, so stdout carries only the result (a table, or one JSON document).
        result = engine.apply(
            _options(app, **kw),
            aopts,
            target,
            app.progress(),
            saved_plan=saved_plan,
            confirm=confirm,
        )
        app.echo(app.view().apply(result))
        return result.exit_code

    app.run(body)


@main.command(
    epilog=epilog(
        "promote rollback prod --reason 'bad release'",
        "promote rollback prod --to 4",
        "promote unpin prod    # follow Git again",
        durations=True,
    )
)
@click.argument("env", shell_complete=_complete_envs)
@click.option(
    "--to", "to", metavar="REVISION", help="Helm revision number or Git sha of a promotion (default: the previous)."
)
@app_option
@output_option
@global_options(command=True)
@sync_options
@click.option("--reason", default="", help="Why, recorded on the pin the rollback leaves.")
@click.pass_obj
def rollback(
    app: AppContext,
    /,
    env: str,
    to: str | None,
    apps: tuple[str, ...],
    fmt: str,
    timeout: str,
    lock_timeout: str,
    reason: str,
    concurrency: int,
) -> NoReturn:
    """Roll ENV back to the previous promotion and pin it.

    Every app release of ENV is rolled back together, to the previous promotion or to --to. ENV stays
    pinned there (apply, self-heal and the next environment's gate respect it) until
    `promote unpin ENV` or `apply ENV --unpin`.
    """
    app.fmt = fmt

    def body() -> int:
        from promote import engine

        aopts = engine.ApplyOptions(
            timeout=_duration(timeout, "--timeout"),
            lock_timeout=_duration(lock_timeout, "--lock-timeout"),
            reason=reason,
            concurrency=concurrency,
        )
        result = engine.rollback(_options(app, apps=apps), aopts, env, to, app.progress())
        app.echo(app.view().apply(result))
        return result.exit_code

    app.run(body)


@main.command(epilog=epilog("promote unpin prod", "promote apply prod --unpin    # unpin and apply at once"))
@click.argument("env", shell_complete=_complete_envs)
@global_options(command=True)
@click.pass_obj
def unpin(app: AppContext, /, env: str) -> NoReturn:
    """Release the pin a rollback left on ENV.

    Apply, self-heal and the next environment's gate follow Git again.
    """

    def body() -> int:
        from promote import engine

        app.echo(app.view().unpinned(env, engine.unpin(_options(app), env)))
        return int(ExitCode.OK)

    app.run(body)


@main.command(epilog=epilog("promote history prod", "promote history prod --app python-app -o json"))
@click.argument("env", shell_complete=_complete_envs)
@app_option
@output_option
@global_options(command=True)
@click.pass_obj
def history(app: AppContext, /, env: str, apps: tuple[str, ...], fmt: str) -> NoReturn:
    """List the promotions recorded for ENV.

    One row per helm revision of every app release of ENV: the Git revision, artifact, who and when.
    """
    app.fmt = fmt

    def body() -> int:
        from promote import engine

        app.echo(app.view().history(engine.release_history(_options(app, apps=apps), env)))
        return 0

    app.run(body)


@main.command(
    epilog=epilog(
        "promote status",
        "promote status prod --detailed-exitcode",
        "promote status --context kind-ci -o json",
    )
)
@click.argument("env", required=False, shell_complete=_complete_envs)
@values_options("Compare with")
@output_option
@global_options(command=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when anything is drifted, out of sync or unhealthy.")
@click.pass_obj
def status(app: AppContext, /, env: str | None, fmt: str, detailed_exitcode: bool, **kw: Any) -> NoReturn:
    """Show sync and health of every release.

    Per release (of ENV, or of every environment): Synced or OutOfSync against the Git revision that
    would be applied now, health with its reason, and drift, pending work and runtime notes apart.
    """
    app.fmt = fmt

    def body() -> int:
        from promote import engine
        from promote.results import HealthStatus, SyncStatus

        revision, statuses = engine.status(_options(app, **kw), env)
        app.echo(app.view().status(revision, statuses))
        if any(s.errors for s in statuses):
            return int(ExitCode.ERROR)  # a release that cannot be rendered or compared: status unknown
        pending = any(s.sync != SyncStatus.SYNCED or s.health != HealthStatus.HEALTHY for s in statuses)
        return int(ExitCode.CHANGES if detailed_exitcode and pending else ExitCode.OK)

    app.run(body)


@main.command(
    "gate",
    epilog=epilog("promote gate prod", "promote gate prod -o json && promote apply prod --only --yes"),
)
@click.argument("env", shell_complete=_complete_envs)
@values_options("Check the promotion of")
@output_option
@global_options(command=True)
@click.option("--allow-dirty", is_flag=True, help="Accept uncommitted changes, as apply --allow-dirty would.")
@click.pass_obj
def gate_cmd(app: AppContext, /, env: str, fmt: str, allow_dirty: bool, **kw: Any) -> NoReturn:
    """Check whether ENV may be promoted now (exit 0 or 3).

    Every check of the gate, read-only, each with pass or fail and its reason: values valid, upstream
    healthy on the artifact, soak elapsed, clean tree, lock free. Exit 0 when allowed, 3 when blocked.
    """
    app.fmt = fmt

    def body() -> int:
        from promote import engine
        from promote.results import GateResult

        checks = engine.gate_report(_options(app, **kw), env, allow_dirty)
        app.echo(app.view().gate(env, checks))
        return int(ExitCode.BLOCKED if any(c.result == GateResult.FAIL for c in checks) else ExitCode.OK)

    app.run(body)


@main.command(
    "diff",
    epilog=epilog("promote diff prod", "promote diff prod --detailed-exitcode --no-color"),
)
@click.argument("env", shell_complete=_complete_envs)
@values_options("Diff")
@output_option
@global_options(command=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are differences.")
@click.pass_obj
def diff_cmd(app: AppContext, /, env: str, fmt: str, detailed_exitcode: bool, **kw: Any) -> NoReturn:
    """Show a unified diff of Git versus live for ENV.

    For the drifted resources of ENV: Git as the server would persist it, versus live. Secret values
    are masked.
    """
    app.fmt = fmt

    def body() -> int:
        from promote import engine

        result = engine.diffs(_options(app, **kw), env)
        app.echo(app.view().diffs(result))
        return int(ExitCode.CHANGES if detailed_exitcode and result else ExitCode.OK)

    app.run(body)


@main.command(
    epilog=epilog(
        "promote watch prod",
        "promote watch prod --self-heal --interval 1m",
        "promote watch prod --duration 10m -o json",
        durations=True,
    )
)
@click.argument("env", shell_complete=_complete_envs)
@app_option
@output_option
@global_options(command=True)
@click.option("--interval", default="30s", show_default=True, metavar="DURATION", help="Time between checks.")
@click.option(
    "--self-heal", is_flag=True, help="Put drifted releases back to what was promoted (never promotes new Git)."
)
@click.option("--max-iterations", type=click.IntRange(min=1), help="Stop after this many checks.")
@click.option("--duration", metavar="DURATION", help="Stop after this long, e.g. 10m.")
@click.pass_obj
def watch(
    app: AppContext,
    /,
    env: str,
    apps: tuple[str, ...],
    fmt: str,
    interval: str,
    self_heal: bool,
    max_iterations: int | None,
    duration: str | None,
) -> NoReturn:
    """Watch ENV for drift; with --self-heal, revert it.

    One line per change of state (and a heartbeat while none); -o json prints every event of every check, one
    JSON document per line (JSON Lines), -o yaml one YAML document each.
    """
    app.fmt = fmt
    app.stream = True

    def body() -> int:
        from promote import engine

        view = app.view()
        args: dict[str, Any] = {
            "interval": _duration(interval, "--interval"),
            "self_heal": self_heal,
            "max_iterations": max_iterations,
            "duration": _duration(duration, "--duration") if duration else None,
        }
        try:
            if fmt in ("json", "yaml"):  # every event of every check: the published stream
                for event in engine.watch(_options(app, apps=apps), env, **args):
                    app.echo(view.watch_event(event))
                return 0
            log = view.watch_log()  # for people, one line per change of state
            for check in engine.watch_checks(_options(app, apps=apps), env, **args):
                for line in log.check(check):
                    app.echo(line)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a watch ends; a self-heal in flight has restored or said why not
        return 0

    app.run(body)


if __name__ == "__main__":
    main()
