"""Cluster access: one API client and one discovery cache per kube context.

Objects are read and written as plain JSON dicts through the `kubernetes` client's transport, because
plan and diff work on manifests, not on generated model classes (and deserialising those is slow).
Reads list per kind and namespace instead of GETting each object. Every failure becomes a ClusterError
that says what was being attempted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from promote import redact
from promote.errors import ClusterError, ConfigError

Timeout = float | tuple[float, float]  # seconds: one for both, or (connect, read)
REQUEST_TIMEOUT: Timeout = (5.0, 60.0)
AUTH_REFRESH = 60.0  # seconds between re-reads of the credentials (exec plugins hand out expiring tokens)
# A dry run is how plan validates what apply will send, so it refuses what a real write would only warn
# of: a field the schema does not declare (a typo in a chart) is an error at plan, naming the object and
# the field, instead of a field the apiserver drops. Strict is what kubectl sends, and with it every
# changed field is checked by the server itself, which knows the cluster's CRDs; apply then spares helm
# its own client-side OpenAPI check (sync.server_validated).
DRY_RUN: tuple[tuple[str, str], ...] = (("dryRun", "All"), ("fieldValidation", "Strict"))

# Groups whose types the apiserver knows natively: these take a strategic merge patch, as helm sends.
BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "storage.k8s.io",
    "coordination.k8s.io",
    "scheduling.k8s.io",
    "discovery.k8s.io",
    "node.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "certificates.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "apiregistration.k8s.io",
}


@dataclass(frozen=True)
class Resource:
    """Discovery's answer for one kind."""

    group_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        """The REST path of a collection or of one object."""
        base = f"/api/{self.group_version}" if "/" not in self.group_version else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class Unreachable(ClusterError):
    """No answer from the cluster at all (connection refused, reset, timed out): worth asking again."""


