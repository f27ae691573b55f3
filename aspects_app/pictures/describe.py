"""The words a screen reader says for a point or an aspect, shared by the wheels and the grids."""

from __future__ import annotations

from .data import AspectMark, Chart
from .glyphs import format_position, point_label


def point_title(chart: Chart, index: int, owner: str = "") -> str:
    """"Sun 12°34′ Leo, retrograde"; with ``owner`` (a bi-wheel's chart name) "Alice: Sun 12°34′ Leo"."""
    text = f"{point_label(chart.points[index])} {format_position(chart.longitudes[index])}"
    if chart.retrograde[index]:
        text += ", retrograde"
    return f"{owner}: {text}" if owner else text


def aspect_title(name1: str, name2: str, mark: AspectMark) -> str:
    """"Sun trine Moon, orb 1.2°, applying" (movement only when known and not static)."""
    text = f"{name1} {mark.aspect} {name2}, orb {mark.orb:.1f}°"
    return f"{text}, {mark.movement}" if mark.movement and mark.movement != "static" else text


def positions_text(chart: Chart) -> str:
    return "; ".join(point_title(chart, k) for k in range(len(chart.points)))


def owned_labels(chart: Chart, owner: str) -> list[str]:
    """Point names with their chart's name, "Alice's Sun", for aspects between two charts."""
    return [f"{owner}'s {point_label(p)}" if owner else point_label(p) for p in chart.points]


def aspects_text(marks: tuple[AspectMark, ...], labels1: list[str], labels2: list[str]) -> str:
    return "; ".join(aspect_title(labels1[m.p1], labels2[m.p2], m) for m in marks) or "none"
