"""Values: merging in helm's precedence, helm-style `--set` parsing, and JSON-schema validation.

Precedence, lowest first: chart values.yaml < valuesFiles < app values < environment values < command
line. Merging follows helm's coalescing: maps merge key by key, anything else replaces, and an explicit
null removes the key. Validation reports every violation of every schema, and never shows a value that a
schema marks `writeOnly` (JSON schema's word for sensitive). Each violation names where the value was set:
the highest layer holding it (a file and its line, or `--set`), not the app's definition file.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promote import yamlio
from promote.errors import ConfigError, did_you_mean

WRITE_ONLY_MARK = "<writeOnly>"

MASK = "(sensitive)"


def merge(*layers: Mapping[str, Any] | None, keep_nulls: bool = False) -> dict[str, Any]:
    """Merge values layers, later ones winning, the way helm coalesces them.

    `keep_nulls` keeps explicit nulls, for values handed to helm: there a null must still reach helm so
    that it deletes the chart's default.
    """
    out: dict[str, Any] = {}
    for layer in layers:
        if layer:
            out = _merge_two(out, layer)
    return out if keep_nulls else _drop_nulls(out)


def _merge_two(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge_two(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _drop_nulls(values: dict[str, Any]) -> dict[str, Any]:
    # helm treats `key: null` in a higher layer as "delete the default".
    return {k: (_drop_nulls(v) if isinstance(v, dict) else v) for k, v in values.items() if v is not None}


def digest(values: Mapping[str, Any]) -> str:
    """A stable content digest of a values document."""
    import hashlib

    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- --set -----------------------------------------------------------------------------------------

_INT = re.compile(r"^-?(0|[1-9][0-9]*)$")


MAX_INDEX = 65536  # as helm's strvals: a list index above it is refused before any list is grown


def parse_set(assignments: Iterable[str], *, as_string: bool = False) -> dict[str, Any]:
    """Parse helm-style `--set a.b=c,d[0]=e` (or `--set-string`) into a values document.

    An error names the keys, never a value: `--set db.password=...` must not land in a CI log.
    """
    out: dict[str, Any] = {}
    for assignment in assignments:
        if not assignment:
            continue
        shown = f"{'--set-string' if as_string else '--set'} {_shown(assignment)}"
        parts = _split_unescaped(assignment, ",", keep_empty=True)
        if _unclosed(assignment):
            raise ConfigError(f"cannot parse {shown}: a '{{' is never closed (as helm, a list must end with '}}')")
        for part in parts:
            # helm's strvals: `\=` is an `=` of the key, so the first unescaped `=` ends it.
            split = re.split(r"(?<!\\)=", part, maxsplit=1)
            if len(split) != 2:
                raise ConfigError(f"cannot parse {shown}: an item is not key=value (not shown: it may be a secret)")
            key, raw = split
            if not key:
                raise ConfigError(f"cannot parse {shown}: empty key")
            _assign(out, _split_key(key.replace("\\=", "="), shown), raw if as_string else _typed(raw))
    return out


def _unclosed(text: str) -> bool:
    """True when a `{` outside escapes is never closed: helm refuses `a={b`, which would otherwise be text."""
    depth, esc = 0, False
    for ch in text:
        if esc:
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
    return depth > 0


def _shown(assignment: str) -> str:
    """An assignment as errors may show it: its keys, each value replaced by `...`."""
    parts = []
    for part in _split_unescaped(assignment, ","):
        parts.append(part.split("=", 1)[0] + "=..." if "=" in part else "?")
    return repr(",".join(parts))


def _split_unescaped(text: str, sep: str, *, keep_empty: bool = False) -> list[str]:
    parts, cur, esc, depth = [], "", False, 0
    for ch in text:
        if esc:
            cur += ch if ch == sep else "\\" + ch
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == "{":
            depth += 1
            cur += ch
        elif ch == "}":
            depth -= 1
            cur += ch
        elif ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    # helm refuses an empty item (`a=1,,b=2`); keys are shown without them.
    return parts if keep_empty else [p for p in parts if p != ""]


def _split_key(key: str, shown: str) -> list[str | int]:
    path: list[str | int] = []
    for segment in re.split(r"(?<!\\)\.", key):
        segment = segment.replace("\\.", ".")
        m = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", segment)
        # An empty segment (`a..b`, `a.`) is refused, as helm does ("key map has no value").
        if not m or (not m.group(1) and (not path or not m.group(2))):
            raise ConfigError(f"cannot parse {shown}: bad key segment {segment!r}")
        if m.group(1):
            path.append(m.group(1))
        for index in re.findall(r"\[(\d+)\]", m.group(2)):
            if len(index) > 6 or int(index) > MAX_INDEX:
                raise ConfigError(f"cannot parse {shown}: list index [{index}] is above {MAX_INDEX}")
            path.append(int(index))
    return path


def _typed(raw: str) -> Any:
    # helm's strvals compares these case-insensitively.
    if raw.lower() == "true":
        return True
    if raw.lower() == "false":
        return False
    if raw.lower() == "null":
        return None
    if _INT.match(raw):
        return int(raw)
    if raw.startswith("{") and raw.endswith("}"):
        return [_typed(x) for x in _split_unescaped(raw[1:-1], ",")]
    return raw


def _assign(doc: Any, path: list[str | int], value: Any) -> None:
    cur = doc
    for i, step in enumerate(path):
        last = i == len(path) - 1
        nxt: Any = value if last else ([] if isinstance(path[i + 1], int) else {})
        if isinstance(step, int):
            if not isinstance(cur, list):
                raise ConfigError(f"cannot parse --set: index [{step}] applied to a non-list")
            while len(cur) <= step:
                cur.append(None)
            if last or cur[step] is None:
                cur[step] = nxt
            cur = cur[step]
        else:
            if not isinstance(cur, dict):
                raise ConfigError(f"cannot parse --set: key {step!r} applied to a non-map")
            if last or not isinstance(cur.get(step), dict | list):
                cur[step] = nxt
            cur = cur[step]


# --- where a value was set ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One layer of values and where it is written: a file (with the values' path inside it), or an option."""

    origin: str  # a file relative to the repository, a -f file as given, or --set / --set-string
    values: Mapping[str, Any]
    at: tuple[str | int, ...] = ()  # where the values sit inside the file, e.g. ("environments", 1, "values")
    read: Callable[[], str] | None = None  # the file's text, read again only to place a violation on its line


