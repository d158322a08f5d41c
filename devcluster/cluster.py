"""Lifecycle of one local Kubernetes control plane ("dev cluster") kept in a state directory.

A dev cluster is etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the simulated
kubelet, all running as background processes bound to 127.0.0.1 on ports chosen at ``up``. Every
piece of state lives in the state directory: ``state.json`` (name, ports, pids), ``pki/``,
``etcd/`` (data), ``logs/`` and the admin ``kubeconfig``. Several clusters can run side by side
as long as they use different state directories.

Authentication is by static bearer tokens (admin in ``system:masters``, controller-manager and
scheduler as their RBAC-bootstrapped users) over TLS with a private CA; authorization is
Node,RBAC. ServiceAccount tokens work both ways (legacy token Secrets from the tokens controller
and the TokenRequest API), so limited credentials can be minted for tests.

The module is the programmatic API used by ``scripts/dev-cluster`` and by the test fixtures:
:func:`start_cluster`, :func:`stop_cluster`, :func:`cluster_status`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devcluster.kube import Kube, KubeError, connect
from devcluster.pki import PKI, ensure_pki
from promote.cluster import Cluster

K8S_VERSION = "v1.36.3"
HELM4_VERSION = "v4.3.2"  # built beside PyPI's Helm 3 by scripts/build-helm4
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
PORT_NAMES = ("etcd-client", "etcd-peer", "apiserver", "controller-manager", "scheduler")
NODE_COUNT = 3
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.0.0.0/24"
# No cloud and no pod network here: the controllers that would manage them stay off.
CONTROLLERS = "*,-node-ipam-controller,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller"
PROBE_IMAGE = "registry.k8s.io/pause:3.10"
BUILD_TIMEOUT = 1800
STOP_GRACE = 5.0

REPO_ROOT = Path(__file__).resolve().parents[1]

Reporter = Callable[[str], None]


class ClusterError(RuntimeError):
    """Raised when a dev cluster cannot be started, inspected or stopped."""


def _stderr(message: str) -> None:
    print(f"dev-cluster: {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    return Path(os.environ.get("PROMOTE_CACHE") or Path.home() / ".cache" / "promote")


def helm4_binary() -> Path:
    """Where scripts/build-helm4 puts Helm 4 (PROMOTE_HELM selects it)."""
    return cache_root() / f"helm-{HELM4_VERSION}" / "helm"


def default_state_dir() -> Path:
    """``$DEV_CLUSTER_DIR`` if set, else ``<cache>/dev-cluster``."""
    env = os.environ.get("DEV_CLUSTER_DIR")
    return Path(env).expanduser() if env else cache_root() / "dev-cluster"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    apiserver: Path
    controller_manager: Path
    scheduler: Path

    @classmethod
    def in_cache(cls) -> Binaries:
        k8s = cache_root() / f"k8s-{K8S_VERSION}"
        return cls(
            etcd=k8s / "etcd",
            apiserver=k8s / "kube-apiserver",
            controller_manager=k8s / "kube-controller-manager",
            scheduler=k8s / "kube-scheduler",
        )

    def missing(self) -> list[Path]:
        return [
            p for p in (self.etcd, self.apiserver, self.controller_manager, self.scheduler) if not os.access(p, os.X_OK)
        ]


def ensure_binaries(report: Reporter = _stderr) -> Binaries:
    """Run ``scripts/build-k8s`` (a no-op when the cache is complete) and return the binaries."""
    bins = Binaries.in_cache()
    script = REPO_ROOT / "scripts" / "build-k8s"
    if script.exists():
        try:
            subprocess.run(
                [str(script)], check=True, timeout=BUILD_TIMEOUT, stdout=sys.stderr, stdin=subprocess.DEVNULL
            )
        except subprocess.CalledProcessError as exc:
            raise ClusterError(f"building the Kubernetes binaries failed (exit {exc.returncode})") from exc
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"building the Kubernetes binaries took over {BUILD_TIMEOUT}s") from exc
    missing = bins.missing()
    if missing:
        raise ClusterError(f"cannot start the dev cluster: missing binaries {', '.join(map(str, missing))}")
    return bins


# --------------------------------------------------------------------------------------------
# State directory


@dataclass(frozen=True)
class ClusterHandle:
    """A running (or at least configured) dev cluster."""

    state_dir: Path
    name: str
    api_url: str

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def context(self) -> str:
        return self.name

    def cluster(self) -> Cluster:
        """promote's own client for the admin user, so a test drives the cluster as the product does."""
        return connect(self.kubeconfig, self.context)

    def api(self) -> Any:
        """A ``kubernetes.client.ApiClient`` for the admin user, for code that wants the generated classes."""
        return self.cluster().api

    def kube(self) -> Kube:
        return Kube(self.cluster())

    def export_line(self) -> str:
        return export_line(self.kubeconfig)


