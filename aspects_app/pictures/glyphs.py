"""Glyphs of the signs, points and aspects, and the position text a reader sees ("12°34′ Leo").

Signs and points are Unicode symbols that DejaVu Sans, Noto Sans Symbols and Segoe UI Symbol all hold; each is
followed by VARIATION SELECTOR-15 so browsers draw the text form, never a coloured emoji. Four aspect symbols
(sextile, semi-sextile, quincunx, sesquiquadrate, U+26B9..U+26BC) are missing from DejaVu and from most system
fonts, so every geometric aspect glyph is drawn as a stroked path instead; that also makes them look the same on
every renderer. Quintiles keep their customary letters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import svg

from ..engine.zodiac import SIGN_NAMES
from .document import px

TEXT_PRESENTATION = "\ufe0e"

# The engine's sign names, which the zodiac payloads use (one list, so a picture and a payload agree).
SIGNS = SIGN_NAMES
SIGN_GLYPHS: tuple[str, ...] = tuple(chr(0x2648 + k) + TEXT_PRESENTATION for k in range(12))

POINT_GLYPHS: Mapping[str, str] = MappingProxyType(
    {
        "Sun": "☉",
        "Moon": "☽",
        "Mercury": "☿",
        "Venus": "♀",
        "Mars": "♂",
        "Jupiter": "♃",
        "Saturn": "♄",
        "Uranus": "♅",
        "Neptune": "♆",
        "Pluto": "♇",
        "Mean_Node": "☊",
        "True_Node": "☊",
        "Mean_South_Node": "☋",
        "True_South_Node": "☋",
        "Chiron": "⚷",
        "Mean_Lilith": "⚸",
        "Ascendant": "Asc",
        "Medium_Coeli": "MC",
        "Descendant": "Dsc",
        "Imum_Coeli": "IC",
    }
)
# The chart's angles. A wheel that draws houses draws them as its axes, labelled with these short names, rather
# than as points in the band: a point there would repeat the axis and crowd the planets beside it.
ANGLE_LABELS: Mapping[str, str] = MappingProxyType(
    {name: POINT_GLYPHS[name] for name in ("Ascendant", "Medium_Coeli", "Descendant", "Imum_Coeli")}
)
RETROGRADE = "℞"
# Rough advance widths in DejaVu Sans, in ems (capitals 0.68..0.86, lower case 0.5..0.63), erring wide.
CAPITAL_EM, LOWER_EM = 0.8, 0.55
# The letters that stand for the quintiles in most chart software; the other aspects are paths (see module doc).
ASPECT_LETTERS: Mapping[str, str] = MappingProxyType({"quintile": "Q", "biquintile": "bQ"})


def point_glyph(name: str) -> str:
    """The symbol of a point; a point without one shows its first two letters."""
    glyph = POINT_GLYPHS.get(name)
    if glyph is None:
        return name[:2]
    return glyph + TEXT_PRESENTATION if len(glyph) == 1 else glyph


def fitted_font(text: str, font: float, room: float) -> float:
    """The font size (``font`` or less) at which ``text`` is at most ``room`` wide, in the same unit. A single
    symbol is drawn at ``font`` (the layouts size their room by it); only letter labels ("Asc", "MC", the two
    letters of a point without a symbol) are narrowed."""
    letters = text.replace(TEXT_PRESENTATION, "")
    if len(letters) <= 1:
        return font
    width = sum(CAPITAL_EM if letter.isupper() else LOWER_EM for letter in letters)
    return min(font, room / width)


def point_label(name: str) -> str:
    """How a reader hears the point: "Mean_Node" -> "Mean Node"."""
    return name.replace("_", " ")


def sign_of(longitude: float) -> int:
    return int(longitude // 30.0) % 12


def _whole_minutes(longitude: float) -> int:
    # Floor (a body at 29°59.9′ has not reached the next sign); the epsilon keeps 12.5666…67 at 12°34′.
    return math.floor(longitude % 360.0 * 60.0 + 1e-7) % (360 * 60)


def degree_parts(longitude: float) -> tuple[int, int, int]:
    """(sign index, degrees within the sign, arc minutes), floored."""
    minutes = _whole_minutes(longitude)
    return minutes // 1800, minutes % 1800 // 60, minutes % 60


def format_degrees(longitude: float) -> str:
    """The position within its sign, as "12°34′"."""
    _, degrees, minutes = degree_parts(longitude)
    return f"{degrees}°{minutes:02d}′"


def format_position(longitude: float) -> str:
    """The position as a reader hears it: "12°34′ Leo"."""
    sign, _, _ = degree_parts(longitude)
    return f"{format_degrees(longitude)} {SIGNS[sign]}"


Stroke = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class AspectShape:
    """An aspect glyph in a unit box (−1..1, y down): open or closed polylines and circles (cx, cy, r)."""

    polylines: tuple[Stroke, ...] = ()
    closed: tuple[Stroke, ...] = ()
    circles: tuple[tuple[float, float, float], ...] = ()


def _rays(count: int, length: float, start_degrees: float) -> tuple[Stroke, ...]:
    """``count`` diameters through the centre, evenly turned: the arms of an asterisk."""
    rays = []
    for k in range(count):
        a = math.radians(start_degrees + 180.0 * k / count)
        dx, dy = length * math.cos(a), length * math.sin(a)
        rays.append(((-dx, -dy), (dx, dy)))
    return tuple(rays)


ASPECT_SHAPES: Mapping[str, AspectShape] = MappingProxyType(
    {
        "conjunction": AspectShape(polylines=(((0.05, -0.05), (0.75, -0.75)),), circles=((-0.28, 0.28, 0.45),)),
        "opposition": AspectShape(
            polylines=(((-0.3, 0.3), (0.3, -0.3)),), circles=((-0.52, 0.52, 0.3), (0.52, -0.52, 0.3))
        ),
        "trine": AspectShape(closed=(((0.0, -0.8), (0.8, 0.6), (-0.8, 0.6)),)),
        "square": AspectShape(closed=(((-0.65, -0.65), (0.65, -0.65), (0.65, 0.65), (-0.65, 0.65)),)),
        "sextile": AspectShape(polylines=_rays(3, 0.8, 90.0)),
        # A V standing on a bar; the quincunx is the same figure upside down.
        "semi-sextile": AspectShape(polylines=(((-0.7, 0.65), (0.7, 0.65)), ((-0.6, -0.7), (0.0, 0.65), (0.6, -0.7)))),
        "quincunx": AspectShape(polylines=(((-0.7, -0.65), (0.7, -0.65)), ((-0.6, 0.7), (0.0, -0.65), (0.6, 0.7)))),
        "semi-square": AspectShape(polylines=(((0.7, -0.7), (-0.7, 0.65), (0.75, 0.65)),)),
        "sesquiquadrate": AspectShape(
            polylines=(((0.3, -0.8), (-0.8, 0.75), (0.8, 0.75)),),
            closed=(((-0.05, -0.2), (0.5, -0.2), (0.5, 0.35), (-0.05, 0.35)),),
        ),
    }
)


def draw_aspect_glyph(aspect: str, cx: float, cy: float, size: float, colour: str, line_width: float) -> svg.Element:
    """The glyph of ``aspect`` centred on (cx, cy), ``size`` pixels across: one path, or letters for quintiles."""
    letters = ASPECT_LETTERS.get(aspect)
    if letters is not None:
        return svg.Text(
            x=px(cx), y=px(cy + 0.36 * size), text=letters, fill=colour, font_size=px(size),
            text_anchor="middle", font_weight="bold", class_=["aspect-glyph"],
        )
    shape = ASPECT_SHAPES[aspect]
    half = size / 2.0

    def at(point: tuple[float, float]) -> tuple[float, float]:
        return px(cx + point[0] * half), px(cy + point[1] * half)

    commands: list[svg.PathData] = []
    for stroke, close in [(s, False) for s in shape.polylines] + [(s, True) for s in shape.closed]:
        commands.append(svg.MoveTo(*at(stroke[0])))
        commands.extend(svg.LineTo(*at(point)) for point in stroke[1:])
        if close:
            commands.append(svg.ClosePath())
    for x, y, r in shape.circles:
        # A circle as two half arcs, so the whole glyph stays one path.
        left, right = at((x - r, y)), at((x + r, y))
        radius = px(r * half)
        commands.append(svg.MoveTo(*left))
        commands.append(svg.Arc(radius, radius, 0, False, True, *right))
        commands.append(svg.Arc(radius, radius, 0, False, True, *left))
    return svg.Path(
        d=commands, fill="none", stroke=colour, stroke_width=px(line_width), stroke_linecap="round",
        stroke_linejoin="round", class_=["aspect-glyph"],
    )
