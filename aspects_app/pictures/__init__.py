"""SVG pictures of charts: wheels, bi-wheels and aspect grids, from plain data (no Django).

::

    from aspects_app.pictures import ChartData, SynastryData, render_wheel
    chart = ChartData(points=["Sun", "Moon"], longitudes=[132.57, 25.3], retrograde=[False, False],
                      cusps=None, aspects=calc.natal(lon).to_records(point_names=True), name="Alice")
    svg_text = render_wheel(chart, size=600, theme="light")      # str, an SVG document

Every renderer takes ``size`` (pixels, 200..2000) and ``theme`` (``"light"`` or ``"dark"``), returns the SVG as
text and raises :class:`~aspects_app.engine.errors.FieldError` (a ``ValueError``) naming the argument
(``size``, ``theme``, ``chart.longitudes[3]``, ``synastry.aspects[0].p2`` …) for bad input. The output is
deterministic, self-contained (no scripts, links or web fonts) and accessible: ``role="img"``, a ``<title>`` and
``<desc>`` on the root, and a ``<title>`` on every point, aspect line and grid cell.

The elements are built with `svg.py <https://pypi.org/project/svg.py/>`_: typed dataclasses, one per SVG element
and attribute, so mypy checks the drawing code and no markup is assembled from strings. It has no dependencies
and ships ``py.typed``. drawsvg was the alternative, but its elements take their attributes as untyped
``**kwargs`` and its strengths (animation, rasterising, Jupyter) are not what these pictures need.
"""

from .data import ChartData, SynastryData
from .document import MAX_SIZE, MIN_SIZE
from .grid import render_aspect_grid, render_synastry_grid
from .layout import spread_longitudes
from .theme import THEMES
from .wheel import render_biwheel, render_wheel

__all__ = [
    "MAX_SIZE",
    "MIN_SIZE",
    "THEMES",
    "ChartData",
    "SynastryData",
    "render_aspect_grid",
    "render_biwheel",
    "render_synastry_grid",
    "render_wheel",
    "spread_longitudes",
]
