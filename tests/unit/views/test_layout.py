"""Unit tests of promote.views.layout: the width, column fitting, truncation, tty versus pipe."""

from __future__ import annotations

import io

import pytest

from promote.views.layout import (
    Column,
    Layout,
    fit,
    is_tty,
    table,
    terminal_width,
    truncate,
    truncate_middle,
    wrap,
)

COLUMNS = [
    Column("NAME"),
    Column("GROUP", drop=2),
    Column("HOOK", drop=1),
    Column("KIND", min=4),
    Column("MESSAGE"),
]
ROW = ["python-app-prod", "coordination.k8s.io", "PreSync", "Deployment", "waiting for 3 replicas to be available"]


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_width_is_columns_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "132")
    assert terminal_width(io.StringIO()) == 132


@pytest.mark.parametrize("value", ["", "abc", "0"])
def test_width_is_80_in_a_pipe_without_columns(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("COLUMNS", value)
    assert terminal_width(io.StringIO()) == 80
    assert terminal_width(None) == 80


def test_a_terminal_without_a_size_is_80_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert (terminal_width(FakeTty()), is_tty(FakeTty()), is_tty(io.StringIO())) == (80, True, False)


def test_truncate_ends_with_an_ellipsis() -> None:
    assert [truncate("abcdef", n) for n in (6, 5, 1, 0)] == ["abcdef", "abcd…", "…", ""]


def test_truncate_middle_keeps_both_ends() -> None:
    assert truncate_middle("python-app-prod-post-sync", 16) == "python-a…st-sync"
    assert truncate_middle("short", 16) == "short"


def test_wide_characters_take_two_columns() -> None:
    assert truncate("日本語です", 5) == "日本…"


def test_a_table_that_fits_keeps_every_column() -> None:
    lines = table(COLUMNS, [ROW], Layout(width=200))

    assert lines == [
        "NAME             GROUP                HOOK     KIND        MESSAGE",
        "python-app-prod  coordination.k8s.io  PreSync  Deployment  waiting for 3 replicas to be available",
    ]


def test_columns_are_dropped_highest_drop_first_then_shrunk() -> None:
    natural = [15, 19, 7, 10, 38]

    assert fit(COLUMNS, natural, Layout(width=75)).indexes == (0, 1, 2, 3, 4)
    assert fit(COLUMNS, natural, Layout(width=74)).indexes == (0, 2, 3, 4)
    assert fit(COLUMNS, natural, Layout(width=53)).indexes == (0, 3, 4)
    # Nothing left to drop: KIND is cut as far as needed, to 5, never below its minimum of 4.
    assert fit(COLUMNS, natural, Layout(width=40)).widths == (15, 5, None)
    assert fit(COLUMNS, natural, Layout(width=30)).widths == (15, 4, None)


def test_on_a_terminal_the_last_column_is_cut_at_the_edge() -> None:
    lines = table(COLUMNS, [ROW], Layout(width=60, tty=True))

    assert lines[1] == "python-app-prod  PreSync  Deployment  waiting for 3 replica…"
    assert max(len(line) for line in lines) == 60


def test_in_a_pipe_the_last_column_stays_whole() -> None:
    lines = table(COLUMNS, [ROW], Layout(width=60, tty=False))

    assert lines[1] == "python-app-prod  PreSync  Deployment  waiting for 3 replicas to be available"


def test_wide_shows_wide_only_columns_and_cuts_nothing() -> None:
    columns = [Column("A"), Column("B", wide=True, drop=1), Column("C")]
    rows = [["a" * 50, "b" * 50, "c" * 50]]

    assert table(columns, rows, Layout(width=80))[1] == "a" * 50 + "  " + "c" * 50
    assert table(columns, rows, Layout(width=80, wide=True))[1] == "  ".join(["a" * 50, "b" * 50, "c" * 50])


def test_a_wrapping_last_column_continues_under_itself_on_a_terminal() -> None:
    columns = [Column("CHECK"), Column("REASON", wrap=True)]
    rows = [["soak", "default has run artifact 1f2e3d4c for 5m48s; soak 10m: 4m12s left"]]

    assert table(columns, rows, Layout(width=40, tty=True)) == [
        "CHECK  REASON",
        "soak   default has run artifact 1f2e3d4c",
        "       for 5m48s; soak 10m: 4m12s left",
    ]


def test_right_aligned_columns_and_indent() -> None:
    columns = [Column("APP"), Column("REV", align=">"), Column("MESSAGE")]

    assert table(columns, [["web", "12", "ok"], ["api", "3", ""]], Layout(), indent=2) == [
        "  APP  REV  MESSAGE",
        "  web   12  ok",
        "  api    3",
    ]


def test_wrap_indents_continuation_lines() -> None:
    text = "prod/python-app: held by the gate: default has run artifact 1f2e3d4c for 2m"

    assert wrap(text, Layout(width=40), indent=2) == [
        "  prod/python-app: held by the gate:",
        "      default has run artifact 1f2e3d4c",
        "      for 2m",
    ]
    assert wrap(text, Layout(width=40, wide=True)) == [text]
