"""Aspect grids: the natal triangle (:func:`render_aspect_grid`) and the synastry table
(:func:`render_synastry_grid`, chart ``a`` in rows, ``b`` in columns).

Every cell is one ``<rect class="cell">`` with a ``<title>`` ("Sun trine Moon, orb 1.2°" or "Sun and Moon: no
aspect"); a cell with an aspect also holds its glyph, in the aspect's colour, and its orb ("1°12′"). Majors are
drawn on a tinted cell with a heavier glyph, so they stand out without colour too.
"""

from __future__ import annotations

from dataclasses import dataclass

import svg

from ..engine.aspects import MAJOR_ASPECTS
from .data import AspectMark, Chart, ChartData, SynastryData, check_chart, check_synastry
from .describe import aspect_title, owned_labels, point_title, positions_text
from .document import check_size, document, escaped, px, title
from .glyphs import draw_aspect_glyph, fitted_font, point_glyph, point_label
from .theme import Theme, get_theme

MARGIN = 0.04  # of the picture's size, on every side


@dataclass(frozen=True)
class Table:
    """Cells ``cell`` pixels square; row ``r`` and column ``c`` start at ``left + c·cell``, ``top + r·cell``."""

    size: int
    theme: Theme
    cell: float
    left: float
    top: float

    def x(self, column: float) -> float:
        return self.left + column * self.cell

    def y(self, row: float) -> float:
        return self.top + row * self.cell


def _table(size: object, theme: object, rows: int, columns: int) -> Table:
    checked = check_size(size)
    inner = checked * (1 - 2 * MARGIN)
    cell = inner / max(rows, columns)
    # Centre the table: a synastry table of unequal sides stays in the middle of its square.
    left = (checked - cell * columns) / 2
    top = (checked - cell * rows) / 2
    return Table(checked, get_theme(theme), cell, left, top)


def _orb_text(orb: float) -> str:
    minutes = round(orb * 60)
    return f"{minutes // 60}°{minutes % 60:02d}′"


def _point_cell(table: Table, row: float, column: float, chart: Chart, index: int, colour: str,
                owner: str = "") -> svg.G:
    """A header cell: the point's glyph (a letter label such as "MC" narrowed to fit), titled with its position."""
    glyph = point_glyph(chart.points[index])
    font = fitted_font(glyph, 0.55 * table.cell, 0.66 * table.cell)
    x, y = table.x(column), table.y(row)
    return svg.G(
        class_=["point"],
        extra={"data-point": escaped(chart.points[index])},
        elements=[
            title(point_title(chart, index, owner)),
            svg.Rect(x=px(x), y=px(y), width=px(table.cell), height=px(table.cell), fill="none",
                     stroke=table.theme.muted, stroke_width=px(table.size / 1000), class_=["header"]),
            svg.Text(x=px(x + table.cell / 2), y=px(y + table.cell / 2 + 0.36 * font), font_size=px(font),
                     text_anchor="middle", fill=colour, text=escaped(glyph),
                     class_=["point-glyph"]),
        ],
    )


def _aspect_cell(table: Table, row: float, column: float, mark: AspectMark | None, names: tuple[str, str]) -> svg.G:
    """One point pair: an empty cell, or the aspect's glyph and orb."""
    theme, cell = table.theme, table.cell
    x, y = table.x(column), table.y(row)
    major = mark is not None and mark.aspect in MAJOR_ASPECTS
    words = aspect_title(names[0], names[1], mark) if mark else f"{names[0]} and {names[1]}: no aspect"
    parts: list[svg.Element] = [
        title(words),
        svg.Rect(x=px(x), y=px(y), width=px(cell), height=px(cell), fill=theme.cell_fill if major else "none",
                 stroke=theme.muted, stroke_width=px(table.size / 1000), class_=["cell"]),
    ]
    if mark is not None:
        colour = theme.aspect_stroke(mark.aspect)
        glyph_width = (0.075 if major else 0.05) * cell
        parts.append(draw_aspect_glyph(mark.aspect, x + cell / 2, y + 0.4 * cell, 0.48 * cell, colour, glyph_width))
        font = 0.22 * cell
        parts.append(svg.Text(x=px(x + cell / 2), y=px(y + 0.9 * cell), font_size=px(font), text_anchor="middle",
                              fill=theme.foreground, text=_orb_text(mark.orb), class_=["orb"]))
    return svg.G(elements=parts, class_=["pair", f"aspect-{mark.aspect}" if mark else "no-aspect"])


