"""The picture's root element, its options and the few helpers every drawing shares.

svg.py writes attribute values and text exactly as given, so everything that may hold a caller's words (titles,
descriptions, point names) goes through :func:`escaped` here, and coordinates are rounded to hundredths of a
pixel so the output is short and the same on every run.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import svg

from ..engine.errors import FieldError
from .theme import FONT_FAMILY, Theme

MIN_SIZE, MAX_SIZE = 200, 2000


def check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise FieldError("size", f"must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}, not {size!r}")
    return size


def escaped(text: str) -> str:
    """``text`` safe as element content or as a double-quoted attribute value."""
    return escape(text, {'"': "&quot;"})


def px(value: float) -> float:
    """A coordinate rounded for output; ``+ 0.0`` turns −0.0 into 0.0 so equal pictures print alike."""
    return round(value, 2) + 0.0


def title(text: str) -> svg.Title:
    return svg.Title(text=escaped(text))


def document(
    size: int, theme: Theme, heading: str, description: str, body: list[svg.Element], width: int | None = None,
    height: int | None = None,
) -> str:
    """The whole SVG: an image for assistive technology (``role="img"``, a title and a description first),
    the theme's background, then ``body`` in one group that sets the font stack."""
    width = size if width is None else width
    height = size if height is None else height
    root = svg.SVG(
        width=width,
        height=height,
        viewBox=svg.ViewBoxSpec(0, 0, width, height),
        extra={"role": "img", "class": f"aspects-picture theme-{theme.name}"},
        elements=[
            title(heading),
            svg.Desc(text=escaped(description)),
            svg.Rect(x=0, y=0, width=width, height=height, fill=theme.background, class_=["background"]),
            svg.G(
                elements=body,
                extra={"font-family": FONT_FAMILY},
                fill=theme.foreground,
            ),
        ],
    )
    return str(root)
