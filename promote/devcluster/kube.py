"""A minimal JSON-over-HTTPS client for the harness, built on the ``kubernetes`` package's
kubeconfig loading and connection pool.

The generated API classes validate and convert every object into models; the simulated kubelet
and the readiness probe only need plain dicts, exact patch content types and a raw watch stream,
so they talk to the REST paths directly. Authentication and TLS still come from the kubeconfig
via ``kubernetes.config``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.watch.watch import iter_resp_lines

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class KubeError(RuntimeError):
    """An API request failed; ``status`` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def load_api_client(kubeconfig: Path, context: str | None = None) -> Any:
    """Return a ``kubernetes.client.ApiClient`` for ``kubeconfig`` without touching global config."""
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), context=context, client_configuration=configuration)
    return k8s_client.ApiClient(configuration)


class Kube:
    """Plain-dict access to one apiserver."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        configuration = api_client.configuration
        self.host: str = configuration.host.rstrip("/")
        auth = configuration.auth_settings().get("BearerToken")
        self._headers: dict[str, str] = {"Accept": "application/json"}
        if auth:
            self._headers["Authorization"] = auth["value"]

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, context: str | None = None) -> Kube:
        return cls(load_api_client(kubeconfig, context))

    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        if not query:
            return self.host + path
        params = {k: ("true" if v is True else "false" if v is False else v) for k, v in query.items()}
        return f"{self.host}{path}?{urlencode(params)}"

    def _open(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] = 15.0,
    ) -> Any:
        import urllib3

        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        if isinstance(timeout, tuple):
            tmo = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        else:
            tmo = urllib3.Timeout(total=timeout)
        try:
            return self.api_client.rest_client.pool_manager.request(
                method,
                self._url(path, query),
                body=data,
                headers=headers,
                timeout=tmo,
                preload_content=False,
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError(0, f"{method} {path}: {exc}") from exc

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 15.0,
    ) -> JSON:
        """Perform one request and return the decoded JSON body, raising ``KubeError`` on non-2xx."""
        resp = self._open(method, path, body=body, query=query, content_type=content_type, timeout=timeout)
        try:
            raw = resp.read()
        finally:
            resp.release_conn()
        try:
            decoded: JSON = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"message": raw.decode(errors="replace")}
        if not 200 <= resp.status < 300:
            message = decoded.get("message") or raw.decode(errors="replace")
            raise KubeError(resp.status, f"{method} {path}: {resp.status} {message}", decoded.get("reason", ""))
        return decoded

    def get(self, path: str, **query: Any) -> JSON:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: JSON) -> JSON:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: JSON) -> JSON:
        return self.request("PUT", path, body=body)

    def patch(self, path: str, body: JSON, content_type: str = MERGE_PATCH) -> JSON:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str, body: JSON | None = None, **query: Any) -> JSON:
        return self.request("DELETE", path, body=body, query=query or None)

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 300) -> Iterator[JSON]:
        """Yield watch events (``{"type": ..., "object": ...}``) until the server closes the stream.

        ``ERROR`` events are yielded too; the caller decides how to recover (e.g. re-list on 410).
        """
        query = {
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
        }
        resp = self._open("GET", path, query=query, timeout=(5.0, timeout_seconds + 30.0))
        try:
            if not 200 <= resp.status < 300:
                raw = resp.read()
                raise KubeError(resp.status, f"watch {path}: {resp.status} {raw.decode(errors='replace')}")
            for line in iter_resp_lines(resp):
                if line:
                    yield json.loads(line)
        finally:
            resp.release_conn()
            resp.close()
