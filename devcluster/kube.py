"""Plain-dict, path-based access to a dev cluster for the harness and the tests, over promote's own client.

Every request goes through ``promote.cluster.Cluster``, so the harness runs on the transport the product
ships instead of a second one. This module only keeps the shape the tests are written against: REST
paths and query dicts in, dicts out, and a ``KubeError`` that carries the HTTP status.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from promote.cluster import ApiError, Cluster, Timeout
from promote.errors import ClusterError

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"

# The client-side limiter protects a shared apiserver from promote; the harness (fixtures, the simulated
# kubelet's three loops) must never queue behind it.
HARNESS_QPS = 10_000.0


class KubeError(RuntimeError):
    """An API request failed; ``status`` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def connect(kubeconfig: Path, context: str | None = None) -> Cluster:
    """promote's client for a dev cluster, effectively unthrottled."""
    return Cluster(context, str(kubeconfig), qps=HARNESS_QPS, burst=int(HARNESS_QPS))


def _query(query: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Query parameters as the API spells them (booleans in lower case); None means absent."""
    return [
        (k, "true" if v is True else "false" if v is False else str(v))
        for k, v in (query or {}).items()
        if v is not None
    ]


def _kube_error(what: str, e: ClusterError) -> KubeError:
    if isinstance(e, ApiError):
        return KubeError(e.status, f"{what}: {e.status} {e.detail or e.reason}", e.reason)
    return KubeError(0, str(e))


class Kube:
    """Plain-dict access to one apiserver."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @property
    def host(self) -> str:
        return self.cluster.host

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, context: str | None = None) -> Kube:
        return cls(connect(kubeconfig, context))

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: Timeout = 15.0,
    ) -> JSON:
        """One request; the decoded JSON body (``{}`` when empty), else ``KubeError``.

        The short default timeout keeps a stalled heartbeat from outliving the node's lease.
        """
        what = f"{method} {path}"
        try:
            out = self.cluster.request(
                method, path, query=_query(query), body=body, content_type=content_type, what=what, timeout=timeout
            )
        except ClusterError as e:
            raise _kube_error(what, e) from e
        return out if isinstance(out, dict) else {}

    def get(self, path: str, **query: Any) -> JSON:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: JSON) -> JSON:
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: JSON, content_type: str = MERGE_PATCH) -> JSON:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str, body: JSON | None = None, **query: Any) -> JSON:
        return self.request("DELETE", path, body=body, query=query)

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 300) -> Generator[JSON, None, None]:
        """Watch events (``{"type": ..., "object": ...}``) from ``resource_version`` until the server ends them.

        ``ERROR`` events are yielded too, so that the caller decides how to recover (re-list on 410).
        """
        query = {
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
        }
        what = f"watch {path}"
        try:
            yield from self.cluster.stream(path, _query(query), what=what, timeout=(5.0, timeout_seconds + 30.0))
        except ClusterError as e:
            raise _kube_error(what, e) from e
