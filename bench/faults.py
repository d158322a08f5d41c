"""The fault suite of issue 19: promote against bad input, crashes, races and a dying apiserver, on the real
local control plane, with the figures printed and every goal checked.

`python bench/faults.py [--seed N] [--quick] [--state-dir DIR]` reuses the dev cluster in `--state-dir`
(default `$DEV_CLUSTER_DIR`, as the test session's), or starts one there. In two fresh namespaces it
deploys the python-app test repository (tests/support/repo.py) with marker secrets in a Secret value, in a
`writeOnly` value rendered into a ConfigMap, and in `--set` of a `writeOnly` key, then runs, each command
a `python -m promote.cli` subprocess with a timeout:

    bad inputs     the generated cases of bench/fault_inputs.py, one command each, with the helm revisions
                   and resourceVersions of both namespaces (and the namespace list) compared around it
    failing hook   a failing pre-sync hook, then a never-ready Deployment, in `default`
    concurrency    N concurrent `apply prod` of one change
    SIGKILL        `apply prod` killed at a seeded random point, N times, each followed by a re-run
    apiserver      the kube-apiserver SIGKILLed mid-apply, restarted after promote gave up, and a re-run
    secrets        every byte the suite captured searched for the marker secrets and the kube token

It prints the figures (80 columns) and exits 1 when any goal is missed. The namespaces are deleted at the
end; the cluster is left running (scripts/test stops it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(REPO_ROOT), str(BENCH_DIR)]

import fault_inputs as fi  # noqa: E402
import yaml  # noqa: E402

from devcluster.cluster import (  # noqa: E402
    ClusterHandle,
    default_state_dir,
    kill_component,
    start_cluster,
    start_component,
)
from devcluster.kube import KubeError  # noqa: E402
from tests.support.cli import Process, start_promote  # noqa: E402
from tests.support.helm import helm_values, storage, synced_stamps  # noqa: E402
from tests.support.kube import create_namespace, delete_namespace, get, lease  # noqa: E402
from tests.support.kube import snapshot as release_snapshot  # noqa: E402
from tests.support.repo import APP, PROD_RELEASE, commit, load_definition, make_repo, write_definition  # noqa: E402
from tests.support.wait import wait_for  # noqa: E402

PROMOTE = [sys.executable, "-m", "promote.cli"]
CASE_TIMEOUT = 60.0
APPLY_TIMEOUT = 240.0
LEASE_TTL = 4  # seconds, for the applies that are killed: a re-run waits about this long for their lease
LEASE_SLACK = 2.0  # how much later than its TTL a dead holder's lease may be taken (1 s polls, ours 0.2 s)
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|unexpected \w+: .*--debug")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What a bad input must not change: helm's storage (Secrets), and everything the chart or promote makes.
COLLECTIONS = {
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Service": "/api/v1/namespaces/{ns}/services",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "ReplicaSet": "/apis/apps/v1/namespaces/{ns}/replicasets",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "Lease": "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
}


def _waiting_since(proc: Process) -> dict[str, float]:
    """When an apply (its JSON result) first saw each environment's lock held by another, as epoch seconds."""
    try:
        events = proc.result().get("events") or []
    except ValueError:
        return {}
    out: dict[str, float] = {}
    for e in events:
        if e.get("kind") == "Lease" and e.get("status") == "Waiting" and e.get("env") not in out:
            out[e["env"]] = datetime.fromisoformat(str(e["time"]).replace("Z", "+00:00")).timestamp()
    return out


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Result:
    """One finished promote: exit code (None on timeout), output, seconds."""

    code: int | None
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return ANSI.sub("", self.out + self.err)


@dataclass
class Verdict:
    """What one bad input did wrong (empty lists: nothing)."""

    case: fi.Case
    result: Result
    problems: list[str] = field(default_factory=list)


@dataclass
class Check:
    """One goal of a scenario: what was measured and whether it meets the goal."""

    goal: str
    value: str
    ok: bool
    detail: str = ""


