"""Placing a key or value of a YAML (or JSON) text on its line and column, as errors print it."""

from __future__ import annotations

import pytest

from promote import yamlio

TEXT = """\
app: web
values:
  replicaCount: 1
  ports: [80, 443]
  base: &base {tag: v1}
environments:
  - name: prod
    namespce: live
    values:
      <<: *base
      extra: true
"""


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        (["app"], False, (1, 6)),
        (["values", "replicaCount"], False, (3, 17)),
        (["values", "replicaCount"], True, (3, 3)),
        (["values", "ports", 1], False, (4, 15)),
        (["environments", 0, "namespce"], True, (8, 5)),
        (["environments", 0, "values"], False, (9, 5)),  # a block map: its key's line, not the next
        (["environments", 0, "values", "tag"], False, (5, 21)),  # through a `<<` merge, where it is written
        ([], False, (1, 1)),
    ],
)
def test_position(path: list[str | int], key: bool, expected: tuple[int, int]) -> None:
    assert yamlio.position(TEXT, path, key=key) == expected


@pytest.mark.parametrize("path", [["nope"], ["values", "ports", 5], ["app", "deeper"], ["environments", "x"]])
def test_nothing_there_is_no_position(path: list[str | int]) -> None:
    assert yamlio.position(TEXT, path) is None


def test_json_and_broken_text() -> None:
    assert yamlio.position('{\n  "a": {"b": 3}\n}\n', ["a", "b"]) == (2, 14)
    assert yamlio.position("a: [\n", ["a"]) is None
    assert yamlio.where("f.yaml", "a: [\n", ["a"]) == "f.yaml"
    assert yamlio.where("f.yaml", TEXT, ["app"]) == "f.yaml:1:6"
