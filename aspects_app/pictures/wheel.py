"""Chart wheels: one chart (:func:`render_wheel`) or two on one wheel (:func:`render_biwheel`).

From the rim inwards: the zodiac ring (sign glyphs on element tints, 5° ticks), the house ring (numbers) when
cusps are given, one band of point glyphs per chart (glyph, degrees, minutes, ℞), and the aspect circle the
aspect lines are drawn across. With cusps the Ascendant lies at nine o'clock; without, 0° Aries does. Radii are
fractions of the picture's size, so every size draws the same picture.

With cusps, a chart's angles (Ascendant, Medium_Coeli, Descendant, Imum_Coeli, those it has) are drawn as axes
from the aspect circle to beyond the rim, labelled "Asc", "MC"…, not as points in the band; their aspect lines end
where the axis meets the aspect circle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import svg

from ..engine.zodiac import ELEMENTS
from .data import AspectMark, Chart, ChartData, SynastryData, check_chart, check_synastry
from .describe import aspect_title, aspects_text, owned_labels, point_title, positions_text
from .document import check_size, document, escaped, px, title
from .glyphs import (
    ANGLE_LABELS,
    RETROGRADE,
    SIGN_GLYPHS,
    SIGNS,
    degree_parts,
    fitted_font,
    format_position,
    point_glyph,
)
from .layout import Dial, circular_distance, spread_longitudes
from .theme import Theme, aspect_style, get_theme

HOUSE_NUMBER_SIZE, AXIS_LABEL_SIZE = 0.022, 0.024
# A glyph is about one em wide and the text rows three characters (0.6 em each): the tangential room one point
# needs, in ems of its own font, with a little air.
GLYPH_WIDTH_EM, TEXT_WIDTH_EM = 1.1, 2.0
# A glyph further than this from its true longitude gets a leader line back to it.
LEADER_MIN_DEGREES = 0.5


@dataclass(frozen=True)
class Band:
    """The ring one chart's points are drawn in, as fractions of the picture's size."""

    outer: float  # where the true-position ticks start
    glyph_size: float
    text_size: float

    @property
    def glyph(self) -> float:
        return self.outer - 0.02 - self.glyph_size / 2

    @property
    def degrees(self) -> float:
        return self.glyph - 0.5 * self.glyph_size - 0.65 * self.text_size

    @property
    def minutes(self) -> float:
        return self.degrees - 1.15 * self.text_size

    @property
    def retrograde(self) -> float:
        return self.minutes - 1.15 * self.text_size

    @property
    def inner(self) -> float:
        return self.retrograde - 0.7 * self.text_size

    def min_separation(self) -> float:
        """Degrees two neighbouring points need so neither their glyphs nor their text rows touch."""
        glyph = GLYPH_WIDTH_EM * self.glyph_size / (self.glyph - self.glyph_size / 2)
        text = TEXT_WIDTH_EM * self.text_size / self.retrograde
        return math.degrees(max(glyph, text))


@dataclass(frozen=True)
class Rings:
    """The zodiac ring and the house ring, as fractions of the picture's size."""

    zodiac_outer: float
    zodiac_inner: float
    house: float  # width of the house-number ring
    sign_size: float


# A bi-wheel holds two bands of points, so its zodiac and house rings are thinner.
NATAL_RINGS = Rings(zodiac_outer=0.43, zodiac_inner=0.36, house=0.035, sign_size=0.045)
BIWHEEL_RINGS = Rings(zodiac_outer=0.445, zodiac_inner=0.39, house=0.028, sign_size=0.038)


@dataclass(frozen=True)
class Canvas:
    size: int
    theme: Theme
    dial: Dial
    rings: Rings

    def at(self, longitude: float, radius: float) -> tuple[float, float]:
        x, y = self.dial.point(longitude, radius * self.size)
        return px(x), px(y)

    @property
    def line(self) -> float:
        """The base line width: one pixel at 600 px."""
        return self.size / 600.0


