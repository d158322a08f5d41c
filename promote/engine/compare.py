"""Comparing one release's render with the live cluster: the plan of one release, read-only.

A change is predicted the way the API server will apply it: a server-side dry run of helm's three-way
patch for each object that may change; an object Git did not change and whose live state already holds
every field the chart sets is unchanged without one. Nothing is written.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import Any

from promote import diff, health
from promote.chart import chart_crds, hook_annotation
from promote.cluster import ApiError, Cluster
from promote.engine.workspace import Target
from promote.errors import ClusterError
from promote.model import CrdPolicy
from promote.plan import Action, ApplyMethod, Conflict, FieldChange, HookPhase, ReleasePlan, ResourceChange
from promote.release import ReleaseHistory, unverified
from promote.snapshot import Snapshot

# A change with the live object and the object as Git wants it (the server's dry-run result), for diff.
Detail = tuple[ResourceChange, dict[str, Any] | None, dict[str, Any] | None]


def manifest_digest(objs: list[dict[str, Any]]) -> str:
    """Digest of rendered manifests, Secrets included, for saved-plan verification without storing them;
    under the plan key, as it covers Secret values and is printed."""
    import hmac
    import json

    from promote import fingerprint

    h = hmac.new(fingerprint.plan_key(), digestmod=hashlib.sha256)
    for o in sorted(objs, key=lambda o: diff.identity(o)):
        h.update(json.dumps(o, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def _owned_elsewhere(f: FieldChange, live: dict[str, Any], kind: str, name: str, hpa: set[tuple[str, str]]) -> bool:
    """Fields another controller owns are neither drift nor a change to report."""
    if f.segments == ("spec", "replicas") and (kind, name) in hpa:
        return True
    return diff.owned_by_other_controller(live, f.segments) is not None


Ident = tuple[str, str, str, str]


def _split(
    cluster: Cluster, t: Target, rendered: list[dict[str, Any]], hist: ReleaseHistory
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[Ident, dict[str, Any]]]:
    """Resources and hooks of a render, as helm will apply them (see _as_helm_applies), and the old
    manifest by identity, read the same way."""
    ns = t.env.namespace
    resources: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    for obj in rendered:
        (hooks if hook_annotation(obj) else resources).append(obj)
    scopes = _crd_scopes(t)
    for obj in resources:
        _as_helm_applies(cluster, obj, t.env.release, ns, scopes)
    old: dict[Ident, dict[str, Any]] = {}
    for obj in hist.deployed.manifest if hist.deployed else ():
        _as_helm_applies(cluster, obj, t.env.release, ns, scopes)
        old[diff.identity(obj)] = obj
    return resources, hooks, old


def _crd_scopes(t: Target) -> dict[tuple[str, str], bool]:
    """(group, kind) → namespaced, for the kinds the chart's crds/ define: a cluster that does not serve
    them yet cannot say."""
    out = {}
    for crd in chart_crds(t.chart):
        spec = crd.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        if spec.get("group") and kind:
            out[str(spec["group"]), str(kind)] = spec.get("scope") != "Cluster"
    return out


def _namespaced(cluster: Cluster, obj: dict[str, Any], scopes: dict[tuple[str, str], bool]) -> bool:
    try:
        return cluster.resource(obj["apiVersion"], obj["kind"]).namespaced
    except ClusterError:
        key = (str(obj["apiVersion"]).rpartition("/")[0], str(obj["kind"]))
        if key in scopes:
            return scopes[key]
        raise


def _as_helm_applies(
    cluster: Cluster, obj: dict[str, Any], release: str, ns: str, scopes: dict[tuple[str, str], bool]
) -> None:
    """A rendered object the way helm applies it: in the release's namespace when namespaced, and, for
    a template that leaves `annotations:` or `labels:` empty (YAML null), with helm's own ownership
    metadata there instead. Compared as rendered, the null reads as "delete every annotation", and the
    object is drift forever, though helm, which merges its metadata into it, changes nothing."""
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = obj["metadata"] = {}
    if _namespaced(cluster, obj, scopes):
        md.setdefault("namespace", ns)
    else:
        md.pop("namespace", None)
    if "labels" in md and md["labels"] is None:
        md["labels"] = {"app.kubernetes.io/managed-by": "Helm"}
    if "annotations" in md and md["annotations"] is None:
        md["annotations"] = {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns}


def _live(snap: Snapshot, objs: list[dict[str, Any]], namespace: str) -> dict[Ident, dict[str, Any]]:
    if not snap.namespace_exists(namespace):
        return {}
    return snap.find(diff.identity(o) for o in objs)


def _hooks(hooks: list[dict[str, Any]], ns: str, upgrade: bool, will_sync: bool) -> list[ResourceChange]:
    out = []
    for obj in hooks:
        phase = HookPhase.from_helm(hook_annotation(obj) or "", upgrade=upgrade)
        if phase is None:
            continue
        api_version, kind, _, name = diff.identity(obj)
        out.append(
            ResourceChange(Action.CREATE if will_sync else Action.UNCHANGED, api_version, kind, ns, name, hook=phase)
        )
    return out


def prove_unchanged(
    snap: Snapshot,
    t: Target,
    cached: list[dict[str, Any]],
    hist: ReleaseHistory,
    base: ReleasePlan,
    digest: str,
    server_side: bool = False,
) -> ReleasePlan | None:
    """The all-unchanged plan of a release, from a cached render, when it can be proven without helm.

    Proven means: the release is deployed, the cached render equals the deployed manifest (so helm's
    patch has nothing to delete), and every live object already holds every field the chart sets. Anything
    else returns None, and the caller renders and compares for real.
    """
    ns = t.env.namespace
    latest = hist.latest
    if latest is None or latest.status != "deployed" or hist.deployed is None:
        return None
    crds = _crds(snap, t)
    if any(c.action != Action.UNCHANGED or c.note for c in crds):
        return None
    resources, hooks, old = _split(snap.cluster, t, cached, hist)
    live = _live(snap, resources + list(old.values()), ns)
    rendered_ids = {diff.identity(o) for o in resources}
    if set(old) != rendered_ids:
        return None
    changes: list[ResourceChange] = list(crds)
    for obj in resources:
        ident = diff.identity(obj)
        current = live.get(ident)
        if current is None or diff.fingerprint_secret(old[ident]) != obj:
            return None
        if not diff.covers(diff.fingerprint_secret(current), obj):
            return None
        md = current.get("metadata", {})
        changes.append(ResourceChange(Action.UNCHANGED, *_parts(ident), resource_version=md.get("resourceVersion")))
    changes += _hooks(hooks, ns, upgrade=True, will_sync=False)
    return replace(
        base,
        context=snap.cluster.context,
        current_revision=latest.revision,
        current_status=latest.status,
        current_chart_version=latest.chart_version,
        apply_method=ApplyMethod.SERVER_SIDE if server_side else ApplyMethod.CLIENT_SIDE,
        current_unverified=unverified(hist) is not None,
        manifest_digest=digest,
        changes=tuple(changes),
    )


def _parts(ident: Ident) -> tuple[str, str, str | None, str]:
    return ident[0], ident[1], ident[2] or None, ident[3]


def compare(
    snap: Snapshot,
    t: Target,
    rendered: list[dict[str, Any]],
    hist: ReleaseHistory,
    base: ReleasePlan,
    digest: str,
    details: list[Detail] | None = None,
    server_side: bool = False,
) -> ReleasePlan:
    """Compare rendered objects with the live cluster; server-side dry runs where a change is possible:
    of helm's three-way patch, or, for a release Helm 4 applies server-side, of its server-side apply.

    With `details`, every object is dry-run (none is taken as unchanged unseen) and its pair of live
    and predicted objects is collected there, for `promote diff`.
    """
    cluster, ns = snap.cluster, t.env.namespace
    resources, hooks, old = _split(cluster, t, rendered, hist)
    ns_exists = snap.namespace_exists(ns)
    changes: list[ResourceChange] = []
    errors: list[str] = []
    if not ns_exists:
        changes.append(ResourceChange(Action.CREATE, "v1", "Namespace", None, ns))
    crds = _crds(snap, t)
    # Custom resources of a CRD the chart brings and the cluster does not serve yet: created once apply
    # has made the CRD live; nothing to read or dry-run before that.
    pending = {(c.name.split(".", 1)[-1], c.api_version) for c in crds if c.action == Action.CREATE}
    unserved = [o for o in resources if _kind_pending(snap.cluster, o, t, pending)]
    for obj in unserved:
        changes.append(ResourceChange(Action.CREATE, *_parts(diff.identity(obj))))
    resources = [o for o in resources if o not in unserved]
    live = _live(snap, resources + list(old.values()), ns)
    for obj in resources:
        try:
            change, error = _compare_object(snap, t, obj, live, old, ns_exists, details, server_side)
        except ApiError as e:
            change, error = None, diff.mask_text(str(e), t.hidden)  # the API quotes the value it refuses
        changes += [change] if change else []
        errors += [error] if error else []
    changes += _deletions(old, {diff.identity(o) for o in resources}, live, details)
    changes = crds + changes
    will_sync = (
        hist.deployed is None
        or (hist.latest is not None and hist.latest.status != "deployed")
        or any(c.action != Action.UNCHANGED for c in changes)
    )
    changes += _hooks(hooks, ns, upgrade=hist.deployed is not None, will_sync=will_sync)
    return replace(
        base,
        context=cluster.context,
        current_revision=hist.latest.revision if hist.latest else None,
        current_status=hist.latest.status if hist.latest else None,
        current_chart_version=hist.latest.chart_version if hist.latest else None,
        apply_method=ApplyMethod.SERVER_SIDE if server_side else ApplyMethod.CLIENT_SIDE,
        current_unverified=unverified(hist) is not None,
        manifest_digest=digest,
        errors=tuple(errors),
        changes=tuple(changes),
    )


# The field manager Helm 4 applies with.
HELM_MANAGER = "helm"
_CONFLICT_WITH = re.compile(r'conflict with "([^"]+)"')


def _apply_dry_run(
    cluster: Cluster, obj: dict[str, Any], ns: str | None, release: str, release_ns: str
) -> tuple[dict[str, Any], tuple[Conflict, ...]]:
    """(the object as Helm 4's server-side apply would leave it, the fields it would take from other
    managers): a dry run without force names the conflicts, one with force predicts the result. The
    object carries the ownership metadata helm adds to what it applies (else the dry run removes it)."""
    md = dict(obj.get("metadata") or {})
    md["labels"] = {**(md.get("labels") or {}), "app.kubernetes.io/managed-by": "Helm"}
    md["annotations"] = {
        **(md.get("annotations") or {}),
        "meta.helm.sh/release-name": release,
        "meta.helm.sh/release-namespace": release_ns,
    }
    obj = {**obj, "metadata": md}
    try:
        return cluster.apply(obj, ns, field_manager=HELM_MANAGER, force=False, dry_run=True), ()
    except ApiError as e:
        if e.status != 409:
            raise
        conflicts = tuple(
            Conflict(
                str(c.get("field", "")).lstrip("."),
                m.group(1) if (m := _CONFLICT_WITH.search(str(c.get("message", "")))) else "?",
            )
            for c in e.causes
            if c.get("reason") == "FieldManagerConflict"
        )
        return cluster.apply(obj, ns, field_manager=HELM_MANAGER, force=True, dry_run=True), conflicts


def _compare_object(
    snap: Snapshot,
    t: Target,
    obj: dict[str, Any],
    live: dict[Ident, dict[str, Any]],
    old: dict[Ident, dict[str, Any]],
    ns_exists: bool,
    details: list[Detail] | None,
    server_side: bool = False,
) -> tuple[ResourceChange | None, str | None]:
    """(change, error) for one rendered object."""
    cluster = snap.cluster
    ident = diff.identity(obj)
    api_version, kind, ons, name = ident
    current = live.get(ident)
    if current is None:
        predicted = cluster.create(obj, ons or None, dry_run=True) if ns_exists else obj
        change = ResourceChange(Action.CREATE, api_version, kind, ons or None, name)
        if details is not None:
            details.append((change, None, predicted))
        return change, None
    if ident not in old and (owner := _owner(current)) != (t.env.release, t.env.namespace):
        where = f"{kind} {ons + '/' if ons else ''}{name}"
        held = f"release {owner[0]} in namespace {owner[1]}" if owner[0] else "no helm release"
        return None, (
            f"{where} exists and belongs to {held}, not to release {t.env.release} in {t.env.namespace}: "
            "helm would refuse to adopt it; delete it, rename it in one of the charts, or label it for this release"
        )
    rv = current.get("metadata", {}).get("resourceVersion")
    if details is None and old.get(ident) == obj and diff.covers(current, obj):
        # Git did not change and live holds every field the chart sets: nothing to dry-run.
        return ResourceChange(Action.UNCHANGED, api_version, kind, ons or None, name, resource_version=rv), None
    conflicts: tuple[Conflict, ...] = ()
    if server_side:
        predicted, conflicts = _apply_dry_run(cluster, obj, ons or None, t.env.release, t.env.namespace)
    else:
        patch = diff.three_way_patch(old.get(ident), obj)
        predicted = cluster.patch(api_version, kind, ons or None, name, patch, dry_run=True)
    hpa = snap.hpa_targets(t.env.namespace) if health.kind_of(obj).scales else set()
    fields = [
        f
        for f in diff.field_changes(
            kind, diff.normalize(current, t.env.ignore), diff.normalize(predicted, t.env.ignore)
        )
        if not _owned_elsewhere(f, current, kind, name, hpa)
    ]
    fields = diff.mask_fields(fields, t.hidden)
    action = Action.UPDATE if fields else Action.UNCHANGED
    change = ResourceChange(
        action, api_version, kind, ons or None, name, fields=tuple(fields), resource_version=rv, conflicts=conflicts
    )
    if details is not None:
        details.append((change, current, predicted))
    return change, None


def _owner(live: dict[str, Any]) -> tuple[str, str]:
    """(release name, release namespace) helm's ownership annotations give a live object ("" when none).

    helm adopts an object only when both match: two environments on one cluster whose releases share a
    name would otherwise both claim a cluster-scoped object.
    """
    annotations = live.get("metadata", {}).get("annotations") or {}
    return annotations.get("meta.helm.sh/release-name", ""), annotations.get("meta.helm.sh/release-namespace", "")


def _kind_pending(cluster: Cluster, obj: dict[str, Any], t: Target, pending: set[tuple[str, str]]) -> bool:
    """True for an object of a kind whose CRD the chart brings, not served yet."""
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    if not pending or not any(g == group for g, _ in pending):
        return False
    try:
        cluster.resource(str(obj["apiVersion"]), str(obj["kind"]))
    except ClusterError:
        return True
    return False


def _crds(snap: Snapshot, t: Target) -> list[ResourceChange]:
    """The chart's crds/ as apply will treat them (the app's `crds` policy): a missing one is created; an
    existing one that differs is replaced under CreateReplace, and left as it is (said) under Create."""
    if t.app.crds is CrdPolicy.SKIP:
        return []
    out = []
    for crd in chart_crds(t.chart):
        ident = (str(crd.get("apiVersion", "")), "CustomResourceDefinition", "", str(crd["metadata"]["name"]))
        live = snap.find([ident]).get(ident)
        if live is None:
            out.append(ResourceChange(Action.CREATE, ident[0], ident[1], None, ident[3]))
            continue
        rv = live.get("metadata", {}).get("resourceVersion")
        fields = (
            ()
            if diff.crd_current(live, crd)
            else tuple(diff.field_changes(ident[1], _as_set(live, diff.pruned(crd)), diff.pruned(crd)))
        )
        if not fields:
            out.append(ResourceChange(Action.UNCHANGED, ident[0], ident[1], None, ident[3], resource_version=rv))
        elif t.app.crds is CrdPolicy.CREATE_REPLACE:
            out.append(
                ResourceChange(Action.UPDATE, ident[0], ident[1], None, ident[3], fields=fields, resource_version=rv)
            )
        else:
            note = "not applied: crds: Create never changes an existing CRD (crds: CreateReplace replaces it)"
            out.append(
                ResourceChange(
                    Action.UNCHANGED, ident[0], ident[1], None, ident[3], fields=fields, resource_version=rv, note=note
                )
            )
    return out


def _as_set(live: Any, want: Any) -> Any:
    """`live` cut down to the fields `want` sets, so a field diff shows what the chart changes, not what
    the server added."""
    if isinstance(live, dict) and isinstance(want, dict):
        return {k: _as_set(live[k], v) for k, v in want.items() if k in live}
    return live


def _deletions(
    old: dict[Ident, dict[str, Any]],
    rendered_ids: set[Ident],
    live: dict[Ident, dict[str, Any]],
    details: list[Detail] | None,
) -> list[ResourceChange]:
    """Objects of the deployed revision that Git no longer renders, live and not kept by policy."""
    out: list[ResourceChange] = []
    for ident, obj in old.items():
        policy = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/resource-policy")
        current = live.get(ident)
        if ident in rendered_ids or current is None or policy == "keep":
            continue
        rv = current.get("metadata", {}).get("resourceVersion")
        change = ResourceChange(Action.DELETE, *_parts(ident), resource_version=rv)
        out.append(change)
        if details is not None:
            details.append((change, current, None))
    return out
