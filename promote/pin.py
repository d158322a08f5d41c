"""Pins: an environment held at what `promote rollback` took it back to, until someone releases it.

A rollback is a decision about an artifact, not only about a revision: the pin keeps apply and self-heal
from putting the rolled-back-from artifact back, and keeps the next environment's gate from promoting
it, until `promote unpin`. It lives in the cluster, beside the environment's Lease, as a ConfigMap of
promote's, so every pipeline and person sees the same pin.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from promote.cluster import ApiError, Cluster

PIN_API = "v1"


def _name(env: str) -> str:
    return f"promote-pin-{env}"


@dataclass(frozen=True, kw_only=True)
class Pin:
    """Who pinned an environment, when and why, at what, and the artifacts it rolled back away from."""

    env: str
    by: str
    at: str
    reason: str = ""
    pinned_at: str = ""  # what the environment runs now: "<git sha>" or "helm revision N"
    blocked: dict[str, str] = field(default_factory=dict)  # app -> artifact digest rolled back away from

    def describe(self) -> str:
        """One line for gates, apply and status."""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.env} is pinned at {self.pinned_at or 'its rollback'} by {self.by} since {self.at[:19]}{why}"


def read(cluster: Cluster, namespace: str, env: str) -> Pin | None:
    """The pin of `env` in a namespace, None when there is none (or it cannot be read as one)."""
    cm = cluster.get(PIN_API, "ConfigMap", namespace, _name(env))
    if cm is None:
        return None
    try:
        doc = json.loads((cm.get("data") or {}).get("pin.json", ""))
    except ValueError:
        doc = None
    texts = ("by", "at", "reason", "pinned_at")
    blocked = doc.get("blocked", {}) if isinstance(doc, dict) else None
    if (
        not isinstance(doc, dict)
        or not all(isinstance(doc.get(k, ""), str) for k in texts)
        or not isinstance(blocked, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in blocked.items())
    ):
        # Still a pin: someone wrote it; saying so is better than ignoring it.
        return Pin(env=env, by="unknown", at="", reason=f"unreadable pin ConfigMap {_name(env)}")
    return Pin(env=env, blocked=dict(blocked), **{k: str(doc.get(k, "")) for k in texts})


def write(cluster: Cluster, namespace: str, pin: Pin) -> None:
    """Create or replace the pin of `pin.env` in a namespace."""
    body = {
        "apiVersion": PIN_API,
        "kind": "ConfigMap",
        "metadata": {
            "name": _name(pin.env),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "promote", "promote.dev/pin": pin.env},
        },
        "data": {"pin.json": json.dumps(asdict(pin), sort_keys=True)},
    }
    try:
        cluster.create(body, namespace)
    except ApiError as e:
        if e.status != 409:
            raise
        cluster.patch(PIN_API, "ConfigMap", namespace, _name(pin.env), {"data": body["data"]})


def clear(cluster: Cluster, namespace: str, env: str) -> bool:
    """Remove the pin of `env` in a namespace; True when there was one."""
    if cluster.get(PIN_API, "ConfigMap", namespace, _name(env)) is None:
        return False
    cluster.delete(PIN_API, "ConfigMap", namespace, _name(env))
    return True