def _text(canvas: Canvas, x: float, y: float, text: str, size: float, **style: object) -> svg.Text:
    """Text centred on (x, y); size is a fraction of the picture. The baseline sits 0.36 em below the centre,
    which centres DejaVu's glyphs without relying on dominant-baseline (renderers disagree on it)."""
    font = canvas.size * size
    return svg.Text(
        x=px(x), y=px(y + 0.36 * font), text=escaped(text), font_size=px(font), text_anchor="middle",
        **style,  # type: ignore[arg-type]
    )


def _annulus_sector(canvas: Canvas, start: float, end: float, outer: float, inner: float) -> list[svg.PathData]:
    """A ring sector from longitude ``start`` to ``end`` (< 180° apart), counter-clockwise on the screen."""
    r_out, r_in = px(outer * canvas.size), px(inner * canvas.size)
    return [
        svg.MoveTo(*canvas.at(start, outer)),
        svg.Arc(r_out, r_out, 0, False, False, *canvas.at(end, outer)),
        svg.LineTo(*canvas.at(end, inner)),
        svg.Arc(r_in, r_in, 0, False, True, *canvas.at(start, inner)),
        svg.ClosePath(),
    ]


def _circle(canvas: Canvas, radius: float, stroke: str, width: float, fill: str = "none") -> svg.Circle:
    return svg.Circle(
        cx=px(canvas.dial.cx), cy=px(canvas.dial.cy), r=px(radius * canvas.size), fill=fill, stroke=stroke,
        stroke_width=px(width),
    )


def _zodiac(canvas: Canvas, inner_fill: str) -> list[svg.Element]:
    theme = canvas.theme
    rings = canvas.rings
    parts: list[svg.Element] = [_circle(canvas, rings.zodiac_outer, theme.foreground, canvas.line, fill=inner_fill)]
    for sign in range(12):
        element = ELEMENTS[sign % 4]
        start = 30.0 * sign
        parts.append(
            svg.Path(
                d=_annulus_sector(canvas, start, start + 30.0, rings.zodiac_outer, rings.zodiac_inner),
                fill=theme.zodiac_fill[element], stroke=theme.muted, stroke_width=px(0.6 * canvas.line),
                class_=["sign", f"sign-{SIGNS[sign].lower()}"],
            )
        )
        x, y = canvas.dial.point(start + 15.0, (rings.zodiac_outer + rings.zodiac_inner) / 2 * canvas.size)
        glyph = _text(canvas, x, y, SIGN_GLYPHS[sign], rings.sign_size, fill=theme.sign_colour[element])
        glyph.elements, glyph.text = [title(SIGNS[sign]), svg.TSpan(text=SIGN_GLYPHS[sign])], None
        parts.append(glyph)
    ticks: list[svg.PathData] = []
    for degree in range(0, 360, 5):
        length = 0.016 if degree % 10 == 0 else 0.009
        ticks += [svg.MoveTo(*canvas.at(degree, rings.zodiac_inner)),
                  svg.LineTo(*canvas.at(degree, rings.zodiac_inner + length))]
    parts.append(svg.Path(d=ticks, stroke=theme.muted, stroke_width=px(0.6 * canvas.line), class_=["ticks"]))
    parts.append(_circle(canvas, rings.zodiac_inner, theme.foreground, canvas.line))
    return parts


AXES = {0: "Ascendant", 3: "Imum Coeli", 6: "Descendant", 9: "Midheaven"}
# The cusps labelled as axes, by the angle point they stand for (a chart given that point labels its own axis).
CUSP_ANGLES = {0: "Ascendant", 9: "Medium_Coeli"}
# How far beyond the rim a labelled axis reaches.
AXIS_OVERHANG = 0.015


def _axis_label(canvas: Canvas, longitude: float, text: str) -> svg.Text:
    """A label just outside the rim beside the axis' end (clockwise of it), centred there: a label on the
    radius itself would need the margin beyond the rim to hold its whole width."""
    angle = canvas.dial.angle(longitude)
    x, y = canvas.dial.point(longitude, (canvas.rings.zodiac_outer + 0.028) * canvas.size)
    offset = 0.03 * canvas.size  # along the clockwise tangent (sin a, cos a) in screen coordinates
    return _text(
        canvas, x + offset * math.sin(angle), y + offset * math.cos(angle), text, AXIS_LABEL_SIZE,
        font_weight="bold", fill=canvas.theme.axis, class_=["axis-label"],
    )


