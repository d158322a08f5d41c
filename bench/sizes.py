"""Plan, status and memory from 100 to 1,000 releases, in one run on one cluster (issue 18).

`run.py --sizes 100,500,1000` hands its two Bench views of the generated repository to `take`:

    cold    a copy whose environments point at two namespaces nothing is ever deployed to
            (generate.COLD_NAMESPACES), so that every size's render floor, loop and cold plan see
            nothing deployed, as the single-size run does
    warm    the repository proper, deployed with parallel `helm upgrade --install --wait`

At each size, in increasing order, both grow to size/2 apps (a commit each), and then: the render floor,
the baseline loop and the cold plan on `cold`; the new releases deployed on `warm`; the warm plan and
`promote status` on `warm`. At the first size only, the apply of every app changed through both
environments against the sequential raw helm loop (`Bench.apply_many`), so that the issue's apply target
is judged in the same run, on the same cluster; its raw releases are uninstalled after it, so that later
sizes list as many releases as they measure. `targets` judges the issue's targets per size, `report`
prints the tables.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from run import (
    HELM_DEPLOY_WORKERS,
    HELM_TIMEOUT,
    PLAN_TIMEOUT,
    QUICK_TIMEOUT,
    TARGET_ENV,
    Bench,
    BenchError,
    Measurement,
    Target,
    check,
    fmt,
    log,
    measurement_table,
    ratio,
    run_measured,
)
from tabulate import tabulate

# The targets for plan and status as releases grow.
COLD_FLOOR_LIMIT = 1.2  # cold plan / render floor
WARM_LOOP_LIMIT = 0.1  # warm plan / baseline loop
PER_RELEASE_LIMIT = 1.15  # time per release at a size / at the smallest size
APPLY_LOOP_LIMIT = 0.3  # apply of every app changed / the sequential raw helm upgrade loop
RSS_LIMIT_MB = 250.0  # peak ru_maxrss of any promote command
# The promote commands measured at each size, whose time per release and memory are judged.
COMMANDS = ("plan_cold", "plan_warm", "status")


# The dev cluster's Service range (devcluster.cluster.SERVICE_CIDR, a /24) holds 253 Services, and every
# release of either chart has one: past that, helm install fails with "failed to allocate a serviceIP ...
# range is full". A second range for this run's cluster, through the ServiceCIDR API (GA in 1.33).
SERVICE_CIDR_NAME = "bench-sizes"
EXTRA_SERVICE_CIDR: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "ServiceCIDR",
    "metadata": {"name": SERVICE_CIDR_NAME},
    "spec": {"cidrs": ["10.1.0.0/16"]},
}


def widen_service_range(bench: Bench) -> None:
    """Add EXTRA_SERVICE_CIDR to the cluster and wait until the apiserver allocates from it."""
    tools = bench.tools
    check(
        run_measured(
            [tools.kubectl, "apply", "-f", "-"], tools.env, QUICK_TIMEOUT, stdin=json.dumps(EXTRA_SERVICE_CIDR)
        )
    )
    argv = [tools.kubectl, "wait", "--for=condition=Ready", f"servicecidr/{SERVICE_CIDR_NAME}", "--timeout=60s"]
    check(run_measured(argv, tools.env, QUICK_TIMEOUT + 10))


def parse_sizes(text: str) -> list[int]:
    """`100,500,1000` as increasing even release counts (2 releases per app); ValueError otherwise."""
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(n < 2 or n % 2 for n in sizes):
        raise ValueError(f"--sizes wants even release counts of at least 2, got {text!r}")
    if sizes != sorted(set(sizes)):
        raise ValueError(f"--sizes must increase, got {text!r}")
    return sizes


@dataclass
class Size:
    """The measurements taken at one size, by name (render_floor, baseline, plan_cold, …)."""

    releases: int
    measurements: dict[str, Measurement]
    helm_templates_warm: int | None = None  # helm template runs of one more warm plan (should be 0)
    concurrency: int | None = None  # promote apply --concurrency, where apply_many was taken

    def step(self, bench: Bench, name: str, description: str, body: Callable[[Measurement], None]) -> None:
        """Take one measurement at this size with bench.step (which records an error and goes on)."""
        m = Measurement(f"{name}@{self.releases}", f"{description} ({self.releases} releases)")
        self.measurements[name] = m
        bench.step(m, body)

    def median(self, name: str) -> float | None:
        """The median of one measurement, None when it is missing or has no sample."""
        m = self.measurements.get(name)
        return m.median if m else None

    def per_release(self, name: str) -> float | None:
        """Median seconds per release."""
        med = self.median(name)
        return med / self.releases if med is not None else None

    def peak_rss(self, name: str) -> float | None:
        """The largest ru_maxrss (MB) of a promote command's samples."""
        m = self.measurements.get(name)
        return max(m.maxrss_mb) if m and m.maxrss_mb else None