class Suite:
    def __init__(self, args: argparse.Namespace, handle: ClusterHandle, scratch: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.handle = handle
        self.kube = handle.kube()
        self.scratch = scratch
        # promote's cache (render cache, keys) in the scratch directory; not the harness's (its binaries).
        # A CI log is wide: at 80 columns a table cuts a long file path in the middle (file:line stays).
        self.child_env = {"PROMOTE_CACHE": str(scratch / "cache"), "COLUMNS": "250"}
        self.captured: list[tuple[str, str]] = []  # (what ran, every byte it printed), for the secret search
        self.checks: list[Check] = []
        self.verdicts: list[Verdict] = []
        self.timings: dict[str, float] = {}
        self.skipped: set[str] = set()  # scenarios left out (--skip): their goals are not judged
        tag = secrets.token_hex(4)
        # Markers: a Secret value, a writeOnly value rendered into a ConfigMap, a writeOnly --set value.
        self.secret_value = f"faults-secret-{tag}-S"
        self.write_only_value = f"faults-writeonly-{tag}-W"
        self.set_value = f"faults-setvalue-{tag}-X"
        self.fake_token = f"faults-token-{tag}-T"
        self.admin_token = str(yaml.safe_load(handle.kubeconfig.read_text())["users"][0]["user"]["token"])
        self.namespaces = [create_namespace(self.kube, "faults"), create_namespace(self.kube, "faults")]
        self.default_ns, self.prod_ns = self.namespaces
        self.repo = Path()

    # --- running promote ---------------------------------------------------------------------------

    def promote(
        self, *args: str, timeout: float = CASE_TIMEOUT, env: dict[str, str] | None = None, repo: bool = True
    ) -> Result:
        """`python -m promote.cli --no-color -C REPO ARGS`, captured, with a timeout (the child killed after)."""
        argv = [*PROMOTE, "--no-color", *(["-C", str(self.repo)] if repo else []), *args]
        start = time.monotonic()
        with subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.child_env, **(env or {})},
            start_new_session=True,
        ) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
                code: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                out, err = proc.communicate()
                code = None
        result = Result(code, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - start)
        self.captured.append((" ".join(args)[:100], result.out + result.err))
        return result

    def background(self, name: str, *args: str) -> Process:
        """`promote ARGS` as its own process group, output in files (collected by `finish`)."""
        return start_promote(self.repo, self.scratch / "logs", name, *args, env=self.child_env)

    def finish(self, proc: Process, timeout: float) -> int | None:
        """Wait for a background promote (killing it on timeout); its output goes to the capture."""
        try:
            code: int | None = proc.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        self.captured.append((proc.out.stem, proc.stdout() + proc.stderr()))
        return code

    # --- the cluster, as an oracle independent of promote ----------------------------------------

    def state(self) -> dict[str, str]:
        """resourceVersion of every object that matters in the test namespaces, and the namespace list."""
        out: dict[str, str] = {}
        for ns in self.namespaces:
            for kind, path in COLLECTIONS.items():
                try:
                    items = self.kube.get(path.format(ns=ns)).get("items") or []
                except KubeError as e:
                    if e.status == 404:
                        continue
                    raise
                for item in items:
                    md = item["metadata"]
                    out[f"{kind} {ns}/{md['name']}"] = str(md.get("resourceVersion"))
        for item in self.kube.get("/api/v1/namespaces").get("items") or []:
            out[f"Namespace {item['metadata']['name']}"] = "exists"
        return out

    def revisions(self) -> dict[str, int]:
        """The newest helm revision of each release (0 when none)."""
        out = {}
        for ns, rel in ((self.default_ns, APP), (self.prod_ns, PROD_RELEASE)):
            found = [int(s["metadata"]["labels"]["version"]) for s in storage(self.kube, ns, rel)]
            out[rel] = max(found, default=0)
        return out

    def wait_for_controllers(self) -> None:
        """Until the controllers work: a fresh namespace gets its `default` ServiceAccount."""
        probe = create_namespace(self.kube, "faults-probe")
        try:
            wait_for(
                "the default ServiceAccount",
                lambda: get(self.kube, f"/api/v1/namespaces/{probe}/serviceaccounts/default"),
                120,
            )
        finally:
            delete_namespace(self.kube, probe)

    def leases(self) -> dict[str, dict[str, Any] | None]:
        return {
            env: lease(self.kube, ns, f"promote-{env}")
            for env, ns in (("default", self.default_ns), ("prod", self.prod_ns))
        }

    # --- the repository -----------------------------------------------------------------------------

    def edit(self, message: str, change: Callable[[dict[str, Any]], None]) -> None:
        doc = load_definition(self.repo)
        change(doc)
        write_definition(self.repo, doc)
        commit(self.repo, message)

    def set_tag(self, tag: str) -> None:
        self.edit(f"image {tag}", lambda d: d["values"]["image"].update({"tag": tag}))

    def setup(self) -> None:
        log(f"namespaces {self.default_ns} (default), {self.prod_ns} (prod); scratch {self.scratch}")
        for ns in self.namespaces:  # pods (hooks) need it, and a controller-manager may be slow to make it
            wait_for(
                f"the default ServiceAccount of {ns}",
                lambda ns=ns: get(self.kube, f"/api/v1/namespaces/{ns}/serviceaccounts/default"),
                120,
            )
        repo = make_repo(self.scratch, self.default_ns, self.prod_ns)
        self.repo = repo
        schema_path = repo / fi.APP_SCHEMA
        schema = json.loads(schema_path.read_text())
        schema["properties"]["config"]["properties"]["greeting"]["writeOnly"] = True
        schema_path.write_text(json.dumps(schema, indent=2) + "\n")
        (repo / fi.VALUES_FILE).parent.mkdir(parents=True, exist_ok=True)
        (repo / fi.VALUES_FILE).write_bytes(fi.dump({"config": {"logLevel": "info"}}))
        (repo / fi.SHARED).write_bytes(
            fi.dump({"environments": [{"name": "default", "values": {"podAnnotations": {"team": "faults"}}}]})
        )
        doc = load_definition(repo)
        doc["valuesFiles"] = ["values/common.yaml"]
        doc["values"] = {
            "image": {"tag": "1.0.0"},
            "secret": {"password": self.secret_value},
            "config": {"greeting": f"hello {self.write_only_value}"},
        }
        write_definition(repo, doc)
        commit(repo, "fault suite: marker secrets, a values file and a shared file")
        start = time.monotonic()
        r = self.promote("apply", "prod", "--yes", "--timeout", "120s", timeout=APPLY_TIMEOUT)
        if r.code != 0:
            raise SystemExit(f"the first apply failed (exit {r.code}):\n{r.text[-3000:]}")
        self.apply_seconds = time.monotonic() - start
        log(f"deployed in {self.apply_seconds:.1f}s")
        inputs = self.scratch / "inputs"
        inputs.mkdir()
        shutil.copytree(repo / fi.CHART, inputs / "outside-chart")
        self.good_plan, self.default_plan = self.scratch / "plan-prod.json", self.scratch / "plan-default.json"
        self.set_plan = self.scratch / "plan-set.json"
        plans = (("prod", self.good_plan, ()), ("default", self.default_plan, ()))
        # A writeOnly key given on the command line: its value must stay out of the output and the file.
        plans += (("prod", self.set_plan, ("--set", f"config.greeting={self.set_value}")),)
        for env, path, extra in plans:
            r = self.promote("plan", env, "--out", str(path), *extra)
            if r.code != 0:
                raise SystemExit(f"plan {env} --out failed (exit {r.code}):\n{r.text[-3000:]}")
        base = {p: (repo / p).read_bytes() for p in (*fi.REPO_FILES, fi.CHART_YAML, fi.TEMPLATE)}
        self.context = fi.Context(
            rng=self.rng,
            base=base,
            inputs=inputs,
            kubeconfig=self.handle.kubeconfig,
            good_plan=self.good_plan,
            default_plan=self.default_plan,
            secret_set=self.set_value,
            fake_token=self.fake_token,
        )

    # --- bad inputs ----------------------------------------------------------------------------------

    def prepare(self, case: fi.Case) -> None:
        for rel in case.remove:
            p = self.repo / rel
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        for rel, content in case.files.items():
            p = self.repo / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
        for rel, target in case.links.items():
            p = self.repo / rel
            if p.exists() or p.is_symlink():
                p.unlink()
            p.symlink_to(target)
        for path, content in case.outside.items():
            path.write_bytes(content)

    def restore(self, case: fi.Case) -> None:
        for rel in case.links:
            p = self.repo / rel
            if p.is_symlink():
                p.unlink()
        for rel in case.files:
            p = self.repo / rel
            if p.is_file() and rel not in self.context.base:
                p.unlink()
        subprocess.run(["git", "reset", "-q", "--hard"], cwd=self.repo, check=True, timeout=60)
        subprocess.run(["git", "clean", "-qfd"], cwd=self.repo, check=True, timeout=60)
        for path in case.outside:
            path.unlink(missing_ok=True)

    def bad_inputs(self) -> None:
        cases = fi.generate(self.context)
        if self.args.quick:
            cases = cases[::3]
        if self.args.match:
            cases = [c for c in cases if re.search(self.args.match, f"{c.surface}: {c.name}")]
        log(f"{len(cases)} bad inputs")
        before = self.state()
        for i, case in enumerate(cases):
            self.prepare(case)
            try:
                result = self.promote(*case.pre, *case.argv, env=case.env)
            finally:
                self.restore(case)
            after = self.state()
            verdict = Verdict(case, result)
            text = result.text
            if result.code is None:
                verdict.problems.append("hang")
            elif result.code not in case.codes:
                verdict.problems.append(f"exit {result.code}")
            if TRACEBACK.search(text):
                verdict.problems.append("traceback")
            flat = " ".join(text.split())  # errors are wrapped to the terminal's width
            missing = [n for n in case.names if n not in flat]
            if missing or (case.place and not re.search(case.place, flat)):
                verdict.problems.append("unnamed")
            if after != before:
                changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                verdict.problems.append("mutation: " + ", ".join(changed[:4]))
            before = after
            self.verdicts.append(verdict)
            if verdict.problems and self.args.verbose:
                log(f"{i} {case.surface}: {case.name}: {'; '.join(verdict.problems)}\n    {text.strip()[:600]}")
            if i % 50 == 49:
                log(f"{i + 1}/{len(cases)} bad inputs")

    # --- a failing hook and a never-ready Deployment in default ------------------------------------

    def failing_default(self) -> None:
        for what, change in (
            (
                "a failing hook",
                lambda d: d.update({"hooks": {"preSync": {"annotations": {"sim.promote.dev/fail": "true"}}}}),
            ),
            (
                "a never-ready Deployment",
                lambda d: d.update({"podAnnotations": {"sim.promote.dev/never-ready": "true"}}),
            ),
        ):
            good = load_definition(self.repo)
            prod_before = self.state_of(self.prod_ns)
            default_objects = release_snapshot(self.kube, self.default_ns, APP)
            default_values = helm_values(self.default_ns, APP)
            revisions = self.revisions()

            def bad(d: dict[str, Any], change: Callable[[dict[str, Any]], None] = change) -> None:
                d["values"]["image"]["tag"] = f"9.9.{len(self.checks)}"
                change(d["environments"][0]["values"])

            self.edit(f"{what} in default", bad)
            r = self.promote("apply", "prod", "--yes", "--timeout", "15s", timeout=APPLY_TIMEOUT)
            prod_after = self.state_of(self.prod_ns)
            objects_after = release_snapshot(self.kube, self.default_ns, APP)
            values_after = helm_values(self.default_ns, APP)
            ok_exit = r.code == 1 and not TRACEBACK.search(r.text)
            prod_same = prod_after == prod_before and self.revisions()[PROD_RELEASE] == revisions[PROD_RELEASE]
            back = objects_after == default_objects and values_after == default_values
            self.checks.append(
                Check(
                    f"{what} in default",
                    f"exit {r.code}, prod {'same' if prod_same else 'CHANGED'}, {'back' if back else 'NOT back'}",
                    ok_exit and prod_same and back,
                    r.text[-1500:],
                )
            )
            write_definition(self.repo, good)
            commit(self.repo, f"undo {what}")

    def state_of(self, ns: str) -> dict[str, str]:
        return {k: v for k, v in self.state().items() if f" {ns}/" in k and not k.startswith("Lease ")}

    # --- concurrent applies --------------------------------------------------------------------------

    def concurrency(self, n: int) -> None:
        self.set_tag("1.1.0")
        before = self.revisions()
        procs = [
            self.background(
                f"concurrent-{i}", "apply", "prod", "--yes", "--timeout", "120s", "--lock-timeout", "600s", "-o", "json"
            )
            for i in range(n)
        ]
        codes = [self.finish(p, 900) for p in procs]
        after = self.revisions()
        upgrades = [after[r] - before[r] for r in (APP, PROD_RELEASE)]
        outputs = [p.stdout() + p.stderr() for p in procs]
        named = sum(1 for c, o in zip(codes, outputs, strict=True) if c == 1 and "locked by" in o)
        others = [
            f"exit {c}: {o[-300:]}"
            for c, o in zip(codes, outputs, strict=True)
            if c != 0 and not (c == 1 and "locked by" in o)
        ]
        self.checks.append(
            Check(
                f"{n} concurrent apply prod: upgrades/release",
                f"{upgrades[0]}, {upgrades[1]}",
                upgrades == [1, 1],
            )
        )
        self.checks.append(
            Check(
                "  the others waited or named the holder",
                f"{codes.count(0)} ok, {named} named, {len(others)} other",
                not others,
                "\n".join(others),
            )
        )

    # --- SIGKILL of apply prod ------------------------------------------------------------------------

    def sigkills(self, n: int) -> None:
        converged, outlived, unfinished, worst = 0, 0, 0, 0.0
        details: list[str] = []
        # Kill points are drawn over the time one whole apply of a change takes, measured here.
        self.set_tag("1.2.0-base")
        start = time.monotonic()
        r = self.promote("apply", "prod", "--yes", "--timeout", "120s", timeout=APPLY_TIMEOUT)
        window = time.monotonic() - start
        if r.code != 0:
            raise RuntimeError(f"the apply before the kills failed (exit {r.code}):\n{r.text[-2000:]}")
        log(f"an apply of one change takes {window:.1f}s: kills within it")
        for i in range(n):
            self.set_tag(f"1.2.{i}")
            before = self.revisions()
            proc = self.background(
                f"killed-{i}", "apply", "prod", "--yes", "--timeout", "60s", "--lock-ttl", f"{LEASE_TTL}s", "-o", "json"
            )
            time.sleep(self.rng.uniform(0.2, window))
            proc.kill()
            self.captured.append((proc.out.stem, proc.stdout() + proc.stderr()))
            dead = {env: (lz or {}).get("spec", {}).get("holderIdentity") for env, lz in self.leases().items()}
            # No promotion recorded for an unfinished apply: only a healthy revision is stamped synced, and prod
            # is touched only once default's new revision was stamped.
            stamps = synced_stamps(self.kube, self.default_ns, APP)
            status = {
                int(s["metadata"]["labels"]["version"]): s["metadata"]["labels"]["status"]
                for s in storage(self.kube, self.default_ns, APP)
            }
            bad_stamp = [r for r, at in stamps.items() if at and status.get(r) != "deployed"]
            after_kill = self.revisions()
            prod_early = after_kill[PROD_RELEASE] > before[PROD_RELEASE] and not any(
                at for r, at in stamps.items() if r > before[APP]
            )
            if bad_stamp or prod_early:
                unfinished += 1
                details.append(f"kill {i}: stamped {bad_stamp}, prod upgraded before default finished: {prod_early}")
            # The re-run: its lease must replace the dead one within the TTL (plus polling slack).
            rerun = self.background(
                f"rerun-{i}", "apply", "prod", "--yes", "--timeout", "60s", "--lock-timeout", "120s", "-o", "json"
            )
            taken: dict[str, float] = {}
            while rerun.proc.poll() is None:
                for env, lz in self.leases().items():
                    holder = (lz or {}).get("spec", {}).get("holderIdentity")
                    if env not in taken and dead.get(env) and holder and holder != dead[env]:
                        taken[env] = time.time()
                time.sleep(0.2)
            code = self.finish(rerun, APPLY_TIMEOUT)
            # From when the re-run first saw the dead holder (its "Waiting" Lease event; it plans before it
            # looks): a lease not renewed any more is taken once its TTL has passed, plus one 1 s poll.
            seen = _waiting_since(rerun)
            for env, at in taken.items():
                late = at - seen.get(env, at) - LEASE_TTL if env in seen else 0.0
                worst = max(worst, late)
                if late > LEASE_SLACK:
                    outlived += 1
                    details.append(f"kill {i}: the dead lease of {env} blocked {late:.1f}s past its TTL")
            left = {env: (lz or {}).get("spec", {}).get("holderIdentity") for env, lz in self.leases().items() if lz}
            if left:
                outlived += 1
                details.append(f"kill {i}: leases left after the re-run: {left}")
            plan = self.promote("plan", "prod", "--detailed-exitcode")
            if code == 0 and plan.code == 0:
                converged += 1
            else:
                details.append(f"kill {i}: re-run exit {code}, plan exit {plan.code}")
                details += [rerun.stderr()[-800:], plan.text[-600:]]
            if self.args.verbose:
                log(f"kill {i}: re-run {code}, plan {plan.code}, leases taken {sorted(taken)}")
        self.checks.append(
            Check(
                f"{n} SIGKILLs of apply prod: re-runs converge", f"{converged}/{n}", converged == n, "\n".join(details)
            )
        )
        self.checks.append(
            Check(
                f"  leases outliving TTL ({LEASE_TTL}s + {LEASE_SLACK:.0f}s)",
                f"{outlived} (worst {worst:+.1f}s)",
                outlived == 0,
            )
        )
        self.checks.append(Check("  promotions recorded for unfinished applies", str(unfinished), unfinished == 0))

    # --- the apiserver killed mid-apply ------------------------------------------------------------

    def apiserver(self) -> None:
        self.set_tag("1.3.0")
        before = self.revisions()
        proc = self.background(
            "apiserver", "apply", "prod", "--yes", "--timeout", "30s", "--lock-ttl", "10s", "-o", "json"
        )
        deadline = time.monotonic() + 120
        while self.revisions()[APP] == before[APP] and time.monotonic() < deadline and proc.proc.poll() is None:
            time.sleep(0.05)
        time.sleep(self.rng.uniform(0.0, 0.5))
        kill_component(self.handle.state_dir, "kube-apiserver")
        down = time.monotonic()
        try:
            code = self.finish(proc, 180)
            gave_up = time.monotonic() - down
        finally:
            start_component(self.handle.state_dir, "kube-apiserver")
            # The controllers' watches back off for most of a minute after an outage; restarted, they are
            # back at once (what a real control plane's leader election would do for them).
            for component in ("kube-controller-manager", "kube-scheduler"):
                kill_component(self.handle.state_dir, component)
                start_component(self.handle.state_dir, component)
            self.wait_for_controllers()
        out = proc.stdout() + proc.stderr()
        if self.args.verbose:
            log(f"apply with the apiserver gone: exit {code} after {gave_up:.0f}s:\n{proc.stderr()[-1200:]}")
        clear = not TRACEBACK.search(out) and bool(re.search(r"API|apiserver|cluster|connect|unreachable|refused", out))
        self.checks.append(
            Check(
                "apiserver killed mid-apply: exit, clear error",
                f"exit {code} after {gave_up:.0f}s",
                code not in (0, None) and clear,
                out[-1500:],
            )
        )
        rerun = self.promote(
            "apply", "prod", "--yes", "--timeout", "120s", "--lock-timeout", "120s", timeout=APPLY_TIMEOUT
        )
        plan = self.promote("plan", "prod", "--detailed-exitcode")
        self.checks.append(
            Check(
                "  after its restart, the re-run converges",
                f"exit {rerun.code}, plan {plan.code}",
                rerun.code == 0 and plan.code == 0,
                rerun.text[-1500:] + plan.text[-800:],
            )
        )

    # --- secrets -------------------------------------------------------------------------------------

    def secret_search(self) -> None:
        markers = {
            self.secret_value: "Secret value",
            self.write_only_value: "writeOnly value",
            self.set_value: "writeOnly --set value",
            self.fake_token: "token of a bad kubeconfig",
            self.admin_token: "the cluster's admin token",
        }
        blobs = [
            *self.captured,
            *((p.name, p.read_text(errors="replace")) for p in (self.good_plan, self.default_plan, self.set_plan)),
        ]
        hits: list[str] = []
        for what, blob in blobs:
            for marker, kind in markers.items():
                at = blob.find(marker)
                if at >= 0:
                    context = blob[max(0, at - 120) : at].replace("\n", " ")
                    hits.append(f"{kind} in the output of `{what}`, after: ...{context}")
        size = sum(len(b) for _, b in blobs)
        self.checks.append(
            Check(f"secret values in {size / 1e6:.1f} MB of output", str(len(hits)), not hits, "\n".join(hits))
        )

    # --- running and reporting ----------------------------------------------------------------------

    def timed(self, name: str, body: Callable[[], None]) -> None:
        start = time.monotonic()
        log(f"== {name}")
        try:
            body()
        except Exception:  # a scenario that cannot run to its end is a miss; the others still run
            self.checks.append(Check(f"{name}: ran to its end", "error", False, traceback.format_exc()))
        finally:
            self.timings[name] = time.monotonic() - start

    def cleanup(self) -> None:
        for ns in self.namespaces:
            delete_namespace(self.kube, ns)


