"""The command line: parse, call the engine once, hand the result to a view, exit with the contract code.

No helm or Kubernetes calls happen here. Heavy imports are deferred into command bodies so that
`promote --help` stays instant.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from promote.errors import ConfigError, ExitCode, Interrupted, exit_code_for

EXIT_CODES_HELP = """\b
Exit codes (identical for every command):
  0  success, nothing to do
  1  error: bad input, cluster unreachable, helm failure, failed rollout
  2  success with changes pending (only with --detailed-exitcode)
  3  blocked by a gate or policy
"""

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
        """Print, stripping colour when asked or when not on a terminal."""
        click.echo(text, err=err, color=self.color)

    def abort(self, error: BaseException) -> NoReturn:
        """Every failing exit goes through here: one paragraph, the contract's code, a traceback only in debug."""
        code = exit_code_for(error)
        if self.debug:
            traceback.print_exception(error, file=sys.stderr)
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


def values_options(f: F) -> F:
    """Revision, app filter and helm-style values options."""
    for opt in reversed(
        [
            click.option(
                "--revision",
                metavar="REF",
                help="Plan from this Git commit, branch or tag (default: the working tree).",
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


class PromoteGroup(click.Group):
    """click exits 2 on usage errors, which our contract reserves for "changes pending": make it 1."""

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


@click.group(cls=PromoteGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar="PROMOTE_DEBUG", help="Show tracebacks.")
@click.option(
    "-C", "--chdir", "root", type=click.Path(file_okay=False, path_type=Path), default=".", help="Repository root."
)
@click.option(
    "--kubeconfig", envvar=None, type=click.Path(dir_okay=False), help="Path to a kubeconfig (default: KUBECONFIG)."
)
@click.option("--context", "kube_context", help="Kube context for environments whose definition sets none.")
@click.option("--no-color", is_flag=True, help="No colours (NO_COLOR is respected too).")
@click.option(
    "--qps", type=click.FloatRange(min=1), default=500, show_default=True, help="Kubernetes API requests per second."
)
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


@main.command()
@click.argument("env", required=False, shell_complete=_complete_envs)
@values_options
@output_option
@click.pass_obj
def validate(app: AppContext, /, env: str | None, fmt: str, **kw: Any) -> NoReturn:
    """Validate definitions and every environment's merged values against chart, app and policy schemas."""
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


@main.command()
@click.argument("env", shell_complete=_complete_envs)
@values_options
@output_option
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes, 0 when none.")
@click.option(
    "--out", "out", type=click.Path(dir_okay=False), help="Save the plan for `apply --plan` (no Secret values)."
)
@click.option("--show-unchanged", is_flag=True, help="List unchanged resources too, not just their count.")
@click.pass_obj
def plan(
    app: AppContext, /, env: str, fmt: str, detailed_exitcode: bool, out: str | None, show_unchanged: bool, **kw: Any
) -> NoReturn:
    """Show what apply would change in the live cluster, for each environment of the chain up to ENV."""
    app.fmt = fmt

    def body() -> int:
        from promote import engine

        result = engine.plan(_options(app, **kw), env)
        if out and not result.all_errors:
            from promote import saved

            saved.write(result, out)
        app.echo(app.view().plan(result, show_unchanged=show_unchanged))
        if result.all_errors:
            return int(ExitCode.ERROR)
        if detailed_exitcode and result.has_changes:
            return int(ExitCode.CHANGES)
        return int(ExitCode.OK)

    app.run(body)


def _duration(text: str) -> float:
    from promote.model import parse_duration

    return parse_duration(text)


def _at_least(text: str, minimum: float, option: str) -> float:
    seconds = _duration(text)
    if seconds < minimum:
        raise ConfigError(f"{option} {text} is too short: at least {minimum:g}s")
    return seconds


@main.command()
@click.argument("env", required=False, shell_complete=_complete_envs)
@values_options
@output_option
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False),
    help="Apply exactly this saved plan; refuse if anything moved.",
)
@click.option("--only", is_flag=True, help="Sync only ENV, not its upstream; the gate is still checked.")
@click.option("--allow-dirty", is_flag=True, help="Allow uncommitted changes when promoting to a gated environment.")
@click.option("--timeout", default="5m", show_default=True, help="How long each release may take to become healthy.")
@click.option("--lock-timeout", default="60s", show_default=True, help="How long to wait for another apply's lock.")
@click.option(
    "--lock-ttl", default="30s", show_default=True, help="Lease duration; a crashed apply's lock expires after it."
)
@click.option("--unpin", is_flag=True, help="Release a pin left by `promote rollback` on ENV, then apply.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (never asked without a terminal).")
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
    yes: bool,
    **kw: Any,
) -> NoReturn:
    """Sync each environment of the chain up to ENV, in order, each only when healthy upstream and gate allow."""
    app.fmt = fmt

    def body() -> int:
        from promote import engine

        aopts = engine.ApplyOptions(
            timeout=_duration(timeout),
            lock_timeout=_duration(lock_timeout),
            lock_ttl=_at_least(lock_ttl, 1.0, "--lock-ttl"),
            only=only,
            allow_dirty=allow_dirty,
            unpin=unpin,
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


@main.command()
@click.argument("env", shell_complete=_complete_envs)
@click.option(
    "--to", "to", metavar="REVISION", help="Helm revision number or Git sha of a promotion (default: the previous)."
)
@app_option
@output_option
@click.option("--timeout", default="5m", show_default=True, help="How long each release may take to become healthy.")
@click.option("--lock-timeout", default="60s", show_default=True, help="How long to wait for another apply's lock.")
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
) -> NoReturn:
    """Roll every app release of ENV back together, to the previous promotion or to --to.

    ENV stays pinned there (apply, self-heal and the next environment's gate respect it) until
    `promote unpin ENV` or `apply ENV --unpin`.
    """
    app.fmt = fmt

    def body() -> int:
        from promote import engine

        aopts = engine.ApplyOptions(timeout=_duration(timeout), lock_timeout=_duration(lock_timeout), reason=reason)
        result = engine.rollback(_options(app, apps=apps), aopts, env, to, app.progress())
        app.echo(app.view().apply(result))
        return result.exit_code

    app.run(body)


