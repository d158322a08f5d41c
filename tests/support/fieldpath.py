"""Field paths as plans print them (`spec.template.spec.containers[name=app].ports[0]`): parsed, read and
written on plain objects, so a test can replay a plan's field changes on what was live before."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

_STEP = re.compile(r'\.([A-Za-z_$][\w$-]*)|\[("(?:[^"\\]|\\.)*")\]|\[([^\]=]+)=([^\]]*)\]|\[(\d+)\]')


def parse_path(path: str) -> list[Any]:
    """Steps of a plan field path such as `spec.template.spec.containers[name=app].ports[0]`.

    A step is a map key (str), a list index (int), or ("key", field, value) for a keyed list item.
    """
    text = path if path.startswith(("[", ".")) else "." + path
    steps: list[Any] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        assert m, f"cannot parse field path {path!r} at {text[pos:]!r}"
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(json.loads(m.group(2)))
        elif m.group(3) is not None:
            steps.append(("key", m.group(3), m.group(4)))
        else:
            steps.append(int(m.group(5)))
        pos = m.end()
    return steps


def _child(cur: Any, step: Any) -> tuple[Any, Any]:
    """(container, accessor) for one step, or (None, None) when the path does not exist."""
    if isinstance(step, tuple):
        if not isinstance(cur, list):
            return None, None
        _, fld, val = step
        for i, item in enumerate(cur):
            if isinstance(item, dict) and str(item.get(fld)) == val:
                return cur, i
        return None, None
    if isinstance(step, int):
        return (cur, step) if isinstance(cur, list) and step < len(cur) else (None, None)
    return (cur, step) if isinstance(cur, dict) and step in cur else (None, None)


def resolve(obj: Any, path: str) -> Any:
    """The value at a plan field path, or None when absent (as plans report absence)."""
    cur = obj
    for step in parse_path(path):
        container, at = _child(cur, step)
        if container is None:
            return None
        cur = container[at]
    return cur


def apply_field(obj: Any, path: str, value: Any) -> None:
    """Set (or with None remove) the value at a plan field path, creating maps on the way."""
    steps = parse_path(path)
    cur = obj
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        container, at = _child(cur, step)
        if container is None:
            if value is None:
                return
            if isinstance(step, tuple):
                _, fld, val = step
                cur.append({fld: int(val) if val.isdigit() else val})
                container, at = cur, len(cur) - 1
            else:
                cur[step] = {}
                container, at = cur, step
        if last:
            if value is None:
                del container[at]
            else:
                container[at] = copy.deepcopy(value)
            return
        cur = container[at]
