"""Layout: how wide the output may be, and tables and lines fitted to that width.

Pure functions of text and a `Layout` (width, terminal or pipe, `-o wide`), so the rules are unit-tested
without a terminal. The rules, as kubectl and argocd have them where they have one:

- the width is `COLUMNS`, else the terminal's, else 80 (a pipe, a CI log);
- a table's last column is free text (a message, a reason): on a terminal it is cut with `…` at the
  edge, or wrapped under itself when the column says so; in a pipe it stays whole, for grep and logs;
- the other columns keep their width while they fit; when they don't, the least useful are dropped
  first (each column says how soon), then the shrinkable ones are cut to their minimum;
- `-o wide` shows every column, the wide-only ones included, and cuts nothing.
"""

from __future__ import annotations

import os
import textwrap
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TextIO

DEFAULT_WIDTH = 80
GAP = "  "
ELLIPSIS = "…"
FREE_MIN = 16  # the last column keeps at least this much room before other columns are dropped


@dataclass(frozen=True)
class Layout:
    """Where output goes: its width, whether a person reads it on a terminal, and `-o wide`."""

    width: int = DEFAULT_WIDTH
    tty: bool = False
    wide: bool = False


def terminal_width(stream: TextIO | None) -> int:
    """`COLUMNS` if set, else the width of the terminal `stream` is, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if stream is not None and is_tty(stream):
        try:
            return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
        except (OSError, ValueError):
            pass
    return DEFAULT_WIDTH


def is_tty(stream: TextIO | None) -> bool:
    """Whether `stream` is a terminal (a test runner's captured stream is not)."""
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed, or a stream without a file behind it
        return False


def layout_for(stream: TextIO | None, *, wide: bool = False) -> Layout:
    """The layout of output written to `stream`."""
    return Layout(width=terminal_width(stream), tty=is_tty(stream), wide=wide)


def text_width(text: str) -> int:
    """Columns `text` takes on a terminal: East Asian wide characters take two."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _take(chars: str, width: int) -> str:
    """The longest start of `chars` that takes at most `width` columns."""
    out, used = "", 0
    for c in chars:
        used += text_width(c)
        if used > width:
            break
        out += c
    return out


def truncate(text: str, width: int) -> str:
    """`text` cut to `width` columns, ending in `…` when cut."""
    if text_width(text) <= width:
        return text
    return _take(text, width - 1) + ELLIPSIS if width > 0 else ""


def truncate_middle(text: str, width: int) -> str:
    """`text` cut to `width` columns in its middle (`python-a…st-sync`): a name's end often says most."""
    if text_width(text) <= width:
        return text
    if width <= 2:
        return truncate(text, width)
    tail = (width - 1) // 2
    return _take(text, width - 1 - tail) + ELLIPSIS + _take(text[::-1], tail)[::-1]


def pad(text: str, width: int, align: str = "<") -> str:
    """`text` padded with spaces to `width` columns."""
    fill = " " * max(0, width - text_width(text))
    return fill + text if align == ">" else text + fill


@dataclass(frozen=True)
class Column:
    """One column of a table.

    `width`: a fixed width (a streamed table cannot measure rows it has not seen), else the widest cell.
    `drop`: 0 never dropped; otherwise the higher, the sooner it goes when the table does not fit.
    `min`: the narrowest a cell may be cut to (0: never cut). `wide`: shown only with `-o wide`.
    `middle`: cut in the middle, not at the end. `wrap`: as the last column, wrapped on a terminal
    instead of cut. `style`: colours a cell's text (after layout, so colour codes take no width).
    """

    header: str
    width: int | None = None
    drop: int = 0
    min: int = 0
    wide: bool = False
    align: str = "<"
    middle: bool = False
    wrap: bool = False
    style: Callable[[str], str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Fitted:
    """The columns a table shows, with their widths; the last one's width is None when it is unbounded."""

    indexes: tuple[int, ...]
    widths: tuple[int | None, ...]


def fit(columns: Sequence[Column], natural: Sequence[int], layout: Layout, indent: int = 0) -> Fitted:
    """Which columns to show and how wide, for content whose widest cells are `natural`."""
    shown = [i for i, c in enumerate(columns) if layout.wide or not c.wide]
    widths = {i: max(natural[i], text_width(columns[i].header)) for i in shown}
    if layout.wide:
        return Fitted(tuple(shown), tuple(widths[i] if i != shown[-1] else None for i in shown))
    room = layout.width - indent

    def used() -> int:
        last = shown[-1]
        free = min(widths[last], max(FREE_MIN, text_width(columns[last].header)))
        return sum(widths[i] for i in shown[:-1]) + free + len(GAP) * (len(shown) - 1)

    while used() > room:
        droppable = [i for i in shown[:-1] if columns[i].drop]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    while used() > room:
        shrinkable = [i for i in shown[:-1] if columns[i].min and widths[i] > columns[i].min]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: (widths[i] - columns[i].min, widths[i]))
        widths[widest] -= 1
    last = shown[-1]
    rest = room - sum(widths[i] for i in shown[:-1]) - len(GAP) * (len(shown) - 1)
    free: int | None = max(rest, text_width(columns[last].header), 1) if layout.tty else None
    return Fitted(tuple(shown), tuple([*(widths[i] for i in shown[:-1]), free]))


def _cell(column: Column, text: str, width: int | None) -> str:
    if width is None or text_width(text) <= width:
        return text
    return truncate_middle(text, width) if column.middle else truncate(text, width)


def _styled(column: Column, text: str, width: int | None, last: bool) -> str:
    shown = column.style(text) if column.style is not None and text else text
    if last or width is None:
        return shown
    fill = " " * max(0, width - text_width(text))
    return fill + shown if column.align == ">" else shown + fill


def row(columns: Sequence[Column], fitted: Fitted, cells: Sequence[str]) -> list[str]:
    """One row as lines: one, or more when its last column wraps on a terminal."""
    parts: list[str] = []
    for n, (i, width) in enumerate(zip(fitted.indexes, fitted.widths, strict=True)):
        column, last = columns[i], n == len(fitted.indexes) - 1
        text = cells[i]
        if last and column.wrap and width is not None:
            start = sum(w or 0 for w in fitted.widths[:-1]) + len(GAP) * n
            chunks = textwrap.wrap(text, max(width, 8), break_on_hyphens=False) or [""]
            parts.append(_styled(column, chunks[0], width, True))
            return [GAP.join(parts).rstrip(), *((" " * start + chunk).rstrip() for chunk in chunks[1:])]
        parts.append(_styled(column, _cell(column, text, width), width, last))
    return [GAP.join(parts).rstrip()]


def table(columns: Sequence[Column], rows: Sequence[Sequence[str]], layout: Layout, indent: int = 0) -> list[str]:
    """A table with its header, fitted to the layout; `indent` spaces before every line."""
    natural = [
        c.width if c.width is not None else max((text_width(r[i]) for r in rows), default=0)
        for i, c in enumerate(columns)
    ]
    fitted = fit(columns, natural, layout, indent)
    headers = [replace(c, style=None, middle=False, wrap=False) for c in columns]
    lines = row(headers, fitted, [c.header for c in columns])
    for r in rows:
        lines.extend(row(columns, fitted, r))
    return [" " * indent + line if line else line for line in lines]


def wrap(text: str, layout: Layout, indent: int = 0, hanging: int = 4) -> list[str]:
    """A line of prose wrapped to the width, continuation lines indented `hanging` more."""
    first, rest = " " * indent, " " * (indent + hanging)
    if layout.wide or text_width(first + text) <= layout.width:
        return [first + text]
    return textwrap.wrap(
        text,
        max(layout.width, 20),
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
        break_long_words=False,
    )
