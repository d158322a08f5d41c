"""Benchmark promote against the real local control plane, and compare it with the plain helm/kubectl loop.

`python bench/run.py [--apps N] [--repeat 3] [--state-dir DIR] [--keep-cluster]` starts a fresh dev cluster
in its own state directory, generates the benchmark repository (bench/generate.py) in a scratch directory,
and in one run times each measurement `--repeat` times:

    render floor       every release's `helm template`, on a pool of os.cpu_count() workers
    floor, as promote  the same in the environment promote gives helm template: Go GC off, a locale
                       with a small message catalogue (informational)
    baseline loop      per release, sequentially: helm template … | kubectl diff --server-side -f -
    plan cold          promote plan prod -o json, nothing deployed, promote's render cache emptied first
    plan cold/cache    the same with the render cache left warm (informational)
    apply all          promote apply prod over every app (once, informational; deploys for the warm plan)
    plan warm          promote plan prod -o json, everything deployed and unchanged (after one untimed plan)
    apply one app      promote apply prod --app APP0 after committing a change of its app-wide values
    raw helm           helm upgrade --install --wait of the same chart, default then prod, value changed
    no-op re-apply     promote apply prod --app APP0 again; helm revisions must not move
    apply many         promote apply prod after a committed change of every app (both environments,
                       --concurrency as given), against the sequential raw loop over as many releases:
                       helm upgrade --install --wait of each, one after another, a value changed

`--sizes 100,500,1000` takes instead the render floor, the loop, cold and warm plan and `promote status` at
each of these release counts, in one run (bench/sizes.py).

`--chart create` runs it all on the chart `helm create` makes, plus a ConfigMap and a Secret (bench/charts/
create), instead of bench/charts/svc. `--only NAME,…` takes only the named measurements (with what they
need deployed first), for a quick look at one of them.

It prints a table of medians and the issue's target ratios (PASS/MISS), and writes every sample to
bench/out/results-<sha>-<timestamp>.json. Timing never fails the run: the exit code is 1 only when a
command errored (described in the table's notes and in the JSON's `problems`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import generate
from tabulate import tabulate

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:  # the dev-cluster harness, beside bench/ (not promote: see make_tools)
    sys.path.append(str(REPO_ROOT))
from devcluster.cluster import CONTROLLER_QPS_ENV  # noqa: E402

OUT_DIR = BENCH_DIR / "out"
DEFAULT_STATE_DIR = Path("~/.cache/promote/bench-cluster")
TARGET_ENV = "prod"
DEFAULT_APPS = 50

# Timeouts, in seconds, for one child process. Generous: this is a benchmark on a small machine, and a
# timeout is reported as an error, never as a slow sample.
CLUSTER_TIMEOUT = 300.0
QUICK_TIMEOUT = 60.0
PLAN_TIMEOUT = 900.0
APPLY_TIMEOUT = 1800.0
HELM_WAIT = "5m"
HELM_TIMEOUT = 360.0
# Parallel helm installs for --deploy helm: most of each is spent waiting for rollouts, not on CPU.
HELM_DEPLOY_WORKERS = 8
# How often promote's own memory high-water mark (VmHWM) is read while it runs.
HWM_POLL = 0.05
# The seed of --loop-sample's choice of releases: the same releases in every sample and every run.
LOOP_SAMPLE_SEED = 18


class BenchError(Exception):
    """A command of the benchmark failed; the message says which and how."""


def log(text: str) -> None:
    """Progress on stderr, with the wall-clock time."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def tail(text: str, lines: int = 15) -> str:
    """The last lines of a command's output, for error messages."""
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class Run:
    """One finished child process."""

    argv: list[str]
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    maxrss_kb: int = 0  # wait4's ru_maxrss: the max over the process and each of its reaped descendants
    hwm_kb: int = 0  # the process's own VmHWM, polled every HWM_POLL seconds (promote's Python alone)

    def describe(self) -> str:
        """The command, its exit code and the tail of its output, for a problem report."""
        out = tail(self.stderr) or tail(self.stdout)
        return f"`{' '.join(self.argv)}` exited {self.returncode} after {self.seconds:.1f}s:\n{out}"


def _read_hwm(pid: int) -> int:
    """VmHWM of a live process in kB, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_measured(
    argv: Sequence[str], env: dict[str, str], timeout: float, *, watch_memory: bool = False, stdin: str | None = None
) -> Run:
    """Run argv to completion, timing it; with watch_memory also its rusage (wait4) and polled VmHWM.

    The child is reaped with wait4 on its own pid, so ru_maxrss is this child's and not a max over every
    child this script ever had (what getrusage(RUSAGE_CHILDREN) would give). On timeout the child's whole
    process group is killed and BenchError raised.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as inp:
        if stdin is not None:
            inp.write(stdin.encode())
            inp.seek(0)
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=inp, stdout=out, stderr=err, env=env, start_new_session=True)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with suppress_lookup():
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        hwm = [0]
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(HWM_POLL):
                hwm[0] = max(hwm[0], _read_hwm(proc.pid))

        poller = threading.Thread(target=poll, daemon=True) if watch_memory else None
        if poller:
            poller.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            with suppress_lookup():
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            seconds = time.perf_counter() - start
            timer.cancel()
            stop.set()
        # Reaped by hand: tell Popen so that it never waits for the pid again.
        proc.returncode = os.waitstatus_to_exitcode(status)
        if poller:
            poller.join()
        out.seek(0)
        err.seek(0)
        result = Run(
            argv=list(argv),
            returncode=proc.returncode,
            seconds=seconds,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            maxrss_kb=int(usage.ru_maxrss),
            hwm_kb=hwm[0],
        )
    if timed_out.is_set():
        raise BenchError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s and was killed")
    return result