@main.command()
@click.argument("env", shell_complete=_complete_envs)
@click.pass_obj
def unpin(app: AppContext, /, env: str) -> NoReturn:
    """Release ENV from the pin `promote rollback` left: apply and the next gate follow Git again."""

    def body() -> int:
        from promote import engine

        app.echo(app.view().unpinned(env, engine.unpin(_options(app), env)))
        return int(ExitCode.OK)

    app.run(body)


@main.command()
@click.argument("env", shell_complete=_complete_envs)
@app_option
@output_option
@click.pass_obj
def history(app: AppContext, /, env: str, apps: tuple[str, ...], fmt: str) -> NoReturn:
    """List the promotions recorded for every app release of ENV."""
    app.fmt = fmt

    def body() -> int:
        from promote import engine

        app.echo(app.view().history(engine.release_history(_options(app, apps=apps), env)))
        return 0

    app.run(body)


@main.command()
@click.argument("env", required=False, shell_complete=_complete_envs)
@values_options
@output_option
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when anything is drifted, out of sync or unhealthy.")
@click.pass_obj
def status(app: AppContext, /, env: str | None, fmt: str, detailed_exitcode: bool, **kw: Any) -> NoReturn:
    """Sync (against the Git revision that would be applied now) and health of every release."""
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


@main.command("gate")
@click.argument("env", shell_complete=_complete_envs)
@values_options
@output_option
@click.option("--allow-dirty", is_flag=True, help="Accept uncommitted changes, as apply --allow-dirty would.")
@click.pass_obj
def gate_cmd(app: AppContext, /, env: str, fmt: str, allow_dirty: bool, **kw: Any) -> NoReturn:
    """May ENV be promoted now? Every check, read-only: exit 0 when allowed, 3 when blocked."""
    app.fmt = fmt

    def body() -> int:
        from promote import engine
        from promote.results import GateResult

        checks = engine.gate_report(_options(app, **kw), env, allow_dirty)
        app.echo(app.view().gate(env, checks))
        return int(ExitCode.BLOCKED if any(c.result == GateResult.FAIL for c in checks) else ExitCode.OK)

    app.run(body)


@main.command("diff")
@click.argument("env", shell_complete=_complete_envs)
@values_options
@output_option
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are differences.")
@click.pass_obj
def diff_cmd(app: AppContext, /, env: str, fmt: str, detailed_exitcode: bool, **kw: Any) -> NoReturn:
    """Unified diff of Git versus live for the drifted resources of ENV (Secret values masked)."""
    app.fmt = fmt

    def body() -> int:
        from promote import engine

        result = engine.diffs(_options(app, **kw), env)
        app.echo(app.view().diffs(result))
        return int(ExitCode.CHANGES if detailed_exitcode and result else ExitCode.OK)

    app.run(body)


@main.command()
@click.argument("env", shell_complete=_complete_envs)
@app_option
@output_option
@click.option("--interval", default="30s", show_default=True, help="Time between checks.")
@click.option(
    "--self-heal", is_flag=True, help="Put drifted releases back to what was promoted (never promotes new Git)."
)
@click.option("--max-iterations", type=click.IntRange(min=1), help="Stop after this many checks.")
@click.option("--duration", help="Stop after this long, e.g. 10m.")
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
    """Check ENV in a loop, printing each drift and runtime note as seen; with --self-heal, revert drift.

    One line per change of state (and a heartbeat while none); -o json prints every event of every check, one
    JSON document per line (JSON Lines), -o yaml one YAML document each.
    """
    app.fmt = fmt
    app.stream = True

    def body() -> int:
        from promote import engine

        view = app.view()
        args: dict[str, Any] = {
            "interval": _duration(interval),
            "self_heal": self_heal,
            "max_iterations": max_iterations,
            "duration": _duration(duration) if duration else None,
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
