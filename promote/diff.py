"""Comparing what Git declares with what the cluster runs, field by field.

Apply goes through helm, which sends a three-way strategic merge patch (old release manifest, new
manifest, live object). To predict it exactly we build the same patch here (every field the chart sets,
plus deletions of what the chart stopped setting) and let the apiserver dry-run it: defaulting,
admission and immutable-field errors then surface at plan time, and the difference between the dry-run
result and the live object is exactly what apply changes. Server-owned fields are normalised away so the
plan never reports noise, and Secret data is never shown.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterable
from typing import Any

from promote.model import IgnoreRule
from promote.plan import FieldChange

SENSITIVE = "(sensitive)"

_SERVER_METADATA = (
    "resourceVersion",
    "uid",
    "selfLink",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionGracePeriodSeconds",
)
# Annotations written by controllers or kubectl, never by the chart.
_SERVER_ANNOTATIONS = ("deployment.kubernetes.io/revision", "kubectl.kubernetes.io/last-applied-configuration")

# Strategic-merge list keys of the built-in types (patchMergeKey in the Kubernetes API), by field name.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}


def merge_key(field: str, items: Iterable[Any]) -> str | None:
    """The strategic-merge key of a list field, if the Kubernetes API declares one."""
    if field == "ports":
        items = list(items)
        if items and all(isinstance(i, dict) and "containerPort" in i for i in items):
            return "containerPort"
        if items and all(isinstance(i, dict) and "port" in i for i in items):
            return "port"
        return None
    return _MERGE_KEYS.get(field)


def identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name) of a manifest."""
    md = obj.get("metadata") or {}
    return (str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(md.get("namespace") or ""), str(md["name"]))


def normalize(obj: dict[str, Any], ignore: Iterable[IgnoreRule] = ()) -> dict[str, Any]:
    """A copy without server-owned fields, and without fields an ignore rule hands to someone else."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    md = out.get("metadata") or {}
    for k in _SERVER_METADATA:
        md.pop(k, None)
    for key in ("annotations", "labels"):
        values = md.get(key)
        if isinstance(values, dict):
            for a in _SERVER_ANNOTATIONS:
                values.pop(a, None)
            if not values:
                md.pop(key)
    api_version, kind, _, name = identity(obj) if "name" in md else ("", "", "", "")
    for rule in ignore:
        if rule.matches(api_version, kind, name):
            for pointer in rule.json_pointers:
                remove_pointer(out, pointer)
    return out


def remove_pointer(doc: Any, pointer: str) -> None:
    """Remove the value at an RFC 6901 JSON pointer, if present."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, dict):
            cur = cur.get(p)
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            return
    last = parts[-1]
    if isinstance(cur, dict):
        cur.pop(last, None)
    elif isinstance(cur, list) and last.isdigit() and int(last) < len(cur):
        cur.pop(int(last))