def _holds(values: Any, path: tuple[Any, ...]) -> bool:
    for step in path:
        in_map = isinstance(values, Mapping) and step in values
        if not in_map and not (isinstance(values, list) and isinstance(step, int) and 0 <= step < len(values)):
            return False
        values = values[step]
    return True


def origin(layers: Sequence[Layer], path: tuple[Any, ...], *, key: bool = False) -> tuple[str, int | None, int | None]:
    """(file or option, line, column) that set the value at `path`: the highest layer holding it, else its parent.

    ("", None, None) when no layer holds any part of it (a key the schema requires and nobody set).
    """
    for depth in range(len(path), 0, -1):
        for layer in reversed(layers):
            if _holds(layer.values, path[:depth]):
                text = layer.read() if layer.read is not None else None
                here = key and depth == len(path)
                pos = yamlio.position(text, [*layer.at, *path[:depth]], key=here) if text is not None else None
                return layer.origin, *(pos or (None, None))
    return "", None, None


# --- validation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One schema violation, safe to print: sensitive values are already masked."""

    file: str  # where the value was set: a file, or the option (--set) that set it
    app: str
    environment: str
    schema: str
    path: str
    expected: str
    value: Any
    line: int | None = None
    column: int | None = None

    @property
    def location(self) -> str:
        """`file:line:column`, as compilers print it, or as much of it as is known."""
        return ":".join(str(p) for p in (self.file, self.line, self.column) if p is not None)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "app": self.app,
            "environment": self.environment,
            "schema": self.schema,
            "path": self.path,
            "expected": self.expected,
            "value": self.value,
        }

    def __str__(self) -> str:
        return (
            f"{self.location}: app {self.app}, environment {self.environment}: {self.path}: "
            f"expected {self.expected}, got {json.dumps(self.value)} (schema {self.schema})"
        )


def json_path(parts: Iterable[Any]) -> str:
    """`$.a.b[0]` style path, the form users paste into yq and jq."""
    out = "$"
    for p in parts:
        out += (
            f"[{p}]"
            if isinstance(p, int)
            else (f".{p}" if re.fullmatch(r"[A-Za-z_][\w-]*", str(p)) else f"[{json.dumps(p)}]")
        )
    return out