def suppress_lookup() -> contextlib.suppress:
    """Ignore a process that is already gone."""
    return contextlib.suppress(ProcessLookupError, PermissionError)


def check(run: Run, ok: Sequence[int] = (0,)) -> Run:
    """The run, or BenchError describing it when its exit code is not one of `ok`."""
    if run.returncode not in ok:
        raise BenchError(run.describe())
    return run


def quick(argv: Sequence[str], env: dict[str, str], timeout: float = QUICK_TIMEOUT) -> str:
    """Run a short helper command that must succeed; its stdout."""
    try:
        proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s") from e
    if proc.returncode != 0:
        raise BenchError(f"`{' '.join(argv)}` exited {proc.returncode}: {tail(proc.stderr or proc.stdout)}")
    return proc.stdout


# --- tools -----------------------------------------------------------------------------------------------


def real_executable(name: str) -> str:
    """The executable's path, looking through pyenv's shims (a bash script costing ~0.1 s per call)."""
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"cannot find `{name}` on PATH")
    if "/.pyenv/shims/" in found and shutil.which("pyenv"):
        try:
            real = subprocess.run(
                ["pyenv", "which", name], capture_output=True, text=True, timeout=QUICK_TIMEOUT, check=False
            ).stdout.strip()
        except subprocess.TimeoutExpired:
            real = ""
        if real and os.access(real, os.X_OK):
            return real
    return found


@dataclass
class Tools:
    """Absolute paths of the programs measured, and the environment every child gets."""

    helm: str
    kubectl: str
    promote: list[str]
    env: dict[str, str]
    promote_source: str


def make_tools(work: Path, promote_ref: str | None, cache_dir: Path) -> Tools:
    """Resolve helm, kubectl and promote, and build the children's environment."""
    helm = real_executable("helm")
    kubectl = real_executable("kubectl")
    env = dict(os.environ)
    # The real helm's directory goes first on PATH so that promote, which looks helm up on PATH, runs the
    # same binary as the baseline loop instead of pyenv's shim.
    env["PATH"] = os.pathsep.join([str(Path(helm).parent), env.get("PATH", "")])
    env["NO_COLOR"] = "1"
    env["PROMOTE_CACHE"] = str(cache_dir)
    env.pop("PROMOTE_DEBUG", None)
    if promote_ref:
        src = work / "promote-src"
        src.mkdir()
        # schemas/ too: the package's schema files are symlinks into it.
        tree = quick(["git", "-C", str(REPO_ROOT), "ls-tree", "--name-only", promote_ref, "schemas"], env)
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", promote_ref, "promote", *tree.split()],
            capture_output=True,
            timeout=QUICK_TIMEOUT,
            check=False,
        )
        if archive.returncode != 0:
            raise BenchError(f"git archive {promote_ref} failed: {archive.stderr.decode(errors='replace').strip()}")
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, timeout=QUICK_TIMEOUT, check=True)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH", "")]))
        # `python -m` puts the working directory first on sys.path: run from the repository's root, it
        # would import the working tree's promote instead of the archived one.
        env["PYTHONSAFEPATH"] = "1"
        return Tools(helm, kubectl, [sys.executable, "-m", "promote.cli"], env, f"git {promote_ref} ({src})")
    promote = real_executable("promote")
    return Tools(helm, kubectl, [promote], env, f"{promote} (installed; the working tree if editable)")


# --- the cluster -----------------------------------------------------------------------------------------


def cluster_up(state_dir: Path, controller_qps: int | None = None) -> str:
    """Start a fresh (empty) dev cluster in state_dir; its kubeconfig path."""
    script = REPO_ROOT / "scripts" / "dev-cluster"
    env = dict(os.environ)
    env.pop(CONTROLLER_QPS_ENV, None)
    if controller_qps is not None:
        env[CONTROLLER_QPS_ENV] = str(controller_qps)
    out = quick([str(script), "--state-dir", str(state_dir), "up", "--fresh"], env, CLUSTER_TIMEOUT)
    for line in out.splitlines():
        if line.startswith("export KUBECONFIG="):
            return line.split("=", 1)[1].strip().strip("'\"")
    raise BenchError(f"dev-cluster up printed no KUBECONFIG export: {out!r}")


def cluster_down(state_dir: Path) -> None:
    """Stop the dev cluster of state_dir."""
    script = REPO_ROOT / "scripts" / "dev-cluster"
    quick([str(script), "--state-dir", str(state_dir), "down"], dict(os.environ), CLUSTER_TIMEOUT)


# --- the generated releases ------------------------------------------------------------------------------


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge for plain maps: `over` wins, maps merge key by key."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Release:
    """One app in one environment, with its merged values in a file for plain helm."""

    app: str
    env: str
    name: str
    namespace: str
    values_file: str


def write_values(path: Path, index: int, env: str, revision: int = 0) -> str:
    """Write the values promote would give helm (app-wide then environment values); the file's path."""
    values = deep_merge(generate.app_values(index, revision), generate.env_values(env, index))
    path.write_text(json.dumps(values))
    return str(path)


def releases(
    apps: range, name_apps: int, values_dir: Path, namespaces: dict[str, str] = generate.NAMESPACES
) -> list[Release]:
    """The releases of these apps of the generated repository, default first, in app order."""
    values_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for env, namespace in namespaces.items():
        for i in apps:
            app = generate.app_name(i, name_apps)
            name = generate.release_name(app, env)
            out.append(Release(app, env, name, namespace, write_values(values_dir / f"{name}.json", i, env)))
    return out