def _houses(canvas: Canvas, cusps: Sequence[float], inner: float, angles: Sequence[str] = ()) -> list[svg.Element]:
    """The cusps and house numbers; the Ascendant's and MC's cusps labelled unless ``angles`` (the angle points
    drawn as axes of their own) holds them, so that each angle has one label."""
    theme = canvas.theme
    rings = canvas.rings
    house_inner = rings.zodiac_inner - rings.house
    parts: list[svg.Element] = [_circle(canvas, house_inner, theme.muted, 0.8 * canvas.line)]
    for house, cusp in enumerate(cusps):
        axis = house in AXES
        outer = rings.zodiac_outer + AXIS_OVERHANG if house in CUSP_ANGLES else rings.zodiac_inner
        x1, y1 = canvas.at(cusp, inner)
        x2, y2 = canvas.at(cusp, outer)
        name = f"House {house + 1} cusp" + (f" ({AXES[house]})" if axis else "")
        parts.append(
            svg.Line(
                x1=x1, y1=y1, x2=x2, y2=y2, stroke=theme.axis if axis else theme.muted,
                stroke_width=px((2.2 if axis else 0.8) * canvas.line),
                class_=["cusp", "axis"] if axis else ["cusp"], elements=[title(f"{name} {format_position(cusp)}")],
            )
        )
        width = (cusps[(house + 1) % 12] - cusp) % 360.0
        x, y = canvas.dial.point(cusp + width / 2, (rings.zodiac_inner - rings.house / 2) * canvas.size)
        parts.append(_text(canvas, x, y, str(house + 1), HOUSE_NUMBER_SIZE, fill=theme.muted, class_=["house-number"]))
        if house in CUSP_ANGLES and CUSP_ANGLES[house] not in angles:
            parts.append(_axis_label(canvas, cusp, ANGLE_LABELS[CUSP_ANGLES[house]]))
    return parts


def angle_indices(chart: Chart) -> tuple[int, ...]:
    """The points drawn as axes rather than in the band: the chart's angles, when its houses are drawn."""
    if chart.cusps is None:
        return ()
    return tuple(k for k, name in enumerate(chart.points) if name in ANGLE_LABELS)


def _angles(canvas: Canvas, chart: Chart, inner: float, owner: str = "") -> list[svg.Element]:
    """One group per angle point: its axis at its own longitude (over its cusp's, which it usually equals; apart
    from it in whole-sign or Morinus houses), its label beyond the rim and its position as the title."""
    groups: list[svg.Element] = []
    for index in angle_indices(chart):
        longitude, name = chart.longitudes[index], chart.points[index]
        x1, y1 = canvas.at(longitude, inner)
        x2, y2 = canvas.at(longitude, canvas.rings.zodiac_outer + AXIS_OVERHANG)
        axis = svg.Line(
            x1=x1, y1=y1, x2=x2, y2=y2, stroke=canvas.theme.axis, stroke_width=px(2.2 * canvas.line),
            class_=["angle-axis"],
        )
        groups.append(
            svg.G(
                elements=[title(point_title(chart, index, owner)), axis,
                          _axis_label(canvas, longitude, ANGLE_LABELS[name])],
                class_=["angle"], extra={"data-point": escaped(name)},
            )
        )
    return groups


def _tangent_rotation(canvas: Canvas, longitude: float) -> float:
    """The rotation (degrees, clockwise on the screen) that lays text along the circle, never upside down."""
    angle = math.degrees(canvas.dial.angle(longitude))
    return (180.0 - angle) % 180.0 - 90.0