def sensitive_paths(schema: Mapping[str, Any], instance: Any) -> set[tuple[Any, ...]]:
    """Paths of `instance` whose schema says writeOnly, so they can be masked wherever shown."""
    found: set[tuple[Any, ...]] = set()
    _walk_sensitive(schema, schema, instance, (), found, 0)
    return found


def _at(instance: Any, path: tuple[Any, ...]) -> Any:
    """What sits at a path (None when nothing does)."""
    node = instance
    for step in path:
        if (isinstance(node, dict) and step in node) or (
            isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        ):
            node = node[step]
        else:
            return None
    return node


def masked_at(instance: Any, paths: frozenset[tuple[Any, ...]] | set[tuple[Any, ...]]) -> Any:
    """A copy with whatever sits at these paths replaced by a marker: digests over it say nothing about
    those values."""
    if not paths:
        return instance
    if () in paths:
        return WRITE_ONLY_MARK
    out = copy.deepcopy(instance)
    for path in paths:
        parent = _at(out, path[:-1])
        if _at(parent, path[-1:]) is not None:
            parent[path[-1]] = WRITE_ONLY_MARK
    return out


def values_at(instance: Any, paths: set[tuple[Any, ...]]) -> frozenset[str]:
    """The scalar values found at these paths (and below them), as text: what must never be shown."""
    out: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)
        elif node is not None and not isinstance(node, bool):
            out.add(str(node))

    for path in paths:
        collect(_at(instance, path))
    return frozenset(v for v in out if v)


def _resolve(root: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return target if isinstance(target, Mapping) else {}
    return node


def _walk_sensitive(
    root: Mapping[str, Any], node: Any, instance: Any, path: tuple[Any, ...], found: set[tuple[Any, ...]], depth: int
) -> None:
    if not isinstance(node, Mapping) or depth > 50:
        return
    node = _resolve(root, node)
    if node.get("writeOnly") is True:
        found.add(path)
        return
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key, []) or []:
            _walk_sensitive(root, sub, instance, path, found, depth + 1)
    for key in ("then", "else"):
        if key in node:
            _walk_sensitive(root, node[key], instance, path, found, depth + 1)
    if isinstance(instance, Mapping):
        props = node.get("properties", {}) or {}
        patterns = node.get("patternProperties", {}) or {}
        extra = node.get("additionalProperties")
        for k, v in instance.items():
            matched = False
            if k in props:
                _walk_sensitive(root, props[k], v, (*path, k), found, depth + 1)
                matched = True
            for pat, sub in patterns.items():
                if re.search(pat, str(k)):
                    _walk_sensitive(root, sub, v, (*path, k), found, depth + 1)
                    matched = True
            if not matched and isinstance(extra, Mapping):
                _walk_sensitive(root, extra, v, (*path, k), found, depth + 1)
    elif isinstance(instance, list):
        items = node.get("items")
        if isinstance(items, Mapping):
            for i, v in enumerate(instance):
                _walk_sensitive(root, items, v, (*path, i), found, depth + 1)


def mask(instance: Any, paths: set[tuple[Any, ...]], here: tuple[Any, ...] = ()) -> Any:
    """A copy of `instance` with every sensitive path replaced by a mask."""
    if here in paths:
        return MASK
    if isinstance(instance, Mapping):
        return {k: mask(v, paths, (*here, k)) for k, v in instance.items()}
    if isinstance(instance, list):
        return [mask(v, paths, (*here, i)) for i, v in enumerate(instance)]
    return instance


def _expected(error: Any) -> str:
    v, arg = error.validator, error.validator_value
    texts = {
        "minimum": f">= {arg}",
        "maximum": f"<= {arg}",
        "exclusiveMinimum": f"> {arg}",
        "exclusiveMaximum": f"< {arg}",
        "type": f"type {arg}" if isinstance(arg, str) else f"one of types {arg}",
        "enum": f"one of {json.dumps(arg)}",
        "const": f"exactly {json.dumps(arg)}",
        "pattern": f"a string matching {arg}",
        "minLength": f"at least {arg} characters",
        "maxLength": f"at most {arg} characters",
        "minItems": f"at least {arg} items",
        "maxItems": f"at most {arg} items",
        "multipleOf": f"a multiple of {arg}",
        "format": f"format {arg}",
    }
    if v in texts:
        return texts[v]
    if v == "not" and isinstance(arg, Mapping):
        if "const" in arg:
            return f"anything but {json.dumps(arg['const'])}"
        if "enum" in arg:
            return f"none of {json.dumps(arg['enum'])}"
        return f"not to match {json.dumps(arg)}"
    if v in ("required", "additionalProperties", "dependentRequired", "unevaluatedProperties"):
        # jsonschema's message for these names keys only, never values.
        return str(error.message)
    return f"to satisfy {v}"