# --- measurements ----------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """Samples of one measurement, in seconds, with what was checked along the way."""

    name: str
    description: str
    samples: list[float] = field(default_factory=list)
    maxrss_mb: list[float] = field(default_factory=list)
    hwm_mb: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)  # per sample, when promote says more
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)  # when the measurement started
    error: str | None = None

    def record(self, run: Run) -> None:
        """One sample of a promote command whose memory was watched: its time and peak memory."""
        self.samples.append(run.seconds)
        self.maxrss_mb.append(run.maxrss_kb / 1024)
        self.hwm_mb.append(run.hwm_kb / 1024)

    @property
    def median(self) -> float | None:
        """Median of the samples, None without any."""
        return statistics.median(self.samples) if self.samples else None

    def to_json(self) -> dict[str, Any]:
        """The measurement with its median, for the results file."""
        return {**asdict(self), "median": self.median}


def env_durations(run: Run) -> dict[str, Any]:
    """Per-environment outcome and duration from `promote apply -o json`."""
    result = json.loads(run.stdout)
    return {e["name"]: {"outcome": e["outcome"], "seconds": e["durationSeconds"]} for e in result["environments"]}


class Bench:
    """One benchmark run: the tools, the generated repository, and the measurements taken so far."""

    def __init__(
        self,
        tools: Tools,
        repo: Path,
        apps: int,
        repeat: int,
        work: Path,
        cache_dir: Path,
        deploy: str,
        chart: str = "svc",
        only: Sequence[str] = (),
        concurrency: int = 4,
        namespaces: dict[str, str] = generate.NAMESPACES,
        name_apps: int | None = None,
    ) -> None:
        self.tools, self.repo, self.apps, self.repeat, self.work = tools, repo, apps, repeat, work
        self.deploy = deploy
        self.cache_dir = cache_dir
        self.shape, self.only, self.concurrency = chart, set(only), concurrency
        self.chart = str(repo / generate.chart_dir(chart))
        self.namespaces = namespaces
        self.name_apps = name_apps or apps  # the width of app names: the most apps the repository will have
        self.releases = releases(range(apps), self.name_apps, work / "values", namespaces)
        self.app0 = generate.app_name(0, self.name_apps)
        self.measurements: dict[str, Measurement] = {}
        self.problems: list[str] = []  # errors: a command failed (exit code 1)
        self.oddities: list[str] = []  # promote misbehaved without erroring (reported, exit code unaffected)
        self.info: dict[str, Any] = {}

    # helpers

    def measurement(self, name: str, description: str) -> Measurement:
        """Register a measurement."""
        m = Measurement(name, description)
        self.measurements[name] = m
        return m

    def step(self, m: Measurement, body: Callable[[Measurement], None]) -> None:
        """Run one measurement; an error is recorded with it and the run goes on."""
        log(f"{m.name}: {m.description}")
        m.load_average = os.getloadavg()
        try:
            body(m)
        except (BenchError, OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
            m.error = str(e)
            self.problems.append(f"{m.name}: {e}")
            log(f"{m.name}: ERROR {e}")
        else:
            if m.samples:
                log(f"{m.name}: median {m.median:.2f}s of {[round(s, 2) for s in m.samples]}")

    def promote(self, *args: str, timeout: float, memory: bool = False) -> Run:
        """Run promote on the generated repository."""
        argv = [*self.tools.promote, "--no-color", "-C", str(self.repo), *args]
        return run_measured(argv, self.tools.env, timeout, watch_memory=memory)

    def render_floor_as_promote(self, m: Measurement) -> None:
        """The render floor in the environment the measured promote gives helm template (asked of it)."""
        code = "import json; from promote.helm import binary as b; print(json.dumps(b.short_lived_env(b.executable())))"
        env: dict[str, str] = json.loads(quick([sys.executable, "-c", code], self.tools.env))
        m.notes.append(", ".join(f"{k}={v}" for k, v in sorted(env.items()) if self.tools.env.get(k) != v))
        self.render_floor(m, env)

    def helm_template_argv(self, r: Release) -> list[str]:
        """helm template of one release, as the baseline and the render floor run it."""
        return [self.tools.helm, "template", r.name, self.chart, "-n", r.namespace, "-f", r.values_file]

    def revisions(self) -> dict[str, int]:
        """Helm revision of APP0's release in each environment (0 when not installed)."""
        found = {}
        for r in self.releases:
            if r.app != self.app0:
                continue
            out = quick([self.tools.helm, "list", "-n", r.namespace, "-f", f"^{r.name}$", "-o", "json"], self.tools.env)
            rows = json.loads(out or "[]")
            found[r.name] = int(rows[0]["revision"]) if rows else 0
        return found

    def grow(self, apps: int) -> list[Release]:
        """Add apps to the generated repository up to `apps`, committed; their new releases."""
        if apps <= self.apps:
            return []
        generate.grow(self.repo, self.apps, apps, self.name_apps, self.shape, self.namespaces)
        new = releases(range(self.apps, apps), self.name_apps, self.work / "values", self.namespaces)
        self.apps = apps
        self.releases = sorted([*self.releases, *new], key=lambda r: list(self.namespaces).index(r.env))
        return new

    def clear_render_cache(self) -> None:
        """Empty promote's cache (PROMOTE_CACHE points into this run's scratch directory)."""
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.cache_dir.mkdir(parents=True)

    def commit_app0(self, revision: int) -> str:
        """Change APP0's app-wide values (image tag and a config key), commit; the new sha."""
        generate.write_app(self.repo, 0, self.name_apps, revision, self.shape, self.namespaces)
        return generate.commit_all(self.repo, f"bench: {self.app0} revision {revision}")

    def commit_every_app(self, revision: int) -> str:
        """Change every app's app-wide values, commit; the new sha."""
        for i in range(self.apps):
            generate.write_app(self.repo, i, self.name_apps, revision, self.shape, self.namespaces)
        return generate.commit_all(self.repo, f"bench: every app at revision {revision}")

    # measurements

    def render_floor(self, m: Measurement, env: dict[str, str] | None = None) -> None:
        """All releases' helm template on os.cpu_count() workers (with the children's env, or `env`)."""
        workers = os.cpu_count() or 1
        m.notes.append(f"{workers} workers")

        def one(r: Release) -> None:
            check(run_measured(self.helm_template_argv(r), env or self.tools.env, HELM_TIMEOUT))

        for _ in range(self.repeat):
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one, self.releases))
            m.samples.append(time.perf_counter() - start)

    def baseline(self, m: Measurement, sample: int | None = None) -> None:
        """Sequential helm template | kubectl diff --server-side per release (exit 1 = differences, fine).

        With `sample`, the loop runs over that many releases picked at random (seeded, so the same ones in
        every sample and every run) and its time is scaled up to all of them."""
        loop = self.releases
        if sample is not None and sample < len(self.releases):
            loop = random.Random(LOOP_SAMPLE_SEED).sample(self.releases, sample)
            m.notes.append(
                f"SAMPLED: timed over {sample} random releases (seed {LOOP_SAMPLE_SEED}), "
                f"scaled by {len(self.releases)}/{sample}"
            )
        scale = len(self.releases) / len(loop)
        for _ in range(self.repeat):
            start = time.perf_counter()
            differing = 0
            for r in loop:
                differing += self._template_diff(r)
            m.samples.append((time.perf_counter() - start) * scale)
            note = f"{differing}/{len(loop)} releases differ"
            if note not in m.notes:
                m.notes.append(note)

    def _template_diff(self, r: Release) -> int:
        """One release's `helm template … | kubectl diff --server-side -f -`; 1 if it differs."""
        diff_argv = [self.tools.kubectl, "diff", "--server-side", "-f", "-"]
        helm = subprocess.Popen(
            self.helm_template_argv(r), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.tools.env
        )
        assert helm.stdout is not None
        kubectl = subprocess.Popen(
            diff_argv, stdin=helm.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.tools.env
        )
        helm.stdout.close()  # kubectl owns the pipe now; helm gets SIGPIPE if kubectl exits early
        try:
            _, kerr = kubectl.communicate(timeout=HELM_TIMEOUT)
            helm_err = helm.stderr.read() if helm.stderr else b""
            helm.wait(timeout=HELM_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            helm.kill()
            kubectl.kill()
            raise BenchError(f"helm template | kubectl diff of {r.name} did not finish in {HELM_TIMEOUT:.0f}s") from e
        finally:
            if helm.stderr:
                helm.stderr.close()
        if helm.returncode != 0:
            raise BenchError(f"helm template {r.name} exited {helm.returncode}: {tail(helm_err.decode())}")
        if kubectl.returncode not in (0, 1):
            raise BenchError(f"kubectl diff of {r.name} exited {kubectl.returncode}: {tail(kerr.decode())}")
        return kubectl.returncode

    def _plan(self, m: Measurement, expect_changes: bool) -> None:
        """One timed plan over every app, checked and counted."""
        run = check(self.promote("plan", TARGET_ENV, "-o", "json", timeout=PLAN_TIMEOUT, memory=True))
        m.record(run)
        plan = json.loads(run.stdout)
        summary = plan.get("summary", {})
        planned = sum(len(e.get("releases", [])) for e in plan.get("environments", []))
        errors = list(plan.get("errors", [])) + [
            f"{r.get('release')}: {err}"
            for e in plan.get("environments", [])
            for r in e.get("releases", [])
            for err in r.get("errors", [])
        ]
        note = f"{planned} releases planned, summary {summary}"
        if note not in m.notes:
            m.notes.append(note)
        if planned != len(self.releases):
            raise BenchError(f"the plan covers {planned} releases, expected {len(self.releases)}")
        if errors:
            raise BenchError(f"the plan reports errors: {errors[:5]}")
        pending = sum(summary.get(k, 0) for k in ("create", "update", "delete"))
        if expect_changes and not pending:
            raise BenchError(f"the cold plan shows no change: {summary}")
        if not expect_changes and pending:
            m.notes.append(f"UNEXPECTED: the warm plan shows changes right after apply: {summary}")
            self.oddities.append(f"{m.name}: the plan right after apply is not empty: {summary}")

    def plan_cold(self, m: Measurement) -> None:
        """promote plan with nothing deployed and an empty render cache before each sample."""
        for _ in range(self.repeat):
            self.clear_render_cache()
            self._plan(m, expect_changes=True)

    def plan_cold_cached(self, m: Measurement) -> None:
        """promote plan with nothing deployed, the render cache left as the previous plan filled it."""
        for _ in range(self.repeat):
            self._plan(m, expect_changes=True)

    def apply_all(self, m: Measurement) -> None:
        """promote apply prod over every app, once (deploys everything for the warm plan)."""
        run = check(self.promote("apply", TARGET_ENV, "-o", "json", timeout=APPLY_TIMEOUT))
        m.samples.append(run.seconds)
        m.details.append(env_durations(run))
        result = json.loads(run.stdout)
        outcomes = [r["outcome"] for e in result["environments"] for r in e["releases"]]
        m.notes.append(f"{outcomes.count('synced')}/{len(self.releases)} releases synced")

    def deploy_all_helm(self, m: Measurement, only: Sequence[Release] | None = None) -> None:
        """helm upgrade --install --wait of every release (or of `only`), in parallel (faster set-up for
        the warm plan)."""
        workers = HELM_DEPLOY_WORKERS
        todo = self.releases if only is None else only
        m.notes.append(f"{len(todo)} releases, {workers} parallel helm upgrade --install --wait")

        def one(r: Release) -> None:
            argv = [self.tools.helm, "upgrade", "--install", r.name, self.chart, "-n", r.namespace]
            argv += ["-f", r.values_file, "--wait", "--timeout", HELM_WAIT]
            check(run_measured(argv, self.tools.env, HELM_TIMEOUT))

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, todo))
        m.samples.append(time.perf_counter() - start)

    def plan_warm(self, m: Measurement) -> None:
        """promote plan with everything deployed, after one untimed plan (warms any cache)."""
        warmup = check(self.promote("plan", TARGET_ENV, "-o", "json", timeout=PLAN_TIMEOUT, memory=True))
        m.notes.append(f"untimed warm-up plan took {warmup.seconds:.2f}s")
        for _ in range(self.repeat):
            self._plan(m, expect_changes=False)

    def apply_one(self, m: Measurement, raw: Measurement) -> None:
        """promote apply of APP0 through both environments vs two helm upgrades, alternating, a change each."""
        raw_releases = [
            Release(r.app, r.env, r.name.replace(self.app0, f"{self.app0}-raw", 1), r.namespace, r.values_file)
            for r in self.releases
            if r.app == self.app0
        ]
        raw.load_average = os.getloadavg()
        raw.notes.append(f"releases {', '.join(r.name for r in raw_releases)} (installed untimed first)")
        for r in raw_releases:
            check(self._helm_upgrade(r, 0))
        for k in range(1, self.repeat + 1):
            before = self.revisions()
            sha = self.commit_app0(k)
            run = self.promote("apply", TARGET_ENV, "--app", self.app0, "-o", "json", timeout=APPLY_TIMEOUT)
            check(run)
            after = self.revisions()
            moved = {n: after[n] - before.get(n, 0) for n in after}
            if sorted(moved.values()) != [1] * len(moved):
                raise BenchError(f"apply of {self.app0} at {sha[:12]} moved helm revisions by {moved}, expected 1 each")
            m.samples.append(run.seconds)
            m.details.append(env_durations(run))
            start = time.perf_counter()
            for r in raw_releases:
                check(self._helm_upgrade(r, k))
            raw.samples.append(time.perf_counter() - start)
        m.notes.append(f"each sample: 1 upgrade per environment ({len(moved)} helm revisions moved by 1)")

    def _helm_upgrade(self, r: Release, revision: int, index: int = 0) -> Run:
        """helm upgrade --install --wait of one raw release with app `index`'s values at `revision`."""
        env_name = r.env
        values = write_values(self.work / "values" / f"{r.name}-{revision}.json", index, env_name, revision)
        argv = [self.tools.helm, "upgrade", "--install", r.name, self.chart, "-n", r.namespace, "-f", values]
        argv += ["--wait", "--timeout", HELM_WAIT]
        return run_measured(argv, self.tools.env, HELM_TIMEOUT)

    def apply_many(self, m: Measurement, raw: Measurement, parallel: Measurement | None = None) -> None:
        """promote apply prod after a change of every app, vs the sequential raw helm loop, alternating; with
        `parallel`, also vs raw helm at promote's concurrency (environments in chain order): what helm alone
        takes at that concurrency on this cluster."""
        index = {generate.app_name(i, self.name_apps): i for i in range(self.apps)}
        raw_releases = [Release(r.app, r.env, f"{r.name}-raw", r.namespace, r.values_file) for r in self.releases]
        raw.load_average = os.getloadavg()
        raw.notes.append(f"{len(raw_releases)} releases <release>-raw, installed untimed first, in parallel")
        with concurrent.futures.ThreadPoolExecutor(max_workers=HELM_DEPLOY_WORKERS) as pool:
            list(pool.map(lambda r: check(self._helm_upgrade(r, 0, index[r.app])), raw_releases))
        m.notes.append(f"--concurrency {self.concurrency}; {len(self.releases)} releases changed per sample")
        for k in range(1, self.repeat + 1):
            revision = 1000 + k  # apart from apply_one's revisions
            self.commit_every_app(revision)
            run = check(
                self.promote(
                    "apply", TARGET_ENV, "--concurrency", str(self.concurrency), "-o", "json", timeout=APPLY_TIMEOUT
                )
            )
            result = json.loads(run.stdout)
            synced = [r["outcome"] for e in result["environments"] for r in e["releases"]].count("synced")
            if synced != len(self.releases):
                raise BenchError(f"apply after a change of every app synced {synced}/{len(self.releases)} releases")
            m.samples.append(run.seconds)
            m.details.append(env_durations(run))
            if parallel is not None:
                # Values of their own, so that the loop after it changes every release again.
                parallel.samples.append(self._raw_parallel(raw_releases, revision + 1000, index))
            start = time.perf_counter()
            for r in raw_releases:
                check(self._helm_upgrade(r, revision, index[r.app]))
            raw.samples.append(time.perf_counter() - start)
        if parallel is not None:
            parallel.notes.append(f"{self.concurrency} at once per environment, default then prod")

    def _raw_parallel(self, raw_releases: Sequence[Release], revision: int, index: dict[str, int]) -> float:
        """helm upgrade --install --wait of every raw release, self.concurrency at once, one environment
        after the other (as promote apply orders them); the seconds it took."""
        start = time.perf_counter()
        for env in self.namespaces:
            todo = [r for r in raw_releases if r.env == env]
            with concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                list(pool.map(lambda r: check(self._helm_upgrade(r, revision, index[r.app])), todo))
        return time.perf_counter() - start

    def noop_apply(self, m: Measurement) -> None:
        """promote apply of APP0 with nothing changed: no helm upgrade may run."""
        total_moved = 0
        for _ in range(self.repeat):
            before = self.revisions()
            run = check(self.promote("apply", TARGET_ENV, "--app", self.app0, "-o", "json", timeout=APPLY_TIMEOUT))
            after = self.revisions()
            m.samples.append(run.seconds)
            m.details.append(env_durations(run))
            total_moved += sum(after[n] - before.get(n, 0) for n in after)
            outcomes = sorted({r["outcome"] for e in json.loads(run.stdout)["environments"] for r in e["releases"]})
            note = f"release outcomes {outcomes}; helm revisions {after}"
            if note not in m.notes:
                m.notes.append(note)
        self.info["noop_helm_upgrades"] = total_moved
        m.notes.append(f"helm upgrades run: {total_moved}")
        if total_moved:
            self.oddities.append(f"{m.name}: the no-op re-apply ran {total_moved} helm upgrade(s)")

    def wanted(self, *names: str) -> bool:
        """Whether any of these measurements is taken (all are, without --only)."""
        return not self.only or bool(self.only & set(names))

    def run_all(self) -> None:
        """Every measurement, in an order that needs no clean-up in between."""
        if self.only:
            self.run_only()
            return
        ms = self.measurement
        self.step(ms("render_floor", "helm template of every release, parallel on all cores"), self.render_floor)
        # The same floor in the environment promote gives each helm template (Go's GC off, a locale with
        # a small message catalogue): informational, so the table shows how much of promote's lead over
        # the floor is helm made cheaper rather than promote's own work.
        self.step(
            ms("render_floor_as_promote", "the render floor in the environment promote gives helm template"),
            self.render_floor_as_promote,
        )
        self.step(ms("baseline", "sequential helm template | kubectl diff --server-side"), self.baseline)
        self.step(ms("plan_cold", "promote plan prod, nothing deployed, render cache emptied"), self.plan_cold)
        self.step(ms("plan_cold_cached", "promote plan prod, nothing deployed, cache warm"), self.plan_cold_cached)
        if self.deploy == "promote":
            self.step(ms("apply_all", "promote apply prod over every app (informational)"), self.apply_all)
        else:
            self.step(ms("deploy_all_helm", "parallel helm upgrade --install of every release"), self.deploy_all_helm)
        self.step(ms("plan_warm", "promote plan prod, everything deployed, nothing changed"), self.plan_warm)
        one = ms("apply_one", f"promote apply prod --app {self.app0} after a committed values change")
        raw = ms("raw_helm", "helm upgrade --install --wait, default then prod, a value changed")
        self.step(one, lambda m: self.apply_one(m, raw))
        self.step(ms("noop_apply", f"promote apply prod --app {self.app0}, nothing changed"), self.noop_apply)
        self.take_apply_many()

    def take_apply_many(self) -> None:
        """apply many and its raw helm loop."""
        many = self.measurement("apply_many", f"promote apply prod after a change of all {self.apps} apps")
        loop = self.measurement("raw_helm_loop", "sequential helm upgrade --install --wait of as many releases")
        parallel = self.measurement(
            "raw_helm_parallel", f"helm upgrade --install --wait of as many releases, {self.concurrency} at once"
        )
        self.step(many, lambda m: self.apply_many(m, loop, parallel))

    def run_only(self) -> None:
        """The measurements --only names, after deploying everything when they need it."""
        ms = self.measurement
        if self.wanted("plan_warm", "apply_many"):
            self.step(ms("apply_all", "promote apply prod over every app (informational)"), self.apply_all)
        if self.wanted("plan_warm"):
            self.step(ms("plan_warm", "promote plan prod, everything deployed, nothing changed"), self.plan_warm)
        if self.wanted("apply_many"):
            self.take_apply_many()