def render_aspect_grid(chart: ChartData, size: int = 600, theme: str = "light") -> str:
    """The natal aspect triangle of ``chart``: points on the diagonal, one cell per point pair below it."""
    checked = check_chart(chart)
    count = len(checked.points)
    table = _table(size, theme, count, count)
    by_pair = {(min(m.p1, m.p2), max(m.p1, m.p2)): m for m in checked.aspects}
    labels = [point_label(p) for p in checked.points]
    body: list[svg.Element] = []
    for row in range(count):
        body.append(_point_cell(table, row, row, checked, row, table.theme.foreground))
        for column in range(row):
            mark = by_pair.get((column, row))
            # The title reads in the aspect's own order when one is given, else column point first.
            names = (labels[mark.p1], labels[mark.p2]) if mark else (labels[column], labels[row])
            body.append(_aspect_cell(table, row, column, mark, names))
    heading = f"Aspect grid of {checked.name}" if checked.name else "Aspect grid"
    found = "; ".join(aspect_title(labels[m.p1], labels[m.p2], m) for m in checked.aspects) or "none"
    description = (
        f"{heading}: {count} points on the diagonal, one cell per pair of points below it. "
        f"Points: {positions_text(checked)}. Aspects: {found}."
    )
    return document(table.size, table.theme, heading, description, body)


def render_synastry_grid(synastry: SynastryData, size: int = 600, theme: str = "light") -> str:
    """Every point of ``a`` (rows) against every point of ``b`` (columns), one cell per pair."""
    a, b, cross = check_synastry(synastry)
    table = _table(size, theme, len(a.points) + 1, len(b.points) + 1)
    name_a, name_b = a.name or "Chart A", b.name or "Chart B"
    by_pair = {(m.p1, m.p2): m for m in cross}
    labels_a, labels_b = owned_labels(a, name_a), owned_labels(b, name_b)
    font = 0.2 * table.cell
    body: list[svg.Element] = [
        svg.Text(x=px(table.x(0.5)), y=px(table.y(0.42)), font_size=px(font), text_anchor="middle",
                 fill=table.theme.foreground, text=escaped(name_a[:10]), class_=["row-name"]),
        svg.Text(x=px(table.x(0.5)), y=px(table.y(0.78)), font_size=px(font), text_anchor="middle",
                 fill=table.theme.second_chart, text=escaped(name_b[:10]), class_=["column-name"]),
    ]
    body += [_point_cell(table, 0, 1 + k, b, k, table.theme.second_chart, name_b) for k in range(len(b.points))]
    for row in range(len(a.points)):
        body.append(_point_cell(table, 1 + row, 0, a, row, table.theme.foreground, name_a))
        for column in range(len(b.points)):
            mark = by_pair.get((row, column))
            body.append(_aspect_cell(table, 1 + row, 1 + column, mark, (labels_a[row], labels_b[column])))
    heading = f"Synastry grid of {name_a} and {name_b}"
    found = "; ".join(aspect_title(labels_a[m.p1], labels_b[m.p2], m) for m in cross) or "none"
    description = (
        f"{heading}: {name_a}'s points in rows, {name_b}'s in columns, one cell per pair. "
        f"{name_a}: {positions_text(a)}. {name_b}: {positions_text(b)}. Aspects: {found}."
    )
    return document(table.size, table.theme, heading, description, body)