def export_line(kubeconfig: Path) -> str:
    import shlex

    return f"export KUBECONFIG={shlex.quote(str(kubeconfig))}"


def _state_path(state_dir: Path) -> Path:
    return state_dir / "state.json"


def read_state(state_dir: Path) -> dict[str, Any]:
    path = _state_path(state_dir)
    if not path.exists():
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot read dev cluster state {path}: {exc}") from exc
    return data


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    path = _state_path(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialize up/down on one state directory (e.g. two test sessions sharing a cluster)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Processes


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int, state_dir: Path) -> bool:
    """True if ``pid`` runs and is one of this state dir's processes (guards against pid reuse)."""
    if pid <= 0 or _is_zombie(pid):
        _reap(pid)
        return False
    argv = _proc_cmdline(pid)
    for _ in range(25):
        if argv:
            break
        # A process that is exec'ing shows an empty cmdline for a moment.
        time.sleep(0.02)
        argv = _proc_cmdline(pid)
    return mentions(argv, state_dir)


def mentions(argv: list[str], state_dir: Path) -> bool:
    """True when a command line names `state_dir` or a path inside it. A plain substring test took
    `test-cluster-faults/etcd` for `test-cluster`'s, so stopping one cluster killed its neighbours."""
    marker = str(state_dir)
    return any(arg == marker or arg.endswith("=" + marker) or marker + os.sep in arg for arg in argv)