def _points(canvas: Canvas, chart: Chart, band: Band, colour: str, owner: str = "") -> list[svg.Element]:
    """One group per point (the angles drawn as axes aside): true-position tick, leader line when moved, glyph,
    degrees, minutes, ℞."""
    theme, size = canvas.theme, canvas.size
    axes = set(angle_indices(chart))
    banded = [k for k in range(len(chart.points)) if k not in axes]
    shown = spread_longitudes([chart.longitudes[k] for k in banded], band.min_separation())
    groups: list[svg.Element] = []
    for index, display in zip(banded, shown, strict=True):
        true = chart.longitudes[index]
        x1, y1 = canvas.at(true, band.outer)
        x2, y2 = canvas.at(true, band.outer - 0.012)
        parts: list[svg.Element] = [
            title(point_title(chart, index, owner)),
            svg.Line(x1=x1, y1=y1, x2=x2, y2=y2, stroke=colour, stroke_width=px(1.4 * canvas.line),
                     class_=["point-tick"]),
        ]
        if circular_distance(true, display) > LEADER_MIN_DEGREES:
            x3, y3 = canvas.at(display, band.glyph + band.glyph_size * 0.6)
            parts.append(svg.Line(x1=x2, y1=y2, x2=x3, y2=y3, stroke=theme.muted, stroke_width=px(0.7 * canvas.line),
                                  class_=["leader"]))
        _, degrees, minutes = degree_parts(true)
        glyph = point_glyph(chart.points[index])
        # A letter label ("Asc" without houses, "Ch") narrowed to the room a symbol has.
        glyph_font = fitted_font(glyph, band.glyph_size, GLYPH_WIDTH_EM * band.glyph_size)
        rows = [(band.glyph, glyph, glyph_font, "point-glyph"),
                (band.degrees, f"{degrees}°", band.text_size, "point-degrees"),
                (band.minutes, f"{minutes:02d}′", band.text_size, "point-minutes")]
        if chart.retrograde[index]:
            rows.append((band.retrograde, RETROGRADE, band.text_size, "point-retrograde"))
        for row, (radius, text, font, kind) in enumerate(rows):
            x, y = canvas.dial.point(display, radius * size)
            mark = _text(canvas, x, y, text, font, fill=colour, class_=[kind])
            if row:
                # Text rows lie along the circle: their width then needs room around it, where the spread
                # allows for it, never along the radius, where the rows are stacked.
                mark.transform = [svg.Rotate(px(_tangent_rotation(canvas, display)), px(x), px(y))]
            parts.append(mark)
        groups.append(svg.G(elements=parts, class_=["point"], extra={"data-point": escaped(chart.points[index])}))
    return groups


def _aspect_lines(
    canvas: Canvas, marks: Sequence[AspectMark], first: Chart, second: Chart, radius: float,
    labels: tuple[list[str], list[str]],
) -> list[svg.Element]:
    lines: list[svg.Element] = []
    for mark in marks:
        style = aspect_style(mark.aspect)
        x1, y1 = canvas.at(first.longitudes[mark.p1], radius)
        x2, y2 = canvas.at(second.longitudes[mark.p2], radius)
        lines.append(
            svg.Line(
                x1=x1, y1=y1, x2=x2, y2=y2, stroke=canvas.theme.aspect_stroke(mark.aspect),
                stroke_width=px(style.width * canvas.line),
                stroke_dasharray=[px(d * canvas.line) for d in style.dash] or None, stroke_linecap="round",
                class_=["aspect", f"aspect-{mark.aspect}", "major" if not style.dash else "minor"],
                elements=[title(aspect_title(labels[0][mark.p1], labels[1][mark.p2], mark))],
            )
        )
    return lines


def _angle_names(chart: Chart) -> tuple[str, ...]:
    return tuple(chart.points[k] for k in angle_indices(chart))


def _canvas(chart: Chart, size: object, theme: object, rings: Rings) -> Canvas:
    checked = check_size(size)
    left = chart.ascendant if chart.ascendant is not None else 0.0
    return Canvas(checked, get_theme(theme), Dial(checked / 2, checked / 2, left), rings)


def _band_outer(chart: Chart, rings: Rings) -> float:
    return rings.zodiac_inner - rings.house if chart.cusps is not None else rings.zodiac_inner


NATAL_GLYPH, NATAL_TEXT = 0.042, 0.021
BIWHEEL_GLYPH, BIWHEEL_TEXT = 0.032, 0.017


