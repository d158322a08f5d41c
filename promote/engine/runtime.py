"""The outside world of one engine run: Kubernetes, helm and time, passed to every engine entry point.

Every connection and helm client lives here, for the length of one command, instead of in module-level
caches: a test (or a second run in the same process) gets fresh ones, and a test that wants a fake
cluster, a fake helm or a clock it controls passes them in without patching module internals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from promote.cluster import DEFAULT_QPS, Cluster, connect
from promote.helm import binary

if TYPE_CHECKING:
    from promote.engine.workspace import Options
    from promote.helm.client import Helm


class Clock:
    """Wall time for records and soak windows, monotonic time for deadlines, and sleeping."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds for measuring durations; never goes back."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Wait, for loops that poll."""
        time.sleep(seconds)


def real_helm(*, kubeconfig: str | None, context: str | None, kube_version: str | None, wait: float | None) -> Helm:
    """The helm adapter, loaded only now: pyhelm3 is slow to import."""
    from promote.helm.client import connect

    return connect(kubeconfig=kubeconfig, context=context, kube_version=kube_version, wait=wait)


KubeFactory = Callable[[str | None, str | None, float], Cluster]
HelmFactory = Callable[..., "Helm"]


@dataclass
class Runtime:
    """Adapters for one command run; the real ones unless a caller passes others.

    `kube(context, kubeconfig, qps)` makes a cluster client and `helm(kubeconfig=, context=,
    kube_version=, wait=)` a helm adapter; each is made once per key and reused for the whole run.
    """

    kubeconfig: str | None = None
    qps: float = DEFAULT_QPS
    kube: KubeFactory = connect
    helm: HelmFactory = real_helm
    clock: Clock = field(default_factory=Clock)
    _clusters: dict[str | None, Cluster] = field(default_factory=dict, init=False, repr=False)
    _helms: dict[tuple[str | None, str | None, str | None, float | None], Helm] = field(
        default_factory=dict, init=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _helm_version: threading.Thread | None = field(default=None, init=False, repr=False)

    @classmethod
    def for_options(cls, opts: Options) -> Runtime:
        """The real adapters, with the command line's kubeconfig and rate limit."""
        return cls(kubeconfig=opts.kubeconfig, qps=opts.qps)

    def cluster(self, context: str | None) -> Cluster:
        """The one client of a context in this run (thread-safe: plans connect from a worker thread)."""
        with self._lock:
            if context not in self._clusters:
                self._clusters[context] = self.kube(context, self.kubeconfig, self.qps)
            return self._clusters[context]

    def connect(self, contexts: list[str | None]) -> dict[str | None, Cluster]:
        """Connect to every context once, up front, so an unknown context or dead cluster is one clear error."""
        out: dict[str | None, Cluster] = {}
        for ctx in contexts:
            if ctx not in out:
                out[ctx] = self.cluster(ctx)
                out[ctx].server_version()
        return out

    def helm_for(self, cluster: Cluster | None, *, context: str | None, wait: float | None = None) -> Helm:
        """The helm adapter for a cluster (None: render for no cluster in particular), made once per key.

        `wait` is the longest helm itself may wait; helm is given a minute more than that before it is
        stopped, so a slow rollout never leaves a release pending because we killed helm.
        """
        kubeconfig = cluster.kubeconfig_option if cluster is not None else None
        kube_version = cluster.server_version() if cluster is not None else None
        key = (kubeconfig, context if cluster is not None else None, kube_version, wait)
        with self._lock:
            if key not in self._helms:
                self._helms[key] = self.helm(kubeconfig=key[0], context=key[1], kube_version=kube_version, wait=wait)
            return self._helms[key]

    def render_helm(self, kube_version: str | None) -> Helm:
        """The helm adapter for `helm template` against a Kubernetes version (None: helm's default)."""
        key = (None, None, kube_version, None)
        with self._lock:
            if key not in self._helms:
                self._helms[key] = self.helm(kubeconfig=None, context=None, kube_version=kube_version, wait=None)
            return self._helms[key]

    def prefetch_helm_version(self) -> None:
        """Ask helm its version in the background (unless remembered), while definitions load."""
        if self._helm_version is None:
            self._helm_version = binary.prefetch_version(binary.executable())

    def helm_major(self) -> int:
        """3 or 4: flags and how helm applies objects differ."""
        return int(self.helm_version().lstrip("v").split(".")[0] or 3)

    def helm_version(self) -> str:
        """The version of the helm this run uses, waiting for a prefetch if one runs."""
        prefetch, self._helm_version = self._helm_version, None
        return binary.version(binary.executable(), prefetch)