def stray_pids(state_dir: Path) -> list[int]:
    """Component processes that reference ``state_dir`` in their command line, recorded or not."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = _proc_cmdline(int(entry.name))
        if not argv or not mentions(argv, state_dir):
            continue
        exe = Path(argv[0]).name
        if exe in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler") or (
            # Also the kubelet of a cluster started before the harness left the promote package.
            any(a.endswith("devcluster.kubelet") for a in argv)
        ):
            found.append(int(entry.name))
    return [pid for pid in found if not _is_zombie(pid)]


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out as the source of outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


# Listening ports are chosen below the ephemeral range. A port the kernel picked (bind to 0) is in that
# range, and once its component was killed for a restart (the fault suite's apiserver outage), any
# client's outgoing connection could take it as its source port: the controller-manager then failed to
# start again with "bind: address already in use", and CI with it.
LISTEN_PORTS = (20000, 32767)


def free_port(ephemeral_low: int | None = None) -> int:
    """A free port on 127.0.0.1 below the ephemeral range (LISTEN_PORTS), for any server the harness
    starts; `ephemeral_low`, when the caller read the range already."""
    low, high = LISTEN_PORTS
    high = min(high, (ephemeral_low or _ephemeral_range()[0]) - 1)
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randint(low, high)
        if _port_free(port):
            return port
    raise ClusterError(f"no free port between {low} and {high} on 127.0.0.1")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Go servers set SO_REUSEADDR, so a port left in TIME_WAIT by the previous run is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_ports(previous: dict[str, int]) -> dict[str, int]:
    """Reuse the previous ports when free and below the ephemeral range (stable URLs across restarts),
    else pick fresh ones there."""
    ports: dict[str, int] = {}
    ephemeral_low = _ephemeral_range()[0]
    for name in PORT_NAMES:
        old = previous.get(name)
        if old and old not in ports.values() and old < ephemeral_low and _port_free(old):
            ports[name] = old
            continue
        while True:
            port = free_port(ephemeral_low)
            if port not in ports.values():
                ports[name] = port
                break
    return ports


def _spawn(argv: list[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {Path(argv[0]).name}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ClusterError(f"cannot start {argv[0]}: {exc}") from exc
    return proc.pid


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _terminate(pids: list[int], state_dir: Path, grace: float) -> list[int]:
    """SIGTERM the given pids, SIGKILL the survivors after ``grace`` seconds; return leftovers."""
    live = [p for p in pids if pid_alive(p, state_dir)]
    for pid in live:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        time.sleep(0.1)
        live = [p for p in live if pid_alive(p, state_dir)]
    for pid in live:
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while live and time.monotonic() < deadline:
        time.sleep(0.1)
        live = [p for p in live if pid_alive(p, state_dir)]
    return live


def _log_tail(state_dir: Path, component: str, lines: int = 15) -> str:
    path = state_dir / "logs" / f"{component}.log"
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- last lines of {path} ---\n" + "\n".join(text)


# --------------------------------------------------------------------------------------------
# Configuration files


def _kubeconfig(name: str, server: str, ca_pem: bytes, token: str) -> dict[str, Any]:
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def _write_kubeconfigs(state_dir: Path, name: str, server: str, pki: PKI) -> None:
    ca_pem = pki.ca_cert.read_bytes()
    for file_name, role in (
        ("kubeconfig", "admin"),
        ("controller-manager.kubeconfig", "controller-manager"),
        ("scheduler.kubeconfig", "scheduler"),
    ):
        doc = _kubeconfig(name, server, ca_pem, pki.tokens[role])
        _write_private(state_dir / file_name, yaml.safe_dump(doc, sort_keys=False))


# The controller-manager's client rate limit, for the bench: its upstream default (20 requests a second,
# bursts of 30, per controller) caps how fast the Deployment controller rolls out many Deployments at
# once, whoever started them. Production control planes often raise it; kubeadm and kind keep it.
CONTROLLER_QPS_ENV = "DEV_CLUSTER_CONTROLLER_QPS"


def _controller_rate() -> list[str]:
    """--kube-api-qps (and a burst of twice that) from $DEV_CLUSTER_CONTROLLER_QPS; none when unset."""
    value = os.environ.get(CONTROLLER_QPS_ENV, "").strip()
    if not value:
        return []
    try:
        qps = int(value)
    except ValueError:
        raise ClusterError(f"{CONTROLLER_QPS_ENV}={value!r} is not a whole number of requests a second") from None
    if qps < 1:
        raise ClusterError(f"{CONTROLLER_QPS_ENV}={value!r} must be at least 1")
    return [f"--kube-api-qps={qps}", f"--kube-api-burst={2 * qps}"]


def _argv(component: str, bins: Binaries, state_dir: Path, name: str, ports: dict[str, int], pki: PKI) -> list[str]:
    s = state_dir
    if component == "etcd":
        client, peer = f"http://127.0.0.1:{ports['etcd-client']}", f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            str(bins.etcd),
            "--name=default",
            f"--data-dir={s / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            f"--initial-cluster-token={name}",
            "--snapshot-count=10000",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ]
    if component == "kube-apiserver":
        return [
            str(bins.apiserver),
            f"--etcd-servers=http://127.0.0.1:{ports['etcd-client']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--cert-dir={s / 'run' / 'apiserver'}",
            f"--tls-cert-file={pki.apiserver_cert}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--token-auth-file={pki.token_file}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--api-audiences={SA_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The only advertise address is loopback, which Endpoints validation rejects.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]
    if component == "kube-controller-manager":
        return [
            str(bins.controller_manager),
            f"--kubeconfig={s / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['controller-manager']}",
            f"--cert-dir={s / 'run' / 'controller-manager'}",
            "--leader-elect=false",
            f"--controllers={CONTROLLERS}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--cluster-name={name}",
            "--profiling=false",
            "--v=1",
            *_controller_rate(),
        ]
    if component == "kube-scheduler":
        return [
            str(bins.scheduler),
            f"--kubeconfig={s / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}",
            f"--cert-dir={s / 'run' / 'scheduler'}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]
    if component == "kubelet":
        return [
            sys.executable,
            "-m",
            "devcluster.kubelet",
            "--kubeconfig",
            str(s / "kubeconfig"),
            "--nodes",
            str(NODE_COUNT),
        ]
    raise ValueError(component)


def _kubelet_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------------------------
# Readiness


def _https_get(url: str, ca: Path, token: str, timeout: float = 2.0) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def _wait(
    what: str, check: Callable[[], bool], timeout: float, state_dir: Path, pids: dict[str, int], interval: float = 0.25
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        dead = [c for c, pid in pids.items() if not pid_alive(pid, state_dir)]
        if dead:
            tails = "".join(_log_tail(state_dir, c) for c in dead)
            raise ClusterError(f"{', '.join(dead)} exited while waiting for {what}{tails}")
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _etcd_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1.0) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


def _nodes_ready(kube: Kube) -> bool:
    try:
        nodes = kube.get("/api/v1/nodes").get("items") or []
    except KubeError:
        return False
    ready = 0
    for node in nodes:
        conds = {c["type"]: c["status"] for c in (node.get("status") or {}).get("conditions") or []}
        taints = (node.get("spec") or {}).get("taints") or []
        if conds.get("Ready") == "True" and not any(t.get("effect") == "NoSchedule" for t in taints):
            ready += 1
    return ready >= NODE_COUNT


def _probe_rollout(kube: Kube, state_dir: Path, pids: dict[str, int], timeout: float) -> None:
    """Prove that the whole chain (controllers, scheduler, kubelet) works by rolling out a Deployment."""
    ns = f"dev-cluster-probe-{secrets.token_hex(3)}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    labels = {"app": "probe"}
    kube.post(
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "probe"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "pause", "image": PROBE_IMAGE}]},
                },
            },
        },
    )

    def available() -> bool:
        try:
            dep = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/probe")
        except KubeError:
            return False
        return int((dep.get("status") or {}).get("availableReplicas") or 0) >= 1

    try:
        _wait("the probe Deployment to become available", available, timeout, state_dir, pids)
    finally:
        with contextlib.suppress(KubeError):
            kube.delete(f"/api/v1/namespaces/{ns}", {"propagationPolicy": "Background"})


# --------------------------------------------------------------------------------------------
# Public API


def _status_unlocked(state_dir: Path) -> dict[str, bool]:
    pids: dict[str, int] = read_state(state_dir).get("pids") or {}
    return {c: bool(pids.get(c)) and pid_alive(int(pids[c]), state_dir) for c in COMPONENTS}


def cluster_status(state_dir: Path) -> dict[str, bool]:
    """Per component, whether its recorded process is alive."""
    return _status_unlocked(state_dir.resolve())


def _handle(state_dir: Path, state: dict[str, Any]) -> ClusterHandle:
    return ClusterHandle(
        state_dir=state_dir, name=str(state["name"]), api_url=f"https://127.0.0.1:{state['ports']['apiserver']}"
    )


def cluster_handle(state_dir: Path) -> ClusterHandle:
    """The handle for an existing (not necessarily running) cluster in ``state_dir``."""
    state_dir = state_dir.resolve()
    state = read_state(state_dir)
    if not state.get("ports"):
        raise ClusterError(f"no dev cluster has been started in {state_dir}")
    return _handle(state_dir, state)


def start_cluster(
    state_dir: Path | None = None,
    name: str | None = None,
    *,
    fresh: bool = False,
    timeout: float = 180.0,
    report: Reporter = _stderr,
) -> ClusterHandle:
    """Start (or resume, or reuse if already running) the dev cluster in ``state_dir``.

    Returns once a Deployment can roll out. ``fresh`` discards the etcd data but keeps the PKI.
    """
    state_dir = (state_dir or default_state_dir()).expanduser().resolve()
    with _locked(state_dir):
        state = read_state(state_dir)
        name = name or state.get("name") or state_dir.name
        status = _status_unlocked(state_dir)
        if all(status.values()) and not fresh:
            pki = ensure_pki(state_dir / "pki")
            url = f"https://127.0.0.1:{state['ports']['apiserver']}/readyz"
            if _https_get(url, pki.ca_cert, pki.tokens["admin"])[0] == 200:
                if name != state.get("name"):
                    state["name"] = name
                    _write_state(state_dir, state)
                    _write_kubeconfigs(state_dir, name, f"https://127.0.0.1:{state['ports']['apiserver']}", pki)
                report(f"already running in {state_dir}")
                return _handle(state_dir, state)
        if any(status.values()) or stray_pids(state_dir):
            report("stopping a partially running cluster first")
            _stop_unlocked(state_dir, report)
        return _start_unlocked(state_dir, name, state, fresh, timeout, report)


def _start_unlocked(
    state_dir: Path, name: str, state: dict[str, Any], fresh: bool, timeout: float, report: Reporter
) -> ClusterHandle:
    t0 = time.monotonic()
    bins = ensure_binaries(report)
    pki = ensure_pki(state_dir / "pki")
    if fresh and (state_dir / "etcd").exists():
        report("discarding etcd data (--fresh)")
        shutil.rmtree(state_dir / "etcd")
    ports = _choose_ports({} if fresh else dict(state.get("ports") or {}))
    server = f"https://127.0.0.1:{ports['apiserver']}"
    _write_kubeconfigs(state_dir, name, server, pki)
    for sub in ("logs", "run"):
        (state_dir / sub).mkdir(exist_ok=True)
    pids: dict[str, int] = {}
    state = {"name": name, "ports": ports, "pids": pids, "version": K8S_VERSION}

    def launch(component: str) -> None:
        env = _kubelet_env() if component == "kubelet" else None
        pids[component] = _spawn(
            _argv(component, bins, state_dir, name, ports, pki), state_dir / "logs" / f"{component}.log", state_dir, env
        )
        _write_state(state_dir, state)

    try:
        launch("etcd")
        _wait("etcd", lambda: _etcd_healthy(ports["etcd-client"]), 30, state_dir, pids, 0.1)
        launch("kube-apiserver")
        launch("kubelet")  # waits for the apiserver by itself; saves a few seconds
        readyz = f"{server}/readyz"
        _wait(
            "kube-apiserver /readyz",
            lambda: _https_get(readyz, pki.ca_cert, pki.tokens["admin"])[0] == 200,
            60,
            state_dir,
            pids,
            0.2,
        )
        report(f"apiserver ready at {server} after {time.monotonic() - t0:.1f}s")
        launch("kube-controller-manager")
        launch("kube-scheduler")
        kube = Kube.from_kubeconfig(state_dir / "kubeconfig")
        _wait(f"{NODE_COUNT} Ready nodes", lambda: _nodes_ready(kube), 60, state_dir, pids)
        _probe_rollout(kube, state_dir, pids, max(30.0, timeout - (time.monotonic() - t0)))
    except BaseException:
        report("start failed; stopping what was started")
        _stop_unlocked(state_dir, report)
        raise
    report(f"cluster {name!r} ready in {time.monotonic() - t0:.1f}s")
    return _handle(state_dir, state)


def _stop_unlocked(state_dir: Path, report: Reporter) -> list[int]:
    state = read_state(state_dir)
    pids: dict[str, int] = {c: int(p) for c, p in (state.get("pids") or {}).items()}
    # Clients first, etcd last, so that nothing logs storms of connection errors on the way down.
    order = [c for c in reversed(COMPONENTS) if c in pids]
    leftovers = _terminate([pids[c] for c in order if c != "etcd"], state_dir, STOP_GRACE)
    if "etcd" in pids:
        leftovers += _terminate([pids["etcd"]], state_dir, STOP_GRACE)
    strays = stray_pids(state_dir)
    if strays:
        report(f"stopping unrecorded processes of this cluster: {strays}")
        leftovers += _terminate(strays, state_dir, STOP_GRACE)
    if leftovers:
        raise ClusterError(f"could not stop processes {leftovers} of the dev cluster in {state_dir}")
    if state:
        state["pids"] = {}
        _write_state(state_dir, state)
    return sorted(set(pids.values()) | set(strays))


def stop_cluster(state_dir: Path | None = None, report: Reporter = _stderr) -> list[int]:
    """Stop every process of the cluster in ``state_dir``; return the pids that were targeted."""
    state_dir = (state_dir or default_state_dir()).expanduser().resolve()
    if not state_dir.exists():
        return []
    with _locked(state_dir):
        return _stop_unlocked(state_dir, report)


def restart_kubelet(state_dir: Path) -> int:
    """Kill and restart only the simulated kubelet (used to test restart survival)."""
    state_dir = state_dir.expanduser().resolve()
    with _locked(state_dir):
        state = read_state(state_dir)
        pids = state.get("pids") or {}
        if "kubelet" in pids:
            left = _terminate([int(pids["kubelet"])], state_dir, STOP_GRACE)
            if left:
                raise ClusterError(f"could not stop the simulated kubelet (pid {left[0]})")
        bins = Binaries.in_cache()
        pki = ensure_pki(state_dir / "pki")
        pid = _spawn(
            _argv("kubelet", bins, state_dir, state["name"], state["ports"], pki),
            state_dir / "logs" / "kubelet.log",
            state_dir,
            _kubelet_env(),
        )
        pids["kubelet"] = pid
        state["pids"] = pids
        _write_state(state_dir, state)
        return pid


def kill_component(state_dir: Path, component: str) -> None:
    """SIGKILL one component of a running cluster, as a crash would (the fault suite kills the apiserver)."""
    state_dir = state_dir.expanduser().resolve()
    with _locked(state_dir):
        pid = int((read_state(state_dir).get("pids") or {}).get(component) or 0)
        if not pid_alive(pid, state_dir):
            raise ClusterError(f"{component} is not running in {state_dir}")
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while pid_alive(pid, state_dir):
            if time.monotonic() > deadline:
                raise ClusterError(f"{component} (pid {pid}) survived SIGKILL")
            time.sleep(0.05)


def start_component(state_dir: Path, component: str, timeout: float = 60.0) -> int:
    """Start one stopped component again on the cluster's ports; for the apiserver, wait for /readyz."""
    state_dir = state_dir.expanduser().resolve()
    with _locked(state_dir):
        state = read_state(state_dir)
        pids = state.get("pids") or {}
        if pid_alive(int(pids.get(component) or 0), state_dir):
            raise ClusterError(f"{component} is already running in {state_dir}")
        pki = ensure_pki(state_dir / "pki")
        env = _kubelet_env() if component == "kubelet" else None
        argv = _argv(component, Binaries.in_cache(), state_dir, state["name"], state["ports"], pki)
        pids[component] = _spawn(argv, state_dir / "logs" / f"{component}.log", state_dir, env)
        state["pids"] = pids
        _write_state(state_dir, state)
        if component == "kube-apiserver":
            readyz = f"https://127.0.0.1:{state['ports']['apiserver']}/readyz"
            _wait(
                "kube-apiserver /readyz",
                lambda: _https_get(readyz, pki.ca_cert, pki.tokens["admin"])[0] == 200,
                timeout,
                state_dir,
                {component: pids[component]},
                0.2,
            )
        return int(pids[component])