def render_wheel(chart: ChartData, size: int = 600, theme: str = "light") -> str:
    """The chart wheel of ``chart`` as an SVG document, ``size`` pixels square, in the ``"light"`` or
    ``"dark"`` theme. Bad input raises ``FieldError`` (a ``ValueError``) naming the argument."""
    checked = check_chart(chart)
    canvas = _canvas(checked, size, theme, NATAL_RINGS)
    band = Band(_band_outer(checked, NATAL_RINGS), NATAL_GLYPH, NATAL_TEXT)
    aspect_radius = band.inner
    body = _zodiac(canvas, canvas.theme.inner_fill)
    if checked.cusps is not None:
        body += _houses(canvas, checked.cusps, aspect_radius, _angle_names(checked))
    body.append(_circle(canvas, aspect_radius, canvas.theme.muted, 0.8 * canvas.line))
    labels = owned_labels(checked, "")
    body += _aspect_lines(canvas, checked.aspects, checked, checked, aspect_radius, (labels, labels))
    body += _angles(canvas, checked, aspect_radius)
    body += _points(canvas, checked, band, canvas.theme.foreground)
    heading = f"Chart wheel of {checked.name}" if checked.name else "Chart wheel"
    houses = "houses drawn, Ascendant at the left" if checked.cusps else "no houses, 0° Aries at the left"
    description = (
        f"{heading}, {houses}. Points: {positions_text(checked)}. "
        f"Aspects: {aspects_text(checked.aspects, labels, labels)}."
    )
    return document(canvas.size, canvas.theme, heading, description, body)


def _legend(canvas: Canvas, entries: Sequence[tuple[str, str]]) -> list[svg.Element]:
    font = 0.024 * canvas.size
    return [
        svg.Text(x=px(0.02 * canvas.size), y=px((0.04 + 0.035 * k) * canvas.size), text=escaped(text),
                 font_size=px(font), fill=colour, class_=["legend"])
        for k, (text, colour) in enumerate(entries)
    ]


def render_biwheel(synastry: SynastryData, size: int = 600, theme: str = "light") -> str:
    """Both charts of ``synastry`` on one wheel: ``a`` inside (its houses drawn), ``b`` in the ring outside it,
    and the cross aspects across the centre. Same options and errors as :func:`render_wheel`."""
    a, b, cross = check_synastry(synastry)
    canvas = _canvas(a, size, theme, BIWHEEL_RINGS)
    name_a, name_b = a.name or "Chart A", b.name or "Chart B"
    outer_band = Band(_band_outer(a, BIWHEEL_RINGS), BIWHEEL_GLYPH, BIWHEEL_TEXT)
    inner_band = Band(outer_band.inner, BIWHEEL_GLYPH, BIWHEEL_TEXT)
    aspect_radius = inner_band.inner
    body = _zodiac(canvas, canvas.theme.inner_fill)
    if a.cusps is not None:
        body += _houses(canvas, a.cusps, aspect_radius, _angle_names(a))
    body.append(_circle(canvas, outer_band.inner, canvas.theme.muted, 0.8 * canvas.line))
    body.append(_circle(canvas, aspect_radius, canvas.theme.muted, 0.8 * canvas.line))
    labels_a, labels_b = owned_labels(a, name_a), owned_labels(b, name_b)
    body += _aspect_lines(canvas, cross, a, b, aspect_radius, (labels_a, labels_b))
    # Chart b's houses are not drawn: its angles stay points in its band.
    body += _angles(canvas, a, aspect_radius, name_a)
    body += _points(canvas, a, inner_band, canvas.theme.foreground, name_a)
    body += _points(canvas, b, outer_band, canvas.theme.second_chart, name_b)
    body += _legend(canvas, [(f"Inner: {name_a}", canvas.theme.foreground), (f"Outer: {name_b}",
                                                                               canvas.theme.second_chart)])
    heading = f"Synastry bi-wheel of {name_a} and {name_b}"
    description = (
        f"{heading}: {name_a} inside, {name_b} outside. {name_a}: {positions_text(a)}. "
        f"{name_b}: {positions_text(b)}. Cross aspects: {aspects_text(cross, labels_a, labels_b)}."
    )
    return document(canvas.size, canvas.theme, heading, description, body)