def _errors(validator: Any, values: Mapping[str, Any], schema_name: str) -> list[Any]:
    """Every error of a validator, or a ConfigError for a `$ref` it cannot resolve (a missing definition or
    file, or a URL: schemas are never fetched)."""
    from referencing.exceptions import Unresolvable

    try:
        return list(validator.iter_errors(values))
    except Unresolvable as e:
        raise ConfigError(
            f"{schema_name}: cannot resolve $ref {getattr(e, 'ref', '?')!r}: only references inside the schema resolve"
        ) from None


def validate(
    values: Mapping[str, Any],
    schema: Mapping[str, Any],
    *,
    file: str,
    app: str,
    environment: str,
    schema_name: str,
    hide: set[tuple[Any, ...]] | None = None,
    layers: Sequence[Layer] = (),
) -> list[Violation]:
    """Every violation of `schema` by `values`, with writeOnly values (of this or `hide`) masked.

    Each is attributed to the layer that set the value (`layers`, lowest first), else to `file`.
    """
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError

    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as e:
        raise ConfigError(f"{schema_name} is not a valid JSON schema at {json_path(e.path)}: {e.message}") from e
    secret = sensitive_paths(schema, values) | (hide or set())
    out: list[Violation] = []
    for error in sorted(_errors(cls(schema), values, schema_name), key=lambda e: list(map(str, e.absolute_path))):
        # Each error is reported as itself. A oneOf matching several branches has no sub-errors (context)
        # and used to be dropped here; listing every branch's failure of an anyOf would mislead instead.
        for path, instance, expected, key in _problems(error):
            shown = MASK if any(path[: len(p)] == p for p in secret) else _brief(mask(instance, secret, path))
            source, line, column = origin(layers, _deleted(error, layers) or path, key=key)
            out.append(
                Violation(
                    file=source or file,
                    app=app,
                    environment=environment,
                    schema=schema_name,
                    path=json_path(path),
                    expected=expected,
                    value=shown,
                    line=line,
                    column=column,
                )
            )
    return out


def _brief(value: Any) -> Any:
    """A violation's value as shown: a scalar as it is, a map or list by its keys or length only. The
    whole document of a `required` error carried every value in it, and a value rendered into a Secret is
    marked by no schema (nor, when the schema that marks it writeOnly is itself the broken input)."""
    if isinstance(value, Mapping):
        keys = list(value)
        return "{" + ", ".join(map(str, keys[:6])) + (", ..." if len(keys) > 6 else "") + "}"
    if isinstance(value, list):
        return f"[{len(value)} items]"
    return value


def _deleted(error: Any, layers: Sequence[Layer]) -> tuple[Any, ...] | None:
    """For a required key that a layer deleted with `key: null`, where that null is written: the
    violation is the null's doing, not the definition's."""
    if error.validator != "required" or not isinstance(error.instance, Mapping):
        return None
    path = tuple(error.absolute_path)
    for k in error.validator_value or ():
        if k not in error.instance:
            for layer in reversed(layers):
                if _holds(layer.values, (*path, k)):
                    return (*path, k) if _at(layer.values, (*path, k)) is None else None
    return None


def _problems(error: Any) -> list[tuple[tuple[Any, ...], Any, str, bool]]:
    """(path, value, expected, whether to point at the key) of each problem one schema error stands for.

    An unknown key (additionalProperties: false) is one problem per key, at that key, with the key the
    schema knows that is closest to it.
    """
    path = tuple(error.absolute_path)
    props = error.schema.get("properties") if isinstance(error.schema, Mapping) else None
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping) and isinstance(props, Mapping):
        patterns = error.schema.get("patternProperties") or {}
        extras = [k for k in error.instance if k not in props and not any(re.search(p, str(k)) for p in patterns)]
        if extras:
            return [
                ((*path, k), error.instance[k], f"no unknown key{did_you_mean(str(k), map(str, props))}", True)
                for k in extras
            ]
    return [(path, error.instance, _expected(error), False)]