def three_way_patch(original: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """The patch helm sends: every field of `desired`, and deletions for what `original` had and it dropped."""
    patch = copy.deepcopy(desired)
    if original:
        _add_deletions(original, desired, patch)
    return patch


def _add_deletions(orig: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, old in orig.items():
        if key not in new:
            patch[key] = None
            continue
        cur = new[key]
        if isinstance(old, dict) and isinstance(cur, dict):
            _add_deletions(old, cur, patch[key])
        elif isinstance(old, list) and isinstance(cur, list):
            mk = merge_key(key, old + cur)
            if not mk:
                continue  # replaced wholesale
            new_by_key = {i.get(mk): (n, i) for n, i in enumerate(cur) if isinstance(i, dict)}
            for item in old:
                if not isinstance(item, dict):
                    continue
                match = new_by_key.get(item.get(mk))
                if match is None:
                    patch[key].append({"$patch": "delete", mk: item.get(mk)})
                else:
                    _add_deletions(item, match[1], patch[key][match[0]])


def _fmt_key(key: Any) -> str:
    return f".{key}" if re.fullmatch(r"[A-Za-z_$][\w$-]*", str(key)) else f"[{json.dumps(key)}]"


def _is_sensitive(kind: str, path: tuple[Any, ...]) -> bool:
    return kind == "Secret" and bool(path) and path[0] in ("data", "stringData")


def field_changes(kind: str, live: Any, target: Any) -> list[FieldChange]:
    """Leaf-level differences from `live` to `target`, Secret values masked."""
    out: list[FieldChange] = []
    _diff(kind, (), "", live, target, out)
    return out


def _diff(kind: str, path: tuple[Any, ...], shown: str, a: Any, b: Any, out: list[FieldChange]) -> None:
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            _diff(kind, (*path, k), shown + _fmt_key(k), a.get(k), b.get(k), out)
        return
    if isinstance(a, list) and isinstance(b, list):
        field = path[-1] if path else ""
        mk = merge_key(str(field), a + b) or ("name" if _all_named(a + b) else None)
        # Key items only when every one is a map: a custom resource may use a name such as `env` for strings.
        if mk and all(isinstance(i, dict) for i in a + b):
            av = {i.get(mk): i for i in a}
            bv = {i.get(mk): i for i in b}
            if len(av) == len(a) and len(bv) == len(b):
                for k in list(dict.fromkeys([*av, *bv])):
                    _diff(kind, (*path, (mk, k)), f"{shown}[{mk}={k}]", av.get(k), bv.get(k), out)
                return
        if len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _diff(kind, (*path, i), f"{shown}[{i}]", x, y, out)
            return
    label = shown.lstrip(".")
    if _is_sensitive(kind, path):
        masked_a, masked_b = (SENSITIVE if a is not None else None), (SENSITIVE if b is not None else None)
        out.append(FieldChange(label, masked_a, masked_b, True, path))
    else:
        out.append(FieldChange(label, a, b, segments=path))


MISSING = object()  # value_at's answer for a path an object does not have


def value_at(obj: Any, segments: tuple[Any, ...]) -> Any:
    """The value at a field change's raw path (keys, (merge key, value) pairs, list indexes), MISSING if none."""
    cur = obj
    for seg in segments:
        if isinstance(seg, tuple) and isinstance(cur, list):
            key, value = seg
            cur = next((i for i in cur if isinstance(i, dict) and i.get(key) == value), MISSING)
        elif isinstance(seg, int) and isinstance(cur, list):
            cur = cur[seg] if seg < len(cur) else MISSING
        elif isinstance(cur, dict):
            cur = cur.get(seg, MISSING)
        else:
            return MISSING
        if cur is MISSING:
            return MISSING
    return cur


def holds(value: Any, hidden: frozenset[str]) -> bool:
    """Whether a value shows one of the hidden values: equal to a short one, containing a longer one
    (a writeOnly password rendered into a connection string in a ConfigMap)."""
    if not hidden or value is None or isinstance(value, bool):
        return False
    if isinstance(value, dict):
        return any(holds(v, hidden) for v in value.values())
    if isinstance(value, list):
        return any(holds(v, hidden) for v in value)
    text = str(value)
    return any(h == text or (len(h) >= 4 and h in text) for h in hidden)


def mask_text(text: str, hidden: frozenset[str]) -> str:
    """A message with every hidden value (of 4 characters or more) in it replaced by the mask: API
    errors and helm's quote the value they refuse."""
    for h in sorted(hidden, key=len, reverse=True):
        if len(h) >= 4:
            text = text.replace(h, SENSITIVE)
    return text


def mask_values(obj: Any, hidden: frozenset[str]) -> Any:
    """A copy with every string that shows a hidden value replaced by the mask."""
    if not hidden:
        return obj
    if isinstance(obj, dict):
        return {k: mask_values(v, hidden) for k, v in obj.items()}
    if isinstance(obj, list):
        return [mask_values(v, hidden) for v in obj]
    return SENSITIVE if isinstance(obj, str | int | float) and not isinstance(obj, bool) and holds(obj, hidden) else obj


def mask_fields(fields: list[FieldChange], hidden: frozenset[str]) -> list[FieldChange]:
    """Field changes with any that shows a hidden value made sensitive, whatever kind it is in."""
    out = []
    for f in fields:
        if not f.sensitive and (holds(f.before, hidden) or holds(f.after, hidden)):
            before, after = (SENSITIVE if f.before is not None else None), (SENSITIVE if f.after is not None else None)
            f = FieldChange(f.path, before, after, True, f.segments)
        out.append(f)
    return out


def _all_named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def redact(obj: dict[str, Any], changed: Iterable[str] = (), side: str = "") -> dict[str, Any]:
    """A manifest safe to print or save: Secret values replaced by a mask.

    Keys in `changed` are marked with `side` (e.g. "Git" or "live"), so a diff of two redacted Secrets
    still shows which key differs without showing either value.
    """
    if obj.get("kind") != "Secret":
        return obj
    marked = set(changed)
    out = copy.deepcopy(obj)
    for key in ("data", "stringData"):
        if isinstance(out.get(key), dict):
            out[key] = {k: f"{SENSITIVE} ({side} value)" if k in marked else SENSITIVE for k in out[key]}
    ann = (out.get("metadata") or {}).get("annotations") or {}
    ann.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return out


# --- ownership --------------------------------------------------------------------------------------

OUR_MANAGERS = frozenset({"helm", "promote"})  # exact names: Flux's "helm-controller" is another controller
# Field managers that are people at a terminal, not controllers: their edits are drift.
HUMAN_MANAGER_PREFIXES = ("kubectl",)


def _fields_node(node: Any, segment: Any) -> Any:
    if not isinstance(node, dict):
        return None
    if isinstance(segment, tuple):  # a keyed list item: managedFields says k:{"name":"app"}
        key, value = segment
        for k, v in node.items():
            if k.startswith("k:"):
                try:
                    ident = json.loads(k[2:])
                except ValueError:
                    continue
                if ident.get(key) == value:
                    return v
        return None
    if isinstance(segment, int):
        return node.get(f"i:{segment}")
    return node.get(f"f:{segment}")


def managers_of(live: dict[str, Any], segments: tuple[Any, ...]) -> list[str]:
    """Managers owning the deepest node recorded on `segments` in the live object's managedFields."""
    best: list[str] = []
    best_depth = 0
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        node: Any = entry.get("fieldsV1") or {}
        depth = 0
        for seg in segments:
            nxt = _fields_node(node, seg)
            if nxt is None:
                break
            node, depth = nxt, depth + 1
        # Ownership of a leaf, or of a whole subtree recorded as an empty node.
        if depth and (depth == len(segments) or node == {} or node == {".": {}}):
            if depth > best_depth:
                best, best_depth = [str(entry.get("manager", ""))], depth
            elif depth == best_depth:
                best.append(str(entry.get("manager", "")))
    return best


def owned_by_other_controller(live: dict[str, Any], segments: tuple[Any, ...]) -> str | None:
    """The controller owning a field, when neither we, helm, nor a person with kubectl last set it."""
    owners = managers_of(live, segments)
    if not owners:
        return None
    for m in owners:
        if m in OUR_MANAGERS or m.startswith(HUMAN_MANAGER_PREFIXES):
            return None
    return owners[0]


# --- proving "unchanged" without a dry run ------------------------------------------------------------


def secret_fingerprint(value: Any) -> str:
    """A stand-in for a Secret value in caches: equal values, equal fingerprints on this machine; keyed,
    so that a weak value cannot be guessed back from the cache."""
    from promote import fingerprint

    return "hmac:" + fingerprint.keyed(str(value).encode(), fingerprint.machine_key())


def covers(live: Any, want: Any, field: str = "") -> bool:
    """True when applying `want` onto `live` provably changes nothing (every field `want` sets is equal).

    It may say False for objects that would not change (e.g. a quantity the server rewrites); callers then
    fall back to a server dry run, so only a True answer has to be exact.
    """
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return False
        for k, v in want.items():
            if v is None:
                if k in live:
                    return False
            elif k not in live or not covers(live[k], v, str(k)):
                return False
        return True
    if isinstance(want, list):
        if not isinstance(live, list):
            return False
        mk = merge_key(field, want + live)
        if mk and all(isinstance(i, dict) for i in want + live):
            by_key = {i.get(mk): i for i in live}
            return all(i.get(mk) in by_key and covers(by_key[i.get(mk)], i) for i in want)
        return len(want) == len(live) and all(covers(a, b) for a, b in zip(live, want, strict=True))
    return bool(live == want and type(live) is type(want))


def crd_current(live: dict[str, Any], want: dict[str, Any]) -> bool:
    """True when the live CRD already holds everything the chart's says (spec, labels, annotations)."""
    return covers(live.get("spec"), pruned(want.get("spec"))) and covers(_labels(live), _labels(want))


def pruned(value: Any) -> Any:
    """A copy without empty mappings and lists (the API server drops them: `properties: {}` never reads back)."""
    if isinstance(value, dict):
        out = {k: pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def _labels(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj.get("metadata") or {}
    return {k: md[k] for k in ("labels", "annotations") if md.get(k)}


def fingerprint_secret(obj: dict[str, Any]) -> dict[str, Any]:
    """A Secret with its data and stringData values replaced by fingerprints (other kinds unchanged).

    String `stringData` is folded into `data` as the apiserver stores it (base64, over `data`'s key of the
    same name): a live Secret never has `stringData`, so a rendered one that keeps it could never be proven
    unchanged from the cache, and every warm plan of a chart like `helm create`'s ran helm again.
    """
    if obj.get("kind") != "Secret":
        return obj
    out = dict(obj)
    data, strings = obj.get("data"), obj.get("stringData")
    if isinstance(strings, dict) and all(isinstance(v, str) for v in strings.values()):
        folded = {k: base64.b64encode(v.encode()).decode() for k, v in strings.items()}
        data = {**data, **folded} if isinstance(data, dict) else folded
        out.pop("stringData")
        out["data"] = data
    for key in ("data", "stringData"):
        if isinstance(out.get(key), dict):
            out[key] = {k: secret_fingerprint(v) for k, v in out[key].items()}
    return out