class ApiError(ClusterError):
    """The API answered with an error status."""

    def __init__(
        self, message: str, status: int, reason: str = "", detail: str = "", causes: tuple[dict[str, Any], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.detail = detail  # the server's own message, for callers that word the error themselves
        self.causes = causes  # status.details.causes: e.g. each field of a server-side-apply conflict

    @property
    def transient(self) -> bool:
        """Throttled, or the server failing for now: worth asking again."""
        return self.status == 429 or self.status >= 500


class _RateLimiter:
    """A token bucket, like client-go's QPS/burst, so parallel plans don't flood the apiserver."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps, self.capacity = qps, float(burst)
        self.tokens, self.last = float(burst), time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.qps)
                self.last = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.qps
            time.sleep(wait)


class Cluster:
    """One kube context."""

    def __init__(
        self, context: str | None = None, kubeconfig: str | None = None, *, qps: float = 500, burst: int = 1000
    ):
        from kubernetes import client, config

        cfg = client.Configuration()
        # What the user asked for, handed on unchanged to helm so it talks to the same cluster.
        self.kubeconfig_option, self.context_option = kubeconfig, context
        kubeconfig = resolve_kubeconfig(kubeconfig)
        check_kubeconfig(kubeconfig)
        try:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg, persist_config=False
            )
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        except config.ConfigException as e:
            where = kubeconfig or "KUBECONFIG / ~/.kube/config"
            if context:
                raise ConfigError(f"unknown kube context {context!r}: not found in {where} ({e})") from e
            raise ConfigError(f"cannot load a kubeconfig from {where}: {e}") from e
        except OSError as e:
            raise ConfigError(f"cannot read kubeconfig {kubeconfig}: {e.strerror}") from e
        except (TypeError, AttributeError, KeyError, ValueError) as e:
            # A kubeconfig of the wrong shape (`clusters: 5`): the library's own message may quote a credential.
            raise ConfigError(
                f"cannot load a kubeconfig from {kubeconfig}: not a kubeconfig ({type(e).__name__})"
            ) from None
        cfg.connection_pool_maxsize = 32
        cfg.retries = 0  # an unreachable cluster should fail fast with one clear error
        self.context = context or (active or {}).get("name")
        self.kubeconfig_path = kubeconfig
        self.host: str = cfg.host
        for credential in cfg.api_key.values():
            _register(str(credential))
        self.api = client.ApiClient(cfg)
        self._limiter = _RateLimiter(qps, burst)
        self._discovery: dict[str, dict[str, Resource]] = {}
        self._lock = threading.Lock()
        self._version: str | None = None
        self._api_versions: tuple[str, ...] | None = None
        self._auth: dict[str, str] | None = None
        self._group_locks: dict[str, threading.Lock] = {}
        self._auth_at = 0.0

    @property
    def local(self) -> bool:
        """Whether the apiserver listens on this machine (a loopback address), sharing our cores."""
        host = (urlsplit(self.host).hostname or "").lower()
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    # --- transport ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        what: str,
        timeout: Timeout | None = None,
    ) -> Any:
        """One API call; returns the decoded JSON body, raising ApiError/ClusterError with `what` on failure.

        This goes straight to the client's connection pool: the generic client path re-applies the whole
        kubeconfig on every call (it scans the environment for proxies each time), which cost more CPU
        than the rest of a request. Credentials are read once and again when stale or rejected.
        """
        resp = self._send(
            method, path, query, body, content_type, what, REQUEST_TIMEOUT if timeout is None else timeout, stream=False
        )
        raw: bytes = resp.data
        if not 200 <= resp.status < 300:
            raise self._api_error(what, resp.status, raw)
        return json.loads(raw) if raw else None

    def stream(
        self,
        path: str,
        query: list[tuple[str, str]] | None = None,
        *,
        what: str,
        timeout: Timeout,
        stop: threading.Event | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """A watch's raw event stream, one transport for every watcher (ours, and the dev cluster's kubelet).

        Every event is handed on, ERROR and BOOKMARK included, because only the caller knows how to recover
        (the kubelet re-lists on 410 Gone); it ends when the server ends it or `stop` is set.
        """
        from kubernetes.watch.watch import iter_resp_lines

        resp = self._send("GET", path, query, None, "application/json", what, timeout, stream=True)
        ended = threading.Event()
        if stop is not None:
            # A blocked read sees `stop` only with the next line, which may be a minute away: closing the
            # response from here ends the read at once, so the watching thread can be joined.
            def close_on_stop() -> None:
                while not ended.is_set():
                    if stop.wait(0.1):
                        # Closing the response object does not wake a thread blocked in recv(); shutting
                        # the socket down does, and the read returns at once.
                        sock = getattr(getattr(resp, "connection", None), "sock", None)
                        with contextlib.suppress(OSError):
                            if sock is not None:
                                sock.shutdown(socket.SHUT_RDWR)
                        return

            threading.Thread(target=close_on_stop, name="watch-closer", daemon=True).start()
        try:
            if not 200 <= resp.status < 300:
                raise self._api_error(what, resp.status, resp.read())
            for line in iter_resp_lines(resp):
                if stop is not None and stop.is_set():
                    return
                if line.strip():
                    yield json.loads(line)
        except ClusterError:
            raise
        except Exception as e:
            if stop is None or not stop.is_set():
                raise ClusterError(f"cannot {what}: the stream from {self.host} broke ({type(e).__name__}: {e})") from e
        finally:
            ended.set()
            # Closed, not handed back: a stream left early still has unread data on its connection.
            resp.close()
            resp.release_conn()

    def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
        what: str,
        timeout: Timeout,
        *,
        stream: bool,
    ) -> Any:
        """The one place a request leaves: rate limit, credentials (asked again once on 401), no retries."""
        import urllib3

        self._limiter.take()
        url = self.host + path + ("?" + urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        for attempt in (1, 2):
            try:
                resp = self.api.rest_client.pool_manager.request(
                    method,
                    url,
                    body=data,
                    headers={**headers, **self._auth_headers(refresh=attempt > 1)},
                    timeout=urllib3.Timeout(connect=connect, read=read),
                    retries=False,
                    preload_content=not stream,
                )
            except urllib3.exceptions.HTTPError as e:
                raise Unreachable(
                    f"cannot {what}: the cluster at {self.host} is unreachable ({type(e).__name__})"
                ) from e
            if resp.status != 401 or attempt == 2:
                break
            resp.drain_conn()
            resp.release_conn()
        return resp

    def _auth_headers(self, refresh: bool = False) -> dict[str, str]:
        """The Authorization header from the kubeconfig (token, exec plugin...), re-read every minute."""
        with self._lock:
            now = time.monotonic()
            if refresh or self._auth is None or now - self._auth_at > AUTH_REFRESH:
                token = self.api.configuration.auth_settings().get("BearerToken") or {}
                value = str(token.get("value") or "")
                _register(value)
                if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                    # http.client would refuse the header with a ValueError that quotes it whole.
                    raise ConfigError(
                        f"cannot use the credentials of context {self.context!r} in {self.kubeconfig_path}: the "
                        "token (or password) holds a line break or another control character"
                    )
                self._auth = {str(token["key"]): value} if value else {}
                self._auth_at = now
            return self._auth

    def _api_error(self, what: str, status: int, raw: bytes) -> ApiError:
        causes: tuple[dict[str, Any], ...] = ()
        try:
            doc = json.loads(raw)
            message, reason = doc.get("message", ""), doc.get("reason", "")
            found = (doc.get("details") or {}).get("causes") or []
            causes = tuple(c for c in found if isinstance(c, dict))
        except (ValueError, AttributeError):
            message, reason = raw.decode(errors="replace")[:300], ""
        if status == 401:
            message = f"unauthorized: the credentials of context {self.context!r} were rejected"
        elif status == 403 and message.endswith("at the cluster scope"):
            message += " (a RoleBinding cannot grant that: it takes a ClusterRole and a ClusterRoleBinding)"
        return ApiError(f"cannot {what}: {message or reason or status}", status, reason, message, causes)

    # --- discovery ---------------------------------------------------------------------------------

    def server_version(self) -> str:
        """The apiserver's gitVersion, e.g. v1.20.2."""
        if self._version is None:
            doc = self.request("GET", "/version", what=f"read the server version of {self.host}")
            self._version = str(doc.get("gitVersion", "")).split("+")[0]
        return self._version

    def resource(self, api_version: str, kind: str) -> Resource:
        """Discovery for one kind, cached per group-version, asked once even by many threads at a time."""
        with self._lock:
            known = self._discovery.get(api_version)
            group_lock = self._group_locks.setdefault(api_version, threading.Lock())
        if known is None:
            with group_lock:
                known = self._discovery.get(api_version)
                if known is None:
                    known = self._discover(api_version)
        if kind not in known:
            raise ClusterError(f"the cluster at {self.host} does not serve {kind} in {api_version}")
        return known[kind]

    def api_versions(self) -> tuple[str, ...]:
        """Every group-version the cluster serves, and each as group/version/Kind: what helm's
        .Capabilities.APIVersions holds in an upgrade (--api-versions gives it to helm template)."""
        if self._api_versions is None:
            core = self.request("GET", "/api", what=f"discover the core API of {self.host}") or {}
            groups = self.request("GET", "/apis", what=f"discover the API groups of {self.host}") or {}
            gvs = [str(v) for v in core.get("versions", [])] + [
                str(v["groupVersion"]) for g in groups.get("groups", []) for v in g.get("versions", [])
            ]
            out: set[str] = set()
            for gv in gvs:
                out.add(gv)
                try:
                    with self._lock:
                        known = self._discovery.get(gv)
                    known = known if known is not None else self._discover(gv)
                except ApiError:
                    continue  # an aggregated API that is down serves nothing now
                out.update(f"{gv}/{kind}" for kind in known)
            self._api_versions = tuple(sorted(out))
        return self._api_versions

    def forget(self, api_version: str) -> None:
        """Drop what discovery said of a group-version: a CRD just made it served (or changed it)."""
        with self._lock:
            self._discovery.pop(api_version, None)
            self._api_versions = None

    def _discover(self, api_version: str) -> dict[str, Resource]:
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            doc = self.request("GET", path, what=f"discover the API group {api_version}")
        except ApiError as e:
            if e.status != 404:
                raise
            doc = {"resources": []}
        known = {
            r["kind"]: Resource(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
            for r in doc.get("resources", [])
            if "/" not in r["name"]
        }
        with self._lock:
            self._discovery[api_version] = known
        return known

    # --- objects -----------------------------------------------------------------------------------

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every object of a kind in a namespace (one request)."""
        res = self.resource(api_version, kind)
        query = [("labelSelector", label_selector)] if label_selector else []
        query += [("fieldSelector", field_selector)] if field_selector else []
        try:
            doc = self.request(
                "GET", res.path(namespace), query=query, what=f"list {kind} in {namespace or 'the cluster'}"
            )
        except ApiError as e:
            raise self._missing_namespace(e, namespace) from e
        items: list[dict[str, Any]] = doc.get("items", [])
        for item in items:  # list responses omit these per item
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        res = self.resource(api_version, kind)
        try:
            obj: dict[str, Any] = self.request("GET", res.path(namespace, name), what=f"read {kind} {name}")
            return obj
        except ApiError as e:
            if e.status == 404:
                return None
            raise self._missing_namespace(e, namespace if res.namespaced else None) from e

    def create(self, obj: dict[str, Any], namespace: str | None, *, dry_run: bool = False) -> dict[str, Any]:
        """Create (or server-side dry-run create) an object."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        query = list(DRY_RUN) if dry_run else []
        name = obj.get("metadata", {}).get("name")
        out: dict[str, Any] = self.request(
            "POST",
            res.path(namespace),
            query=query,
            body=obj,
            what=f"{'dry-run ' if dry_run else ''}create {obj['kind']} {namespace + '/' if namespace else ''}{name}",
        )
        return out

    def apply(
        self, obj: dict[str, Any], namespace: str | None, *, field_manager: str, force: bool, dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply, as Helm 4 does (`force` takes fields other managers own); a 409 ApiError
        lists the conflicting fields in its causes."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        name = obj["metadata"]["name"]
        query = [("fieldManager", field_manager), ("force", "true" if force else "false")]
        query += DRY_RUN if dry_run else []
        out: dict[str, Any] = self.request(
            "PATCH",
            res.path(namespace, name),
            query=query,
            body=obj,
            content_type="application/apply-patch+yaml",
            what=f"{'dry-run ' if dry_run else ''}apply {obj['kind']} {namespace + '/' if namespace else ''}{name}",
        )
        return out

    def replace(self, obj: dict[str, Any], namespace: str | None) -> dict[str, Any]:
        """Replace an object whole (PUT), as `kubectl replace`: obj carries the live resourceVersion."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        name = obj["metadata"]["name"]
        out: dict[str, Any] = self.request(
            "PUT",
            res.path(namespace, name),
            body=obj,
            what=f"replace {obj['kind']} {namespace + '/' if namespace else ''}{name}",
        )
        return out

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        *,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """Patch the way helm does: strategic merge for built-in kinds, JSON merge for custom ones."""
        res = self.resource(api_version, kind)
        group = api_version.split("/")[0] if "/" in api_version else ""
        ctype = "application/strategic-merge-patch+json" if group in BUILTIN_GROUPS else "application/merge-patch+json"
        query = list(DRY_RUN) if dry_run else []
        if field_manager:
            query.append(("fieldManager", field_manager))
        out: dict[str, Any] = self.request(
            "PATCH",
            res.path(namespace, name),
            query=query,
            body=body,
            content_type=ctype,
            what=f"{'dry-run ' if dry_run else ''}update {kind} {namespace + '/' if namespace else ''}{name}",
        )
        return out

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        """Delete an object; absent is fine."""
        res = self.resource(api_version, kind)
        try:
            self.request("DELETE", res.path(namespace, name), what=f"delete {kind} {name}")
        except ApiError as e:
            if e.status != 404:
                raise

    def watch(
        self, api_version: str, kind: str, namespace: str | None, *, timeout: int, stop: threading.Event
    ) -> Iterator[dict[str, Any]]:
        """Watch events of a kind in a namespace until `stop` is set or the server ends the watch."""
        res = self.resource(api_version, kind)
        query = [("watch", "1"), ("timeoutSeconds", str(timeout)), ("allowWatchBookmarks", "false")]
        yield from self.stream(
            res.path(namespace),
            query,
            what=f"watch {kind} in {namespace or 'the cluster'}",
            timeout=(5.0, float(timeout) + 5),
            stop=stop,
        )

    def _missing_namespace(self, error: ApiError, namespace: str | None) -> ApiError:
        """A 403 in a namespace that does not exist says so: an account with namespaced rights has none
        there, since its RoleBindings would live in it. Any other error is returned as it is."""
        if error.status != 403 or not namespace or self.namespace_exists(namespace):
            return error
        return ApiError(
            f"{error}; namespace {namespace} does not exist: create it and bind the account there (creating it "
            "takes `create namespaces` at the cluster scope)",
            error.status,
            error.reason,
            error.detail,
        )

    def namespace_exists(self, namespace: str) -> bool:
        """True when the namespace exists and is not being deleted (or we may not read it: see below)."""
        try:
            ns = self.get("v1", "Namespace", None, namespace)
        except ApiError as e:
            if e.status != 403:
                raise
            # Forbidden is not missing: an account whose rights are all in the namespace (a Role without
            # `get namespaces`) works there all the same. Were it missing, no RoleBinding could be in it,
            # and the first request made there says which permission the account lacks.
            return True
        return ns is not None and not ns.get("metadata", {}).get("deletionTimestamp")

    def allowed(self, verb: str, resource: Resource, namespace: str | None = None) -> bool | None:
        """Whether our credentials may `verb` the resource (in `namespace`, else cluster-wide), as the
        apiserver's authorizer answers a SelfSubjectAccessReview; None when it cannot be asked."""
        group = resource.group_version.rpartition("/")[0]
        attributes = {"verb": verb, "group": group, "resource": resource.plural}
        if namespace:
            attributes["namespace"] = namespace
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        try:
            doc = self.request(
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                body=review,
                what=f"ask whether we may {verb} {resource.plural}",
            )
        except ClusterError:
            return None
        status = (doc or {}).get("status") or {}
        return bool(status.get("allowed")) and not status.get("denied")


def _register(credential: str) -> None:
    """Mask a credential in everything promote prints: the Authorization header's value, its token (or
    basic auth's password) alone."""
    import base64
    import binascii

    redact.register(credential)
    scheme, _, secret = credential.partition(" ")
    redact.register(secret)
    if scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            user_password = base64.b64decode(secret, validate=True).decode()
            redact.register(user_password)
            redact.register(user_password.partition(":")[2])


def check_kubeconfig(paths: str) -> None:
    """Read each kubeconfig file as promote reads every file (UTF-8, bounded, YAML a mapping), so that a
    broken one is a clear error naming it rather than the kubernetes library's traceback, or a hang on an
    alias bomb. Missing files are left to the library, which skips them as kubectl does."""
    import os
    from pathlib import Path

    from promote import yamlio

    for path in filter(None, paths.split(os.pathsep)):
        try:
            text = yamlio.read_text(Path(path), name=path)
        except OSError:
            continue
        doc = yamlio.load(text, name=path)
        if doc is not None and not isinstance(doc, dict):
            raise ConfigError(
                f"{path}: a kubeconfig is a mapping (clusters, users, contexts), not a {type(doc).__name__}"
            )


def resolve_kubeconfig(kubeconfig: str | None) -> str:
    """The kubeconfig path(s) in force now: the option, else KUBECONFIG, else ~/.kube/config.

    The kubernetes library reads KUBECONFIG once, at import; we read it when the command runs.
    """
    import os

    return kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


DEFAULT_QPS = 500.0  # a local or healthy apiserver takes this easily; --qps lowers it for a busy one


def connect(context: str | None, kubeconfig: str | None = None, qps: float = DEFAULT_QPS) -> Cluster:
    """A client for a (context, kubeconfig), rate-limited to `qps` (burst 2x). The engine's Runtime
    makes one per context and run; this is for everything else (the dev-cluster harness, tools)."""
    return Cluster(context, kubeconfig, qps=qps, burst=max(1, int(2 * qps)))