# --- report ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: a ratio (or a value) and its limit."""

    name: str
    value: float | None
    limit: float
    unit: str = ""
    extra_ok: bool = True

    @property
    def verdict(self) -> str:
        """PASS, MISS, info for a ratio without a limit, or n/a when it could not be measured."""
        if self.value is None:
            return "n/a"
        if self.limit == float("inf"):
            return "info"  # a ratio worth reading, no target
        return "PASS" if self.value <= self.limit and self.extra_ok else "MISS"


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None when either is missing."""
    return a / b if a is not None and b else None


def targets(b: Bench) -> list[Target]:
    """The issue's targets, computed from the medians."""
    med = {name: m.median for name, m in b.measurements.items()}
    rss = [mb for name in ("plan_cold", "plan_warm") if name in b.measurements for mb in b.measurements[name].maxrss_mb]
    upgrades = b.info.get("noop_helm_upgrades")
    return [
        Target("cold plan / render floor", ratio(med.get("plan_cold"), med.get("render_floor")), 1.3),
        Target("cold plan / baseline", ratio(med.get("plan_cold"), med.get("baseline")), 0.45),
        Target("warm plan / baseline", ratio(med.get("plan_warm"), med.get("baseline")), 0.15),
        Target("apply one app / raw helm", ratio(med.get("apply_one"), med.get("raw_helm")), 1.1),
        Target(
            f"no-op re-apply / warm plan (helm upgrades: {upgrades if upgrades is not None else 'n/a'})",
            ratio(med.get("noop_apply"), med.get("plan_warm")),
            1.0,
            extra_ok=upgrades == 0,
        ),
        Target(
            f"apply {b.apps} changed apps x 2 envs / sequential raw helm loop",
            ratio(med.get("apply_many"), med.get("raw_helm_loop")),
            0.3,
        ),
        Target(
            f"apply {b.apps} changed apps x 2 envs / raw helm at --concurrency {b.concurrency} (informational)",
            ratio(med.get("apply_many"), med.get("raw_helm_parallel")),
            float("inf"),
        ),
        Target("peak RSS of promote plan (wait4 ru_maxrss)", max(rss) if rss else None, 150.0, " MB"),
    ]


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for the table."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def measurement_table(measurements: Sequence[Measurement]) -> str:
    """One row per measurement: median, samples, peak memory and notes."""
    rows = []
    for m in measurements:
        rss = f"{max(m.maxrss_mb):.0f} / {max(m.hwm_mb):.0f}" if m.maxrss_mb else ""
        samples = " ".join(f"{s:.2f}" for s in m.samples)
        rows.append([m.name, fmt(m.median), samples, rss, "ERROR" if m.error else "; ".join(m.notes)])
    header = ["measurement", "median s", "samples s", "RSS MB max/own", "notes"]
    return tabulate(rows, headers=header, tablefmt="github", maxcolwidths=[None, None, None, None, 70])


