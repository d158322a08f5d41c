"""Live state, read once per command run: one list per kind and namespace, shared by every release.

Many releases share a namespace, so listing each kind once per namespace (instead of once per release,
or a GET per object) turns hundreds of requests into a handful. Where a run plans a single release of a
namespace (`apply --app`), a kind of which it has a single object is read with a GET instead: one
request either way, but listing every Secret of a busy namespace, helm's release storage included, to
find one reads far more than it needs. Reads are single-flight: the first release to need a list
fetches it while the others wait for the same answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

from promote import diff
from promote.cluster import ApiError, Cluster
from promote.errors import PromoteError
from promote.release import ReleaseHistory, decode

T = TypeVar("T")
Ident = tuple[str, str, str, str]


# Up to this many releases of a namespace in one run, a kind with one object is read, not listed.
FEW_RELEASES = 1


class Snapshot:
    """Memoised reads of one cluster for one command run."""

    def __init__(self, cluster: Cluster, sparse: Iterable[str] = ()) -> None:
        self.cluster = cluster
        self.sparse = frozenset(sparse)  # namespaces where a kind with one wanted object is read, not listed
        self._lock = threading.Lock()
        self._futures: dict[tuple[Any, ...], Future[Any]] = {}

    def _once(self, key: tuple[Any, ...], fetch: Callable[[], T]) -> T:
        with self._lock:
            fut = self._futures.get(key)
            owner = fut is None
            if owner:
                fut = self._futures[key] = Future()
        assert fut is not None
        if owner:
            try:
                fut.set_result(fetch())
            except BaseException as e:
                fut.set_exception(e)
        result: T = fut.result()
        return result

    def objects(self, api_version: str, kind: str, namespace: str | None) -> dict[Ident, dict[str, Any]]:
        """Every object of a kind in a namespace, by identity."""

        def fetch() -> dict[Ident, dict[str, Any]]:
            out = {}
            for item in self.cluster.list(api_version, kind, namespace):
                item["apiVersion"], item["kind"] = api_version, kind
                out[diff.identity(item)] = item
            return out

        return self._once(("list", api_version, kind, namespace or ""), fetch)

    def find(self, idents: Iterable[Ident]) -> dict[Ident, dict[str, Any]]:
        """The live objects among these identities (apiVersion, kind, namespace or "", name), by identity."""
        groups: dict[tuple[str, str, str], set[Ident]] = {}
        for ident in idents:
            groups.setdefault(ident[:3], set()).add(ident)
        found: dict[Ident, dict[str, Any]] = {}
        for (api_version, kind, ns), group in sorted(groups.items()):
            if ns in self.sparse and len(group) == 1:
                (ident,) = group
                if (obj := self._one(ident)) is not None:
                    found[ident] = obj
                continue
            every = self.objects(api_version, kind, ns or None)
            found.update((i, every[i]) for i in group if i in every)
        return found

    def _one(self, ident: Ident) -> dict[str, Any] | None:
        api_version, kind, ns, name = ident

        def fetch() -> dict[str, Any] | None:
            item = self.cluster.get(api_version, kind, ns or None, name)
            if item is not None:
                item["apiVersion"], item["kind"] = api_version, kind
            return item

        return self._once(("get", *ident), fetch)

    def namespace_exists(self, namespace: str) -> bool:
        """True when the namespace exists and is not being deleted."""
        return self._once(("ns", namespace), lambda: self.cluster.namespace_exists(namespace))

    def _release_secrets(self, namespace: str) -> dict[str, list[dict[str, Any]]]:
        """helm's storage Secrets of the current revisions in a namespace, by release (not decoded)."""

        def fetch() -> dict[str, list[dict[str, Any]]]:
            secrets = self.cluster.list("v1", "Secret", namespace, label_selector="owner=helm,status!=superseded")
            by_name: dict[str, list[dict[str, Any]]] = {}
            for s in secrets:
                by_name.setdefault(str((s.get("metadata", {}).get("labels") or {}).get("name", "")), []).append(s)
            return by_name

        return self._once(("releases", namespace), fetch)

    def release(self, namespace: str, name: str) -> ReleaseHistory:
        """A release's current revisions (empty when never installed).

        One list serves every release of the namespace, but only the releases asked for are decoded
        (base64, gzip, JSON and the manifest's YAML): applying one app must not pay for fifty.
        """

        def decode_all() -> ReleaseHistory:
            records = (decode(s) for s in self._release_secrets(namespace).get(name, []))
            return ReleaseHistory(tuple(sorted(records, key=lambda r: r.revision)))

        return self._once(("release", namespace, name), decode_all)

    def hpa_targets(self, namespace: str) -> set[tuple[str, str]]:
        """(kind, name) of every workload an HPA scales: its spec.replicas belongs to the HPA."""

        def fetch() -> set[tuple[str, str]]:
            try:
                hpas = self.cluster.list("autoscaling/v1", "HorizontalPodAutoscaler", namespace)
            except (ApiError, PromoteError):
                return set()
            return {
                (str(h["spec"]["scaleTargetRef"].get("kind")), str(h["spec"]["scaleTargetRef"].get("name")))
                for h in hpas
                if h.get("spec", {}).get("scaleTargetRef")
            }

        return self._once(("hpa", namespace), fetch)
