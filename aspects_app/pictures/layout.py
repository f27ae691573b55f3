"""Where things go on a wheel: the dial (longitude -> screen point) and glyphs spread apart when crowded.

Spreading is the least-squares problem "move each glyph as little as possible so that neighbours around the
circle stand at least ``min_separation`` apart, keeping their order". Cut the circle at its widest gap and it is
linear; with ``z_i = y_i − i·d`` the constraint ``y_{i+1} − y_i ≥ d`` becomes ``z`` non-decreasing, which is
isotonic regression, solved exactly by the pool-adjacent-violators algorithm (PAVA) in linear time. SciPy has
it (``scipy.optimize.isotonic_regression``), but SciPy is not a dependency of the package and this is fifteen
lines, so it is written here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def isotonic(values: Sequence[float]) -> list[float]:
    """The non-decreasing sequence nearest to ``values`` in least squares (equal weights), by PAVA."""
    blocks: list[list[float]] = []  # [mean, count] of pooled runs
    for value in values:
        blocks.append([float(value), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            previous = blocks[-1]
            total = previous[1] + count
            previous[0] = (previous[0] * previous[1] + mean * count) / total
            previous[1] = total
    fitted: list[float] = []
    for mean, count in blocks:
        fitted.extend([mean] * int(count))
    return fitted


def circular_distance(a: float, b: float) -> float:
    gap = abs(a - b) % 360.0
    return min(gap, 360.0 - gap)


def spread_longitudes(longitudes: Sequence[float], min_separation: float) -> list[float]:
    """Display longitudes (same order as given, in [0, 360)) at least ``min_separation`` apart around the circle,
    in the same circular order as the true ones and as near to them as that allows. When the circle cannot hold
    them all at that separation they are spaced evenly."""
    count = len(longitudes)
    if count < 2:
        return [lon % 360.0 for lon in longitudes]
    separation = min(min_separation, 360.0 / count)
    # Ties keep the order given, so the result is deterministic.
    order = sorted(range(count), key=lambda k: (longitudes[k] % 360.0, k))
    ordered = [longitudes[k] % 360.0 for k in order]
    gaps = [(ordered[(k + 1) % count] - ordered[k]) % 360.0 for k in range(count)]
    widest = max(range(count), key=lambda k: (gaps[k], -k))
    start = (widest + 1) % count
    indices = [order[(start + k) % count] for k in range(count)]
    unrolled = [ordered[(start + k) % count] for k in range(count)]
    for k in range(1, count):
        while unrolled[k] < unrolled[k - 1]:
            unrolled[k] += 360.0
    fitted = isotonic([lon - k * separation for k, lon in enumerate(unrolled)])
    shown = [z + k * separation for k, z in enumerate(fitted)]
    if shown[0] + 360.0 - shown[-1] < separation - 1e-9:
        # The ends met across the cut: space evenly, centred on the true positions.
        step = 360.0 / count
        offset = sum(lon - k * step for k, lon in enumerate(unrolled)) / count
        shown = [offset + k * step for k in range(count)]
    result = [0.0] * count
    for index, lon in zip(indices, shown, strict=True):
        result[index] = lon % 360.0
    return result


@dataclass(frozen=True)
class Dial:
    """Maps ecliptic longitude and radius to picture coordinates: longitudes run counter-clockwise, and
    ``left`` is the longitude shown at nine o'clock (the Ascendant when houses are known, else 0° Aries)."""

    cx: float
    cy: float
    left: float

    def angle(self, longitude: float) -> float:
        """Radians counter-clockwise from three o'clock."""
        return math.radians(180.0 + longitude - self.left)

    def point(self, longitude: float, radius: float) -> tuple[float, float]:
        a = self.angle(longitude)
        return self.cx + radius * math.cos(a), self.cy - radius * math.sin(a)