def report(b: Bench) -> str:
    """The tables printed at the end."""
    table = measurement_table(list(b.measurements.values()))
    trows = [[t.name, fmt(t.value) + t.unit, f"<= {t.limit:g}{t.unit}", t.verdict] for t in targets(b)]
    med = {name: m.median for name, m in b.measurements.items()}
    tuned = ratio(med.get("plan_cold"), med.get("render_floor_as_promote"))
    trows.append(["cold plan / render floor run as promote runs helm (informational)", fmt(tuned), "", ""])
    ttable = tabulate(trows, headers=["target", "measured", "target", "verdict"], tablefmt="github")
    return f"{table}\n\n{ttable}"


def git_info() -> dict[str, Any]:
    """The promote repository's commit, and whether promote/ has uncommitted changes."""
    sha = quick(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], dict(os.environ)).strip()
    dirty = quick(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "promote"], dict(os.environ))
    return {"sha": sha, "dirtyPaths": [line[3:] for line in dirty.splitlines()]}


def versions(tools: Tools) -> dict[str, Any]:
    """Versions of everything measured."""
    env = tools.env
    kube = json.loads(quick([tools.kubectl, "version", "-o", "json"], env))
    promote_version = quick([*tools.promote, "--version"], env).strip()
    return {
        "helm": quick([tools.helm, "version", "--short"], env).strip(),
        "kubectl": kube.get("clientVersion", {}).get("gitVersion"),
        "kube": kube.get("serverVersion", {}).get("gitVersion"),
        "promote": promote_version,
        "python": platform.python_version(),
        "paths": {"helm": tools.helm, "kubectl": tools.kubectl, "promote": tools.promote},
        "promoteSource": tools.promote_source,
        # Where the measured promote is imported from, to check that it is the one meant.
        "promoteModule": quick([*tools.promote[:-2], "-c", "import promote; print(promote.__file__)"], env).strip()
        if tools.promote[-2:] == ["-m", "promote.cli"]
        else tools.promote[0],
    }