def status(bench: Bench, m: Measurement) -> None:
    """`promote status -o json` over every environment, everything deployed: each release reported,
    and any that is not Synced and Healthy is noted as an oddity."""
    for _ in range(bench.repeat):
        run = check(bench.promote("status", "-o", "json", timeout=PLAN_TIMEOUT, memory=True), ok=(0, 2))
        m.record(run)
        rows = json.loads(run.stdout).get("releases", [])
        if len(rows) != len(bench.releases):
            raise BenchError(f"status reports {len(rows)} releases, expected {len(bench.releases)}")
        states = Counter(f"{row.get('sync')}/{row.get('health')}" for row in rows)
        note = f"{len(rows)} releases, sync/health {dict(states)}"
        if note not in m.notes:
            m.notes.append(note)
        odd = {s: n for s, n in states.items() if s != "Synced/Healthy"}
        oddity = f"{m.name}: not every release is Synced and Healthy: {odd}"
        if odd and oddity not in bench.oddities:
            bench.oddities.append(oddity)


def count_helm_templates(bench: Bench) -> int:
    """`helm template` runs of one untimed warm plan, through a PROMOTE_HELM wrapper that logs each helm
    run: an unchanged release proven from the render cache runs none (issue 18). Untimed, as promote asks a
    script in front of helm for its version every time and gives it another environment."""
    log_file = bench.work / "helm-runs.log"
    log_file.write_text("")
    wrapper = bench.work / "helm-counting"
    wrapper.write_text(
        f'#!/bin/sh\necho "$1" >> {shlex.quote(str(log_file))}\nexec {shlex.quote(bench.tools.helm)} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**bench.tools.env, "PROMOTE_HELM": str(wrapper)}
    argv = [*bench.tools.promote, "--no-color", "-C", str(bench.repo), "plan", TARGET_ENV, "-o", "json"]
    check(run_measured(argv, env, PLAN_TIMEOUT))
    return log_file.read_text().split().count("template")


def apply_many(warm: Bench, here: Size) -> None:
    """`Bench.apply_many` at this size (every app changed, promote apply prod against the sequential raw
    helm loop), then the loop's `-raw` releases uninstalled: they share the namespaces of the measured
    releases, and a plan lists every helm release of its namespaces."""
    loop = Measurement(f"raw_helm_loop@{here.releases}", "")
    here.measurements["raw_helm_loop"] = loop
    parallel = Measurement(
        f"raw_helm_parallel@{here.releases}",
        f"helm upgrade --install --wait, {warm.concurrency} at once per environment ({here.releases} releases)",
    )
    here.measurements["raw_helm_parallel"] = parallel
    here.concurrency = warm.concurrency
    here.step(
        warm,
        "apply_many",
        f"promote apply prod --concurrency {warm.concurrency} after a change of all {here.releases // 2} apps, "
        f"against sequential helm upgrade --install --wait of as many releases",
        lambda m: warm.apply_many(m, loop, parallel),
    )
    loop.description = f"sequential helm upgrade --install --wait, one per release ({here.releases} releases)"

    def uninstall(name: str, namespace: str) -> None:
        argv = [warm.tools.helm, "uninstall", name, "-n", namespace, "--ignore-not-found", "--wait"]
        check(run_measured(argv, warm.tools.env, HELM_TIMEOUT))

    log(f"uninstalling the {len(warm.releases)} raw releases of apply_many")
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=HELM_DEPLOY_WORKERS) as pool:
            list(pool.map(lambda r: uninstall(f"{r.name}-raw", r.namespace), warm.releases))
    except BenchError as e:
        warm.problems.append(f"uninstalling apply_many's raw releases: {e}")


