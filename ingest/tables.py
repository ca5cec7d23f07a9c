"""Tables of figures on PDF pages, rebuilt as Markdown tables whose every cell has its column heading.

pypdf's plain text loses a statement table's columns: the headings ("Three Months
Ended / July 1, 2023 / June 25, 2022 ...") come out as lines far above rows of
bare numbers, and a 1.5B model then copies the figure of the wrong column.
pypdf's layout mode keeps each character's horizontal position, so columns can
be found again:

1. a *figure row* is a line whose last two or more cells (runs of text
   separated by two or more spaces) are numbers: "81,797", "$ 60,584", "(265)",
   "12.5%", "—";
2. consecutive figure rows, with label-only lines ("Net sales:") and short gaps
   between them, make a block; its columns are the right edges of the numbers
   (figures are right-aligned), taken from the rows with the most cells;
3. the lines right above the block whose text lies over the figure columns are
   its headings; each heading cell belongs to every column its span overlaps, so
   "Three Months Ended" spanning two columns heads both;
4. the block becomes a Markdown table: the first cell is the row label under
   its group labels ("Net sales: Products"; a label line without a colon heads
   the rows indented below it: "AWS: Operating income"), then one cell per column.

Worked example (layout text, positions kept)::

                        Three Months Ended        Nine Months Ended
                     July 1,2023  June 25,2022  July 1,2023  June 25,2022
    Total net sales       81,797        82,959      293,787       304,182

    -> | | Three Months Ended July 1, 2023 | Three Months Ended June 25, 2022 | Nine Months Ended July 1, 2023 | Nine Months Ended June 25, 2022 |
       | --- | --- | --- | --- | --- |
       | Total net sales | 81,797 | 82,959 | 293,787 | 304,182 |

``render_page`` returns the page's text with each such block replaced by its
table and every other line with its runs of spaces collapsed; None when the page
has no figure table (its plain text is used then). ``ingest.chunking`` keeps a
table's heading row with every part of it.

Deliberately not here: tables of words only (no numbers to align on), ruled
tables read from drawn lines, cells spanning rows, multi-column page layouts.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

MIN_ROWS = 3  # fewer figure rows than this is not a table worth rebuilding
MAX_BLANK_LINES = 4  # blank lines a table's rows may have between them (Microsoft's statements: 4 after a total)
_CELL = re.compile(r"\S+(?: \S+)*")  # a run of text with single spaces inside
_NUMBER = re.compile(r"^[$€£¥￥]?\(?[$€£¥￥]?\s?[-+−]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)\s?\)?\s?%?$|^[—–-]+$")
_CURRENCY = re.compile(r"^[$€£¥￥]$")
_YEAR = re.compile(r"^(?:19|20)\d\d$")


@dataclass(frozen=True)
class _Cell:
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class _Line:
    cells: tuple[_Cell, ...]
    figures: tuple[_Cell, ...]  # the trailing numeric cells (empty: not a figure row)
    indent: int

    @property
    def label(self) -> str:
        return " ".join(c.text for c in self.cells[: len(self.cells) - len(self.figures)])


def _cells(line: str) -> list[_Cell]:
    """Runs separated by 2+ spaces; a lone currency sign joins the number after it, a lone "%" or ")" the one before."""
    raw = [_Cell(m.group(0), m.start(), m.end()) for m in _CELL.finditer(line)]
    merged: list[_Cell] = []
    for cell in raw:
        if merged and _CURRENCY.match(merged[-1].text) and _NUMBER.match(cell.text):
            merged[-1] = _Cell(merged[-1].text + cell.text, merged[-1].start, cell.end)
        elif merged and cell.text in ("%", ")") and _NUMBER.match(merged[-1].text + cell.text):
            merged[-1] = _Cell(merged[-1].text + cell.text, merged[-1].start, cell.end)  # "36.7  %", "(174   )"
        else:
            merged.append(cell)
    return merged


def _parse(line: str) -> _Line:
    cells = _cells(line)
    trailing = 0
    for cell in reversed(cells):
        if not _NUMBER.match(cell.text):
            break
        trailing += 1
    figures = tuple(cells[len(cells) - trailing :]) if trailing >= 2 else ()
    if figures and all(_YEAR.match(c.text) for c in figures):
        figures = ()  # "2023   2022", "Three Months Ended September 30,   2022   2021": column headings, not figures
    return _Line(tuple(cells), figures, len(line) - len(line.lstrip()))


def _is_group_label(line: _Line) -> bool:
    return not line.figures and 0 < len(line.cells) <= 2 and line.label.endswith(":") and len(line.label) <= 80


def _blocks(lines: list[_Line]) -> list[tuple[int, int]]:
    """(first, last) line indexes of runs of figure rows, allowing label lines and short gaps."""
    blocks: list[tuple[int, int]] = []
    index = 0
    while index < len(lines):
        if not lines[index].figures:
            index += 1
            continue
        first = last = index
        rows = 1
        cursor = index + 1
        gap = 0
        figures_from = min(cell.start for cell in lines[index].figures)
        while cursor < len(lines):
            line = lines[cursor]
            if line.figures:
                last, rows, gap = cursor, rows + 1, 0
                figures_from = min(figures_from, line.figures[0].start)
            elif not line.cells:
                gap += 1
                if gap > MAX_BLANK_LINES:
                    break
            elif len(line.cells) <= 2 and (len(line.label) <= 80 or line.cells[-1].end < figures_from):
                # A group label ("Net sales:"), a short note, or a long row label wrapped onto a line of its own
                # ("Depreciation and amortization of property and equipment and capitalized content costs,
                # operating lease"): it ends before the figures do, where prose would run across them.
                gap = 0
            else:
                break
            cursor += 1
        # Group labels right above the first row ("Net sales:", "ASSETS:") belong to the table, not its headings.
        while first > 0 and _is_group_label(lines[first - 1]):
            first -= 1
        if rows >= MIN_ROWS:
            blocks.append((first, last))
        index = last + 1
    return blocks


def _columns(rows: list[_Line]) -> list[int]:
    """Right edges of the figure columns, from the rows with the most figures."""
    widest = max(len(r.figures) for r in rows)
    full = [r for r in rows if len(r.figures) == widest]
    return [int(statistics.median(r.figures[k].end for r in full)) for k in range(widest)]


def _nearest(edges: list[int], end: int) -> int:
    return min(range(len(edges)), key=lambda k: abs(edges[k] - end))


_PERIOD_WORDS = re.compile(r"ended|ending|months|weeks|year|quarter|as of|季度|年度|期末|期初|本期|上期", re.IGNORECASE)


def _columns_under(cell: _Cell, spans: list[tuple[int, int]], edges: list[int]) -> list[int]:
    """The columns a heading cell heads: the one whose right edge it ends at (headings are right-aligned like
    figures), else every column its span overlaps (a centred "Three Months Ended" over two)."""
    nearest = _nearest(edges, cell.end)
    low = spans[nearest][0]
    if abs(edges[nearest] - cell.end) <= 3 and cell.start >= low - 2:
        return [nearest]
    return [k for k, (lo, hi) in enumerate(spans) if cell.start <= hi and cell.end >= lo]


def _even_groups(cells: list[_Cell], spans: list[tuple[int, int]]) -> list[list[int]] | None:
    """"Three Months Ended   Nine Months Ended" over four columns: each cell heads an equal group of
    columns, when each one's centre lies over its group. None when the line is not such a line.

    Position alone can mislead here: a centred heading may end right at one column's edge.
    """
    if len(cells) == 1 and len(spans) == 2 and _PERIOD_WORDS.search(cells[0].text) \
            and spans[0][0] - 2 <= cells[0].start and cells[0].end <= spans[1][1] + 4:
        return [[0, 1]]  # "Three Months Ended" over a quarter and its year-earlier quarter, wherever it stands
    if not 1 < len(cells) < len(spans) or len(spans) % len(cells):
        return None
    size = len(spans) // len(cells)
    groups = [list(range(k * size, (k + 1) * size)) for k in range(len(cells))]
    for cell, group in zip(cells, groups):
        centre = (cell.start + cell.end) / 2
        if not spans[group[0]][0] - 2 <= centre <= spans[group[-1]][1] + 4:
            return None
    return groups


MAX_LABELS_PASSED = 2  # short group labels between the headings and the first row ("Net revenue:", "Client Computing")


def _headings(
    lines: list[_Line], first: int, edges: list[int], label_end: int, label_limit: int
) -> tuple[list[str], str, int, int]:
    """Column headings, the corner heading (above the row labels), the first line they take, and the line the
    table's rows start at.

    Heading lines are the lines above ``first`` whose cells stand right of every row label, except
    that one cell may stand over the labels (the corner: "(In Millions; Unaudited)", or a period
    phrase such as "Three Months Ended September 30," that then belongs to every column heading).
    Up to two short labels between the headings and the first row ("ASSETS"; "Net revenue:" over
    "Client Computing") are passed over and start the table's rows, where they label the rows below.
    """
    # The first column reaches left to the row labels: headings centred over it may stand left of its
    # figures, as "2023" does over "100.0 %" when a percent sign pushes the figures right.
    first_low = min(label_end, label_limit + 1) if label_limit else label_end
    spans = [(edges[k - 1] + 1 if k else first_low, edges[k]) for k in range(len(edges))]
    parts: list[list[str]] = [[] for _ in edges]
    corner: list[str] = []
    top = first
    rows_from = first
    cursor = first - 1
    taken = skipped = 0
    while cursor >= 0 and taken < 5:
        line = lines[cursor]
        if not line.cells:
            blank_run = 1 + next((k for k in range(cursor) if lines[cursor - 1 - k].cells), cursor)
            if (not taken and first - cursor > MAX_BLANK_LINES + 1) or (taken and blank_run > MAX_BLANK_LINES):
                break  # the blank lines above a heading line end the headings; Microsoft's have 4 between
            cursor -= 1
            continue
        left = [cell for cell in line.cells if cell.start <= label_limit]
        right = [cell for cell in line.cells if cell.start > label_limit]
        if line.figures or (left and (len(left) > 1 or not right)):
            if not taken and skipped < MAX_LABELS_PASSED and len(line.cells) == 1 and len(line.label.split()) <= 4:
                skipped += 1  # "ASSETS" above "Current assets:"
                rows_from = cursor
                cursor -= 1
                continue
            break
        if len(line.cells) == 1 and label_end - line.cells[0].start > (line.cells[0].end - line.cells[0].start) / 2:
            break  # a line centred on the page, mostly over the row labels: a title or "(in millions)", not a heading
        placed = _even_groups(right, spans) or [_columns_under(cell, spans, edges) for cell in right]
        if not all(placed):
            break  # text that stands over no column: a title or a note, not a heading
        for cell, columns in zip(reversed(right), reversed(placed)):
            for k in columns:
                parts[k].insert(0, cell.text)
        if left:
            if _PERIOD_WORDS.search(left[0].text):
                for part in parts:
                    part.insert(0, left[0].text)
            else:
                corner.insert(0, left[0].text)
        top = cursor
        taken += 1
        cursor -= 1
    headings = [re.sub(r",(?=\d{4}\b)", ", ", " ".join(p)) for p in parts]
    if not taken:  # no headings found above: the passed labels are the page's text, not the table's
        rows_from = first
    return headings, " ".join(corner), top, rows_from


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _table(
    lines: list[_Line], first: int, last: int, headings: list[str], corner: str, edges: list[int]
) -> list[str]:
    out = [f"| {_escape(corner)} | " + " | ".join(_escape(h) for h in headings) + " |", "| --- |" + " --- |" * len(edges)]
    groups: list[tuple[str, int]] = []  # the group labels above the current row, outermost first, with indents
    wrapped = ""  # a label line without figures, which the next row may continue
    block = lines[first : last + 1]
    for index, line in enumerate(block):
        if not line.cells:
            wrapped = ""
            continue
        if not line.figures:
            label = " ".join(c.text for c in line.cells)
            following = next((other for other in block[index + 1 :] if other.cells), None)
            # "Net sales:", or a segment name ("AWS") over rows indented below it: the rows' group.
            heads_indented = (following is not None and bool(following.figures) and following.indent > line.indent
                              and not following.label[:1].islower())
            if label.endswith(":") or heads_indented:
                while groups and groups[-1][1] >= line.indent:
                    groups.pop()
                groups.append((label.rstrip(":") + ":", line.indent))
                wrapped = ""
            else:
                out.append(f"| {_escape(label)} |" + " |" * len(edges))
                wrapped = label
            continue
        while groups and line.indent <= groups[-1][1]:
            groups.pop()
        values = [""] * len(edges)
        for cell in line.figures:
            values[_nearest(edges, cell.end)] = cell.text.replace(" ", "")
        own = line.label
        if wrapped and own[:1].islower():  # "… capitalized content costs, operating lease" / "assets, and other  10,327"
            out.pop()
            own = f"{wrapped} {own}"
        wrapped = ""
        label = " ".join([*(group for group, _ in groups), own])
        out.append(f"| {_escape(label)} | " + " | ".join(values) + " |")
    return out


def render_page(layout_text: str) -> str | None:
    """The page with its figure tables as Markdown (see module doc); None when it has none."""
    raw = layout_text.splitlines()
    lines = [_parse(line) for line in raw]
    blocks = _blocks(lines)
    if not blocks:
        return None
    out: list[str] = []
    cursor = 0
    previous: list[str] = []
    for first, last in blocks:
        rows = [line for line in lines[first : last + 1] if line.figures]
        edges = _columns(rows)
        label_end = min(min(r.figures[0].start for r in rows), min(edges))
        label_limit = max((r.cells[len(r.cells) - len(r.figures) - 1].end for r in rows if len(r.cells) > len(r.figures)),
                          default=0)
        headings, corner, top, rows_from = _headings(lines, first, edges, label_end, label_limit)
        if not any(headings) and len(previous) == len(headings):
            headings = previous  # the rest of the page's table, after a line of text in between
        previous = headings
        out.extend(" ".join(raw[i].split()) for i in range(cursor, top))
        if out and out[-1]:
            out.append("")
        out.extend(_table(lines, rows_from, last, headings, corner, edges))
        out.append("")
        cursor = last + 1
    out.extend(" ".join(line.split()) for line in raw[cursor:])
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def looks_tabular(plain_text: str) -> bool:
    """Cheap test on pypdf's plain text: ``MIN_ROWS`` lines ending in two numbers, or twice as many lone numbers.

    (A PDF that writes every cell as its own text object comes out of plain mode one cell per line.)
    """
    rows = lone = 0
    for line in plain_text.splitlines():
        if re.search(r"\d[\d,.)%]*\s+\(?[$€£¥￥]?\s?[\d(][\d,.]*\)?%?\s*$", line):
            rows += 1
        elif _NUMBER.match(line.strip()) and any(ch.isdigit() for ch in line):
            lone += 1
        if rows >= MIN_ROWS or lone >= 2 * MIN_ROWS:
            return True
    return False