def machine() -> dict[str, Any]:
    """The machine the numbers come from."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        mem_kb = next((int(line.split()[1]) for line in f if line.startswith("MemTotal:")), 0)
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpuModel": model,
        "cpuCount": os.cpu_count(),
        "cpuAffinity": len(os.sched_getaffinity(0)),
        "memTotalMB": mem_kb // 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark promote plan/apply against the local dev cluster.")
    parser.add_argument("--apps", type=int, help=f"apps to generate, 2 releases each (default: {DEFAULT_APPS})")
    parser.add_argument("--repeat", type=int, default=3, help="samples per measurement; the median is reported")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="dev cluster state directory")
    parser.add_argument("--keep-cluster", action="store_true", help="leave the cluster (and scratch dir) running")
    parser.add_argument(
        "--deploy",
        choices=["promote", "helm"],
        default="promote",
        help="deploy everything for the warm plan with one timed `promote apply prod` (default), or with "
        "parallel helm installs (faster; promote's first apply of app-00 then records it)",
    )
    parser.add_argument(
        "--chart", choices=generate.CHART_SHAPES, default="svc", help="the apps' chart: bench/charts/<shape>"
    )
    parser.add_argument(
        "--only", default="", metavar="NAME,…", help="take only these measurements (e.g. apply_many,plan_warm)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="promote apply --concurrency for apply many")
    parser.add_argument(
        "--controller-qps",
        type=int,
        metavar="N",
        help="run the cluster's controller-manager with --kube-api-qps N (burst 2N); default: upstream's 20",
    )
    parser.add_argument(
        "--promote-ref",
        metavar="REF",
        help="measure promote/ as committed at this Git ref of the repository (default: the installed promote)",
    )
    parser.add_argument(
        "--sizes",
        metavar="N,…",
        help="instead of the measurements above: render floor, loop, cold and warm plan and status at each "
        "of these release counts (e.g. 100,500,1000), deploying with parallel helm in between, and apply many "
        "at the first",
    )
    parser.add_argument(
        "--loop-sample",
        type=int,
        metavar="N",
        help="with --sizes: time the baseline loop over N random releases (fixed seed) and scale it up",
    )
    args = parser.parse_args(argv)
    apps_given = args.apps is not None
    args.apps = args.apps if apps_given else DEFAULT_APPS
    if args.apps < 1 or args.repeat < 1:
        parser.error("--apps and --repeat must be at least 1")
    sizes: list[int] = []
    if args.sizes is not None:
        import sizes as size_bench

        try:
            sizes = size_bench.parse_sizes(args.sizes)
        except ValueError as e:
            parser.error(str(e))
        if args.only or apps_given:
            parser.error("--sizes takes its own measurements at its own sizes: drop --only and --apps")
    if args.loop_sample is not None and (not sizes or args.loop_sample < 1):
        parser.error("--loop-sample wants --sizes and a count of at least 1")
    if args.repeat < 3:
        log(f"warning: --repeat {args.repeat} is below 3; medians of fewer samples are for debugging only")
    state_dir: Path = args.state_dir.expanduser().resolve()
    started = datetime.datetime.now(datetime.UTC)
    work = Path(tempfile.mkdtemp(prefix="promote-bench-"))
    results: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": machine(),
        "loadAverageBefore": os.getloadavg(),
    }
    bench: Bench | None = None
    taken: list[Any] = []  # sizes.Size, with --sizes
    problems: list[str] = []
    oddities: list[str] = []
    cluster_started = False
    try:
        results["promoteRepo"] = git_info()
        tools = make_tools(work, args.promote_ref, work / "promote-cache")
        apps = sizes[0] // 2 if sizes else args.apps
        name_apps = sizes[-1] // 2 if sizes else args.apps
        log(f"generating {apps} apps in {work / 'repo'}")
        repo = work / "repo"
        results["benchRepoSha"] = generate.generate(repo, apps, args.chart, name_apps=name_apps)
        if sizes:
            generate.generate(work / "repo-cold", apps, args.chart, generate.COLD_NAMESPACES, name_apps)
        log(f"starting a fresh dev cluster in {state_dir}")
        cluster_started = True
        tools.env["KUBECONFIG"] = cluster_up(state_dir, args.controller_qps)
        namespaces = [*generate.NAMESPACES.values(), *(generate.COLD_NAMESPACES.values() if sizes else ())]
        for ns in namespaces:
            quick([tools.kubectl, "create", "namespace", ns], tools.env)
        results["versions"] = versions(tools)
        if sizes:
            cache = work / "promote-cache"
            warm = Bench(
                tools, repo, apps, args.repeat, work, cache, "helm", args.chart,
                concurrency=args.concurrency, name_apps=name_apps,
            )  # fmt: skip
            cold = Bench(
                tools, work / "repo-cold", apps, args.repeat, work, cache, "helm", args.chart,
                namespaces=generate.COLD_NAMESPACES, name_apps=name_apps,
            )  # fmt: skip
            try:
                size_bench.take(warm, cold, sizes, args.loop_sample, into=taken)
            finally:
                problems.extend([*cold.problems, *warm.problems])
                oddities.extend([*cold.oddities, *warm.oddities])
        else:
            only = [n for n in args.only.split(",") if n]
            bench = Bench(
                tools,
                repo,
                args.apps,
                args.repeat,
                work,
                work / "promote-cache",
                args.deploy,
                chart=args.chart,
                only=only,
                concurrency=args.concurrency,
            )
            bench.run_all()
            problems.extend(bench.problems)
            oddities.extend(bench.oddities)
    except (BenchError, OSError, ValueError, RuntimeError, subprocess.SubprocessError) as e:
        problems.append(f"setup: {e}")
        log(f"ERROR {e}")
    except KeyboardInterrupt:
        problems.append("interrupted")
        log("interrupted")
    finally:
        if cluster_started and not args.keep_cluster:
            log("stopping the dev cluster")
            try:
                cluster_down(state_dir)
            except BenchError as e:
                problems.append(f"teardown: {e}")
        if args.keep_cluster:
            log(f"cluster kept: export KUBECONFIG={state_dir / 'kubeconfig'}; scratch dir {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["loadAverageAfter"] = os.getloadavg()
    results["durationSeconds"] = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    if bench is not None:
        results["measurements"] = {n: m.to_json() for n, m in bench.measurements.items()}
        results["targets"] = [{**asdict(t), "verdict": t.verdict} for t in targets(bench)]
        results["info"] = bench.info
    if taken:
        results.update(size_bench.to_json(taken))
    results["problems"] = problems
    results["oddities"] = oddities
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    sha = results.get("promoteRepo", {}).get("sha", "unknown")[:12]
    out = OUT_DIR / f"results-{sha}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    if bench is not None:
        print(report(bench))
    if taken:
        print(size_bench.report(taken, args.loop_sample))
    for p in problems:
        print(f"\nERROR: {p}")
    for o in oddities:
        print(f"\nODD: {o}")
    print(f"\nresults: {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    # Run the module imported as `run`, the one bench/sizes.py imports, so that both share one set of
    # classes (a BenchError raised there is the BenchError caught here).
    import run

    sys.exit(run.main())