SURFACES = (
    "environment files",
    "shared files",
    "schemas",
    "charts",
    "--set/-f",
    "kubeconfig/context",
    "saved plans",
    "CLI arguments",
)


# The bad-input table: its columns (width, title) and how a verdict counts in each.
COLUMNS: tuple[tuple[str, int, Callable[[list[str]], bool]], ...] = (
    ("inputs", 7, lambda problems: True),
    ("trace", 7, lambda problems: "traceback" in problems),
    ("exit", 6, lambda problems: any(p.startswith("exit") for p in problems)),
    ("unnamed", 9, lambda problems: "unnamed" in problems),
    ("mutated", 9, lambda problems: any(p.startswith("mutation") for p in problems)),
    ("hang", 6, lambda problems: "hang" in problems),
)


def _row(title: str, counts: Counter[str]) -> str:
    return f"{title:<22}" + "".join(f"{counts[name]:>{width}}" for name, width, _ in COLUMNS)


def report(suite: Suite, seconds: float) -> tuple[str, bool]:
    """The figures (80 columns), what missed its goal, and whether every goal was met."""
    lines = [f"promote fault suite, seed {suite.args.seed}{' (quick)' if suite.args.quick else ''}", ""]
    header = f"{'bad inputs, by surface':<22}" + "".join(f"{name:>{width}}" for name, width, _ in COLUMNS)
    lines += [header, "-" * len(header)]
    totals: Counter[str] = Counter()
    for surface in SURFACES:
        row: Counter[str] = Counter()
        for v in suite.verdicts:
            if v.case.surface == surface:
                row.update(name for name, _, counts in COLUMNS if counts(v.problems))
        totals.update(row)
        lines.append(_row(surface, row))
    lines += ["-" * len(header), _row("total", totals)]
    tags = Counter(t for v in suite.verdicts for t in v.case.tags)
    lines.append("  of which " + ", ".join(f"{t} {tags[t]}" for t in ("encoding", "binary", "huge", "unicode")))
    bad = [v for v in suite.verdicts if v.problems]
    enough = totals["inputs"] >= (100 if suite.args.quick or suite.args.match else 300)
    checks = [
        *(
            [
                Check(
                    "bad inputs (≥ 300): exit, place, no change",
                    f"{totals['inputs']} inputs, {len(bad)} wrong",
                    enough and not bad,
                )
            ]
            if "inputs" not in suite.skipped
            else []
        ),
        *suite.checks,
    ]
    lines += ["", f"{'goal':<46}{'result':<28}{'':>6}", "-" * 80]
    for c in checks:
        lines.append(f"{c.goal[:45]:<46}{c.value[:27]:<28}{'PASS' if c.ok else 'MISS':>6}")
    lines.append("-" * 80)
    times = ", ".join(f"{k} {v:.0f}s" for k, v in suite.timings.items())
    lines.append(f"time {seconds:.0f}s: {times}"[:80] if len(times) < 70 else f"time {seconds:.0f}s")
    if len(times) >= 70:
        lines += ["  " + t for t in times.split(", ")]
    failures = []
    for v in bad:
        failures.append(f"- {v.case.surface}: {v.case.name}: {'; '.join(v.problems)} (exit {v.result.code})")
        failures += ["    " + line[:76] for line in v.result.text.strip().splitlines()[:6]]
    for c in checks:
        if not c.ok and c.detail:
            failures.append(f"- {c.goal.strip()}:")
            failures += ["    " + line[:76] for line in c.detail.strip().splitlines()[-20:]]
    if failures:
        lines += ["", "What missed its goal:", *failures]
    return "\n".join(lines), all(c.ok for c in checks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=19, help="seed of every random choice (default 19)")
    parser.add_argument("--quick", action="store_true", help="a third of the bad inputs, 5 kills, 4 concurrent applies")
    parser.add_argument("--state-dir", type=Path, default=None, help="the dev cluster (default $DEV_CLUSTER_DIR)")
    parser.add_argument("--match", default="", help="only the bad inputs whose 'surface: name' matches this regex")
    parser.add_argument(
        "--skip", default="", help="comma-separated scenarios to skip: inputs,failing,concurrency,kills,apiserver"
    )
    parser.add_argument("--keep", action="store_true", help="keep the namespaces and the scratch directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each miss as it happens")
    args = parser.parse_args(argv)
    started = time.monotonic()
    state_dir = (args.state_dir or default_state_dir()).expanduser()
    handle = start_cluster(state_dir)
    os.environ["KUBECONFIG"] = str(handle.kubeconfig)
    scratch = Path(tempfile.mkdtemp(prefix="promote-faults-"))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    os.environ.pop("PROMOTE_DEBUG", None)
    skip = set(filter(None, args.skip.split(",")))
    suite = Suite(args, handle, scratch)
    suite.skipped = skip
    try:
        start = time.monotonic()
        suite.setup()  # without it nothing else can run: its failure ends the suite
        suite.timings["setup"] = time.monotonic() - start
        if "inputs" not in skip:
            suite.timed("inputs", suite.bad_inputs)
        if "failing" not in skip:
            suite.timed("failing", suite.failing_default)
        if "concurrency" not in skip:
            suite.timed("concurrency", lambda: suite.concurrency(4 if args.quick else 10))
        if "kills" not in skip:
            suite.timed("kills", lambda: suite.sigkills(5 if args.quick else 20))
        if "apiserver" not in skip:
            suite.timed("apiserver", suite.apiserver)
        suite.secret_search()
    finally:
        if not args.keep:
            suite.cleanup()
            shutil.rmtree(scratch, ignore_errors=True)
    text, ok = report(suite, time.monotonic() - started)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
