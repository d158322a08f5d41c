"""Reading the files a user hands promote: strict UTF-8, bounded, and YAML that JSON can carry.

Positions are not kept while loading (that would slow every load for the rare error): `position`
parses a text again, only when an error needs the line and column of a key or value.

PyYAML silently keeps the last of two duplicate keys; in a values or definitions file that hides a
mistake, so the loader here rejects them. It also refuses what helm would not read the same way (keys
that are lists or maps, `!!binary`, `!!set`...) by name instead of failing later with a TypeError, and
documents whose aliases expand past a bound (a "billion laughs" file) before anything walks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from promote.errors import ConfigError

MAX_FILE_BYTES = 16 * 1024 * 1024  # a definitions, values or schema file; charts render far below it
MAX_NODES = 1_000_000  # values a document may expand to, aliases counted each time they are used
_SCALAR_KEYS = (str, int, float, bool, type(None))


def decode(data: bytes, *, name: str) -> str:
    """A file's text: UTF-8 (a BOM allowed), or an error naming the file and the first bad byte."""
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{name}: {len(data)} bytes is more than the {MAX_FILE_BYTES} a file may have")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{name}: not UTF-8 text (byte {e.start} is 0x{data[e.start]:02x}); save it as UTF-8"
        ) from None


def read_text(path: Path, *, name: str | None = None) -> str:
    """A local file's text, as `decode` checks it; OSError propagates for the caller to word."""
    with path.open("rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    return decode(data, name=name or str(path))


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser (fast) with a constructor that rejects duplicate and non-scalar keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *defaults`: its keys may be overridden here, which is not a duplicate
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, _SCALAR_KEYS):
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"a key must be a string or number, not a {type(key).__name__}",
                key_node.start_mark,
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = 1
    loader.flatten_mapping(node)  # YAML merge keys, which helm reads too
    mapping: dict[Any, Any] = loader.construct_mapping(node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _refuse(loader: _StrictLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"the tag {node.tag} has no JSON form (helm would not read it either)", node.start_mark
    )


for _tag in ("binary", "set", "omap", "pairs"):
    _StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse)
# A date stays the text it was written as, as helm (YAML read through JSON) keeps it.
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))
# A plain `=` is the text "=", as helm reads it (PyYAML would look for YAML 1.1's value tag and fail).
_StrictLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _bounded(doc: Any, name: str) -> Any:
    """The document, unless it expands past MAX_NODES values (aliases count each time they are used)."""
    budget = MAX_NODES
    stack = [doc]
    while stack:
        cur = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError(f"{name}: expands to more than {MAX_NODES} values (YAML aliases used over and over?)")
        if isinstance(cur, dict):
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return doc


def load(text: str, *, name: str) -> Any:
    """Parse one YAML document; an error names the file and line."""
    try:
        return _bounded(yaml.load(text, Loader=_StrictLoader), name)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from e


def load_all(text: str, *, name: str) -> list[Any]:
    """Parse a multi-document YAML stream, skipping empty documents."""
    try:
        return [_bounded(d, name) for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise ConfigError(f"{where}: YAML syntax error: {getattr(e, 'problem', None) or e}") from e


def position(text: str, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int] | None:
    """1-based (line, column) of the value at `path` in a YAML (or JSON) text, or of its key with `key`.

    A value that is a block map or list is placed at its key, since it starts on the line after it.
    None when the text does not parse or has nothing at `path`: a position is a help, never an error.
    """
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    mark = node.start_mark
    for step in path:
        if isinstance(node, yaml.MappingNode):
            entry = _entry(node, step)
            if entry is None:
                return None
            mark, node = entry[0].start_mark, entry[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
            mark = node.start_mark
        else:
            return None
    # A block map or list starts on the line after its key: the key is where a reader looks for it.
    block = isinstance(node, yaml.CollectionNode) and not node.flow_style and path
    if not key and not block:
        mark = node.start_mark
    return mark.line + 1, mark.column + 1


def _entry(node: yaml.MappingNode, step: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """The (key, value) nodes of `step` in a mapping, looking into `<<` merges after its own keys."""
    merged: list[yaml.Node] = []
    for k, v in node.value:
        if k.tag == "tag:yaml.org,2002:merge":
            merged.extend(v.value if isinstance(v, yaml.SequenceNode) else [v])
        elif isinstance(k, yaml.ScalarNode) and k.value == str(step):
            return k, v
    for m in merged:
        found = _entry(m, step) if isinstance(m, yaml.MappingNode) else None
        if found is not None:
            return found
    return None


def where(name: str, text: str | None, path: Sequence[str | int], *, key: bool = False) -> str:
    """`name:line:column` of `path` in `text`, or `name` alone when it cannot be placed."""
    at = position(text, path, key=key) if text is not None else None
    return f"{name}:{at[0]}:{at[1]}" if at else name
