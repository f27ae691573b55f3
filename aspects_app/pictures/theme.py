"""Colours, line styles and the font stack of the pictures, for the "light" and "dark" themes.

Aspects are told apart by more than colour: majors are solid and heavier, minors dashed and lighter, so a reader
who cannot tell red from green (or prints in grey) still sees the difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..engine.aspects import MAJOR_ASPECTS
from ..engine.errors import FieldError

# No web fonts (nothing to fetch): fonts commonly installed that hold the astrological symbols, then any sans.
FONT_FAMILY = "DejaVu Sans, Noto Sans Symbols, Noto Sans Symbols 2, Segoe UI Symbol, Apple Symbols, sans-serif"

# The kind of each aspect decides its colour: hard (tension), soft (flow), neutral (conjunction), the quintile
# family (creative) and the quincunx (adjustment).
ASPECT_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "conjunction": "neutral",
        "semi-sextile": "soft",
        "semi-square": "hard",
        "sextile": "soft",
        "quintile": "creative",
        "square": "hard",
        "trine": "soft",
        "sesquiquadrate": "hard",
        "biquintile": "creative",
        "quincunx": "adjusting",
        "opposition": "hard",
    }
)


@dataclass(frozen=True)
class Theme:
    name: str
    background: str
    foreground: str  # text, glyphs, main outlines
    muted: str  # ticks, house lines, grid lines
    zodiac_fill: Mapping[str, str]  # element -> sector tint
    sign_colour: Mapping[str, str]  # element -> glyph colour
    inner_fill: str  # the disc inside the wheel
    second_chart: str  # the outer chart's glyphs on a bi-wheel
    axis: str  # Ascendant and Midheaven
    aspect_colour: Mapping[str, str]  # kind -> stroke
    cell_fill: str  # grid cells that hold an aspect

    def aspect_stroke(self, aspect: str) -> str:
        return self.aspect_colour[ASPECT_KINDS[aspect]]


@dataclass(frozen=True)
class AspectStyle:
    """Stroke of an aspect line as multiples of the picture's base line width."""

    width: float
    dash: tuple[float, ...]  # empty: solid


MAJOR_STYLE = AspectStyle(width=1.6, dash=())
MINOR_STYLE = AspectStyle(width=1.0, dash=(4.0, 3.0))


def aspect_style(aspect: str) -> AspectStyle:
    return MAJOR_STYLE if aspect in MAJOR_ASPECTS else MINOR_STYLE


LIGHT = Theme(
    name="light",
    background="#ffffff",
    foreground="#1f2328",
    muted="#8c959f",
    zodiac_fill=MappingProxyType({"fire": "#fde2dc", "earth": "#e3f1dc", "air": "#fdf3cf", "water": "#dce9f7"}),
    sign_colour=MappingProxyType({"fire": "#b3261e", "earth": "#2e7d32", "air": "#8a6d00", "water": "#1f5fa8"}),
    inner_fill="#ffffff",
    second_chart="#7b2ea6",
    axis="#1f2328",
    aspect_colour=MappingProxyType(
        {"hard": "#c62828", "soft": "#1565c0", "neutral": "#b58100", "creative": "#6a1b9a", "adjusting": "#2e7d32"}
    ),
    cell_fill="#f6f8fa",
)
DARK = Theme(
    name="dark",
    background="#0d1117",
    foreground="#e6edf3",
    muted="#6e7681",
    zodiac_fill=MappingProxyType({"fire": "#3d1d1a", "earth": "#1c3320", "air": "#3a3214", "water": "#162a40"}),
    sign_colour=MappingProxyType({"fire": "#ff8a80", "earth": "#81c784", "air": "#ffd54f", "water": "#82b1ff"}),
    inner_fill="#0d1117",
    second_chart="#d2a8ff",
    axis="#e6edf3",
    aspect_colour=MappingProxyType(
        {"hard": "#ff6b6b", "soft": "#58a6ff", "neutral": "#e3b341", "creative": "#d2a8ff", "adjusting": "#7ee787"}
    ),
    cell_fill="#161b22",
)
THEMES: Mapping[str, Theme] = MappingProxyType({theme.name: theme for theme in (LIGHT, DARK)})


def get_theme(theme: object) -> Theme:
    if not isinstance(theme, str) or theme not in THEMES:
        raise FieldError("theme", f"must be one of {', '.join(sorted(THEMES))}, not {theme!r}")
    return THEMES[theme]
