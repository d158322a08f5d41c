"""Saved plans: what a pipeline approved, and the check that the world has not moved since.

A saved plan is the plan's own JSON (it never holds Secret values: changes show them masked, and
Secrets are covered by the rendered-manifest digest instead, keyed so that it cannot be checked against
guesses: see fingerprint). Before applying it, the plan is computed
again and compared: the Git revision, every release's artifact, values and manifest digests, the set of
changes, and the live resourceVersion each change was computed against. Anything that moved refuses the
apply, saying what moved.
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from promote import fingerprint, yamlio
from promote.errors import ConfigError, GateBlocked
from promote.plan import SCHEMA_VERSION, Plan


def write(plan: Plan, path: str) -> None:
    """Write a plan file for `apply --plan`."""
    try:
        # 0600 from creation: a plan holds no Secret value, but names, digests and cluster details that
        # are nobody else's business on a shared CI runner.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_TRUNC
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(plan.to_dict(), indent=2) + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write the plan to {path}: {e.strerror}") from e


def read(path: str) -> dict[str, Any]:
    """Read and sanity-check a plan file."""
    try:
        doc = json.loads(yamlio.read_text(Path(path)))
    except OSError as e:
        raise ConfigError(f"cannot read the plan file {path}: {e.strerror}") from e
    except ValueError as e:
        raise ConfigError(f"{path} is not a promote plan: invalid JSON ({e})") from e
    if not isinstance(doc, dict) or "target" not in doc or "environments" not in doc:
        raise ConfigError(f"{path} is not a promote plan: it has no target and environments")
    if doc.get("schemaVersion") != SCHEMA_VERSION:
        raise ConfigError(
            f"{path} has plan schemaVersion {doc.get('schemaVersion')}; this promote reads {SCHEMA_VERSION}"
        )
    wrong = _shape(doc)
    if wrong:
        # An edited or truncated file: refused by where it departs from the published shape, rather than
        # failing half-way through the comparison below.
        raise ConfigError(f"{path} is not a plan promote wrote: {wrong}")
    if doc.get("errors") or any(r.get("errors") for e in doc["environments"] for r in e.get("releases", [])):
        raise ConfigError(f"{path} records errors: a failed plan cannot be applied")
    if doc.get("digestKey") != fingerprint.key_id(fingerprint.plan_key()):
        # Checked before anything else is done: without the key, every release would look stale.
        raise ConfigError(
            f"{path} was planned with another digest key (on another machine, or with another "
            f"{fingerprint.PLAN_KEY_ENV}), so this apply cannot check it. Set {fingerprint.PLAN_KEY_ENV} "
            "to the same secret for the plan and the apply, or plan again here."
        )
    return doc


@functools.cache
def _plan_schema() -> dict[str, Any]:
    # As model._schema: the package links to schemas/plan.schema.json, and a built package carries a copy.
    here = resources.files("promote").joinpath("plan.schema.json")
    text = (
        here.read_text()
        if here.is_file()
        else (Path(__file__).resolve().parents[1] / "schemas" / "plan.schema.json").read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    return {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": "#/$defs/plan"}


def _shape(doc: dict[str, Any]) -> str | None:
    """Where a plan document departs from schemas/plan.schema.json (the first place found), or None."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(_plan_schema()).iter_errors(doc))
    if error is None:
        return None
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{where}: {error.message[:160]}"


def apps_of(doc: dict[str, Any]) -> tuple[str, ...]:
    """The apps a saved plan covers."""
    return tuple(sorted({r["app"] for e in doc["environments"] for r in e.get("releases", [])}))


def _index(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["name"], r["app"]): r for e in doc["environments"] for r in e.get("releases", [])}


def _changes(release: dict[str, Any]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {
        (c["apiVersion"], c["kind"], c.get("namespace") or "", c["name"]): c
        for c in release.get("changes", [])
        if not c.get("hook")
    }


def moved(saved: dict[str, Any], now: Plan) -> list[str]:
    """Everything that differs between the saved plan and the plan computed now."""
    out: list[str] = []
    current = now.to_dict()
    if saved["revision"] != current["revision"]:
        out.append(f"the Git revision moved: the plan was made at {saved['revision']}, now it is {current['revision']}")
    old_envs = {e["name"]: e for e in saved["environments"]}
    for e in current["environments"]:
        before = old_envs.get(e["name"])
        if before is not None and before.get("context") != e.get("context"):
            out.append(
                f"{e['name']}: the kube context moved: planned against {before.get('context')}, now {e.get('context')}"
            )
    old, new = _index(saved), _index(current)
    for key in sorted(set(old) | set(new)):
        env, app = key
        if key not in new:
            out.append(f"{env}/{app} is no longer defined")
            continue
        if key not in old:
            out.append(f"{env}/{app} is new since the plan")
            continue
        a, b = old[key], new[key]
        if (a.get("namespace"), a.get("release")) != (b.get("namespace"), b.get("release")):
            out.append(
                f"{env}/{app}: planned for release {a.get('release')} in {a.get('namespace')}, "
                f"now {b.get('release')} in {b.get('namespace')}"
            )
        for field, what in (
            ("chartDigest", "the chart pulled (a version range resolved anew, or the package changed)"),
            ("artifactDigest", "the release artifact (chart or app-wide values)"),
            ("valuesDigest", "the values"),
            ("manifestDigest", "the rendered manifests"),
        ):
            if a.get(field) != b.get(field):
                out.append(f"{env}/{app}: {what} changed since the plan")
        ca, cb = _changes(a), _changes(b)
        for ident in sorted(set(ca) | set(cb)):
            x, y = ca.get(ident), cb.get(ident)
            name = f"{ident[1]} {ident[2] + '/' if ident[2] else ''}{ident[3]}"
            if x is None or y is None:
                out.append(f"{env}/{app}: {name} {'appeared in' if x is None else 'disappeared from'} the plan")
            elif x.get("resourceVersion") != y.get("resourceVersion"):
                out.append(
                    f"{env}/{app}: live {name} changed since the plan "
                    f"(resourceVersion {x.get('resourceVersion')} → {y.get('resourceVersion')})"
                )
            elif (x["action"], x.get("fields")) != (y["action"], y.get("fields")):
                out.append(f"{env}/{app}: the change to {name} is no longer the one planned")
    return out


def verify(saved: dict[str, Any], now: Plan) -> None:
    """Refuse (exit 3) when the world moved since the plan was saved."""
    diffs = moved(saved, now)
    if diffs:
        raise GateBlocked("the saved plan is stale, nothing was applied:\n  " + "\n  ".join(diffs))