def take(warm: Bench, cold: Bench, sizes: list[int], loop_sample: int | None, into: list[Size]) -> None:
    """Every size's measurements, in increasing order of size, growing and deploying in between; each
    size is appended to `into` as it starts, so that an interrupted run keeps what it took."""
    widen_service_range(warm)
    deployed: set[tuple[str, str]] = set()
    for size in sizes:
        cold.grow(size // 2)
        warm.grow(size // 2)
        new = [r for r in warm.releases if (r.namespace, r.name) not in deployed]
        here = Size(size, {})
        into.append(here)
        here.step(cold, "render_floor", "helm template of every release, parallel on all cores", cold.render_floor)
        here.step(
            cold,
            "baseline",
            "sequential helm template | kubectl diff --server-side, nothing deployed",
            lambda m: cold.baseline(m, loop_sample),
        )
        here.step(cold, "plan_cold", "promote plan prod, nothing deployed, render cache emptied", cold.plan_cold)
        here.step(
            warm,
            "deploy_helm",
            f"parallel helm upgrade --install --wait of the {len(new)} new releases",
            functools.partial(warm.deploy_all_helm, only=new),
        )
        if not here.measurements["deploy_helm"].error:
            deployed.update((r.namespace, r.name) for r in new)
        here.step(warm, "plan_warm", "promote plan prod, everything deployed, nothing changed", warm.plan_warm)
        here.step(warm, "status", "promote status, everything deployed, nothing changed", lambda m: status(warm, m))
        try:
            here.helm_templates_warm = count_helm_templates(warm)
        except (BenchError, OSError) as e:
            warm.problems.append(f"helm runs of a warm plan at {size}: {e}")
        else:
            log(f"a warm plan at {size} releases ran helm template {here.helm_templates_warm} times")
            if here.helm_templates_warm:
                warm.oddities.append(
                    f"a warm plan at {size} releases ran helm template {here.helm_templates_warm} times (expected 0)"
                )
        if size == sizes[0]:
            apply_many(warm, here)


def targets(sizes: list[Size]) -> list[tuple[int, Target]]:
    """The issue's targets at each size, as (releases, target)."""
    out: list[tuple[int, Target]] = []
    first = sizes[0] if sizes else None
    for s in sizes:
        out.append(
            (
                s.releases,
                Target(
                    "cold plan / render floor", ratio(s.median("plan_cold"), s.median("render_floor")), COLD_FLOOR_LIMIT
                ),
            )
        )
        out.append(
            (
                s.releases,
                Target(
                    "warm plan / baseline loop", ratio(s.median("plan_warm"), s.median("baseline")), WARM_LOOP_LIMIT
                ),
            )
        )
        if first is not None and s is not first:
            for name in COMMANDS:
                value = ratio(s.per_release(name), first.per_release(name))
                label = f"{name} time per release / at {first.releases}"
                out.append((s.releases, Target(label, value, PER_RELEASE_LIMIT)))
        if "apply_many" in s.measurements:
            label = f"apply {s.releases // 2} changed apps x 2 envs (--concurrency {s.concurrency}) / raw helm loop"
            value = ratio(s.median("apply_many"), s.median("raw_helm_loop"))
            out.append((s.releases, Target(label, value, APPLY_LOOP_LIMIT)))
            label = f"apply / raw helm at --concurrency {s.concurrency} (informational)"
            value = ratio(s.median("apply_many"), s.median("raw_helm_parallel"))
            out.append((s.releases, Target(label, value, float("inf"))))
        rss = [mb for name in COMMANDS if (mb := s.peak_rss(name)) is not None]
        out.append(
            (
                s.releases,
                Target("peak RSS of promote (wait4 ru_maxrss)", max(rss) if rss else None, RSS_LIMIT_MB, " MB"),
            )
        )
    return out


def to_json(sizes: list[Size]) -> dict[str, Any]:
    """Every size's measurements and judged targets, for the results file."""
    return {
        "sizes": {str(s.releases): {n: m.to_json() for n, m in s.measurements.items()} for s in sizes},
        "helmTemplatesInWarmPlan": {str(s.releases): s.helm_templates_warm for s in sizes},
        "sizeTargets": [
            {"releases": n, "name": t.name, "value": t.value, "limit": t.limit, "unit": t.unit, "verdict": t.verdict}
            for n, t in targets(sizes)
        ],
    }


def ms(seconds: float | None) -> str:
    """Seconds per release as milliseconds, for the table."""
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def report(sizes: list[Size], loop_sample: int | None) -> str:
    """The tables printed at the end: every sample, a summary per size, and the targets per size."""
    every = [m for s in sizes for m in s.measurements.values()]
    header = ["releases", "floor s", "loop s", "cold s", "warm s", "status s", "ms/rel floor", "ms/rel loop"]
    header += ["ms/rel cold", "ms/rel warm", "ms/rel status", "RSS MB cold/warm/status", "helm tpl/warm plan"]
    rows = []
    for s in sizes:
        names = ("render_floor", "baseline", *COMMANDS)
        rss = " / ".join(fmt(s.peak_rss(n), 0) for n in COMMANDS)
        helm = "n/a" if s.helm_templates_warm is None else str(s.helm_templates_warm)
        times = [fmt(s.median(n)) for n in names]
        rows.append([s.releases, *times, *(ms(s.per_release(n)) for n in names), rss, helm])
    summary = tabulate(rows, headers=header, tablefmt="github")
    trows = [[n, t.name, fmt(t.value) + t.unit, f"<= {t.limit:g}{t.unit}", t.verdict] for n, t in targets(sizes)]
    ttable = tabulate(trows, headers=["releases", "target", "measured", "limit", "verdict"], tablefmt="github")
    note = ""
    if loop_sample is not None:
        note = (
            f"\n\nThe baseline loop is SAMPLED: at each size larger than {loop_sample} releases it was timed over "
            f"{loop_sample} releases picked at random (fixed seed) and scaled up to all of them."
        )
    return f"{measurement_table(every)}\n\n{summary}{note}\n\n{ttable}"
