"""SVG pictures of charts (aspects_app.pictures): well-formed, self-contained, accessible, deterministic, with
the options and the crowding rules honoured, and rasterisable by cairosvg at the size asked for."""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import cairosvg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops

from aspects_app.engine import AspectConfig, MemoryOptimizedVectorizedCalculator
from aspects_app.engine.errors import FieldError
from aspects_app.pictures import (
    THEMES,
    ChartData,
    SynastryData,
    render_aspect_grid,
    render_biwheel,
    render_synastry_grid,
    render_wheel,
    spread_longitudes,
)
from aspects_app.pictures.glyphs import format_position
from aspects_app.pictures.layout import circular_distance

NS = "{http://www.w3.org/2000/svg}"
SAMPLE = json.loads((Path(__file__).parent / "data" / "kerykeion_sample.json").read_text())
PLANETS = ["Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto"]


def sample_chart(index: int, houses: bool = True, name: str = "") -> ChartData:
    """A kerykeion sample chart: its planets, retrograde flags and natal aspects (kerykeion's record shape);
    equal houses from its Ascendant."""
    chart = SAMPLE["charts"][index]
    planets = chart["planets"]
    ascendant = chart["angles"]["Ascendant"]["lon"]
    return ChartData(
        points=PLANETS,
        longitudes=[planets[p]["lon"] for p in PLANETS],
        retrograde=[planets[p]["retrograde"] for p in PLANETS],
        cusps=[(ascendant + 30 * k) % 360 for k in range(12)] if houses else None,
        aspects=chart["natal_aspects"],
        name=name or chart["name"],
    )


def sample_synastry() -> SynastryData:
    pair = SAMPLE["pairs"][0]
    return SynastryData(sample_chart(pair["a"], name="Ann"), sample_chart(pair["b"], name="Ben"),
                        pair["synastry_aspects"])


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{NS}svg"
    return root


def with_class(root: ET.Element, name: str, tag: str | None = None) -> list[ET.Element]:
    return [e for e in root.iter() if name in e.get("class", "").split() and (tag is None or e.tag == NS + tag)]


def title_of(element: ET.Element) -> str:
    found = element.find(f"{NS}title")
    assert found is not None and found.text, f"{element.tag} {element.attrib} has no title"
    return found.text


RENDERERS = [
    ("wheel", lambda size, theme: render_wheel(sample_chart(0), size=size, theme=theme)),
    ("biwheel", lambda size, theme: render_biwheel(sample_synastry(), size=size, theme=theme)),
    ("natal grid", lambda size, theme: render_aspect_grid(sample_chart(0), size=size, theme=theme)),
    ("synastry grid", lambda size, theme: render_synastry_grid(sample_synastry(), size=size, theme=theme)),
]


@pytest.mark.parametrize(("name", "render"), RENDERERS, ids=[n for n, _ in RENDERERS])
def test_a_picture_is_an_accessible_svg_image_of_the_size_asked(name: str, render: Any) -> None:
    root = parse(render(480, "light"))
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("480", "480", "0 0 480 480")
    assert root.get("role") == "img"
    first, second = list(root)[:2]
    assert first.tag == f"{NS}title" and first.text
    assert second.tag == f"{NS}desc" and second.text and len(second.text) > len(first.text)


@pytest.mark.parametrize(("name", "render"), RENDERERS, ids=[n for n, _ in RENDERERS])
def test_a_picture_is_self_contained(name: str, render: Any) -> None:
    text = render(600, "dark")
    root = parse(text)
    for element in root.iter():
        assert element.tag not in {f"{NS}{t}" for t in ("script", "foreignObject", "image", "a", "style", "use")}
        for key, value in element.attrib.items():
            assert not key.lower().startswith("on"), f"event handler {key}"
            assert "href" not in key, f"link {key}={value}"
            assert "url(" not in value and "javascript:" not in value
    assert "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "@import" not in text and "@font-face" not in text


@pytest.mark.parametrize(("name", "render"), RENDERERS, ids=[n for n, _ in RENDERERS])
def test_the_same_input_draws_the_same_picture(name: str, render: Any) -> None:
    assert render(600, "light") == render(600, "light")
    assert render(600, "light") != render(600, "dark")


def test_the_wheel_has_one_glyph_per_point_and_one_line_per_aspect_with_titles() -> None:
    chart = sample_chart(0)
    root = parse(render_wheel(chart))
    groups = with_class(root, "point", "g")
    assert [g.get("data-point") for g in groups] == PLANETS
    assert len(with_class(root, "point-glyph", "text")) == len(PLANETS)
    for group in groups:
        assert len(with_class(group, "point-glyph")) == 1
    planets = SAMPLE["charts"][0]["planets"]
    sun = title_of(groups[0])
    assert sun == f"Sun {format_position(planets['Sun']['lon'])}" and re.fullmatch(r"Sun \d+°\d\d′ \w+", sun)
    retrograde = [title_of(g) for g, p in zip(groups, PLANETS, strict=True) if planets[p]["retrograde"]]
    assert retrograde and all(t.endswith(", retrograde") for t in retrograde)
    lines = with_class(root, "aspect", "line")
    records = SAMPLE["charts"][0]["natal_aspects"]
    assert len(lines) == len(records) > 0
    first = records[0]
    assert title_of(lines[0]) == (
        f"{first['p1']} {first['aspect']} {first['p2']}, orb {first['orb']:.1f}°, {first['movement'].lower()}"
    )
    assert all(re.fullmatch(r"\w+ [a-z-]+ \w+, orb \d+\.\d°(, (applying|separating))?", title_of(e)) for e in lines)


def test_the_sun_title_reads_degrees_minutes_and_sign() -> None:
    root = parse(render_wheel(ChartData(["Sun", "Moon"], [132.57, 12.5666666667], aspects=[("Sun", "Moon", "trine")])))
    assert [title_of(g) for g in with_class(root, "point", "g")] == ["Sun 12°34′ Leo", "Moon 12°34′ Aries"]
    # The orb is computed from the longitudes when not given: 120.0033… − 120.
    assert title_of(with_class(root, "aspect", "line")[0]) == "Sun trine Moon, orb 0.0°"
    assert format_position(29.99999) == "29°59′ Aries"  # floored: not yet in Taurus


def test_majors_and_minors_differ_by_dash_not_only_by_colour() -> None:
    chart = ChartData(["Sun", "Moon", "Venus"], [0.0, 120.5, 150.3],
                      aspects=[("Sun", "Moon", "trine", 0.5), ("Sun", "Venus", "quincunx", 0.3)])
    trine, quincunx = with_class(parse(render_wheel(chart)), "aspect", "line")
    assert trine.get("stroke-dasharray") is None and "major" in trine.get("class", "")
    assert quincunx.get("stroke-dasharray") and "minor" in quincunx.get("class", "")
    assert float(trine.get("stroke-width", 0)) > float(quincunx.get("stroke-width", 0))


def test_the_biwheel_draws_both_charts_and_the_cross_aspects() -> None:
    synastry = sample_synastry()
    root = parse(render_biwheel(synastry))
    groups = with_class(root, "point", "g")
    assert len(groups) == len(with_class(root, "point-glyph", "text")) == 2 * len(PLANETS)
    titles = [title_of(g) for g in groups]
    assert titles[0].startswith("Ann: Sun ") and titles[len(PLANETS)].startswith("Ben: Sun ")
    lines = with_class(root, "aspect", "line")
    assert len(lines) == len(synastry.aspects) > 0
    first = synastry.aspects[0]
    assert isinstance(first, dict)
    assert title_of(lines[0]).startswith(f"Ann's {first['p1']} {first['aspect']} Ben's {first['p2']}, orb ")
    # The outer chart is the second band: its glyphs stand further from the centre than the inner chart's.
    radii = [math.dist((300, 300), (float(g.get("x", 0)), float(g.get("y", 0))))
             for g in with_class(root, "point-glyph", "text")]
    assert min(radii[len(PLANETS):]) > max(radii[: len(PLANETS)])


ANGLES = {"Ascendant": "Asc", "Medium_Coeli": "MC"}
ANGLED = 3  # a sample chart whose Ascendant and MC both have major aspects
MAJOR_ORBS = {"conjunction": 8.0, "opposition": 8.0, "trine": 7.0, "square": 6.0, "sextile": 5.0}


def chart_with_angles(index: int, cusps: str | None = "equal") -> tuple[ChartData, list[dict[str, Any]]]:
    """A kerykeion sample chart's planets and angles with the engine's natal aspects among all twelve (by point
    index); ``cusps``: equal houses from the Ascendant, whole signs (cusp 1 at the start of the Ascendant's sign,
    not on it) or none."""
    chart = SAMPLE["charts"][index]
    longitudes = [chart["planets"][p]["lon"] for p in PLANETS] + [chart["angles"][a]["lon"] for a in ANGLES]
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.from_orbs(MAJOR_ORBS), backend="numpy")
    records = calc.natal(np.array([longitudes])).to_records()
    first = {"equal": longitudes[10], "whole_sign": longitudes[10] // 30 * 30}.get(cusps or "")
    houses = None if first is None else [(first + 30 * k) % 360 for k in range(12)]
    return ChartData([*PLANETS, *ANGLES], longitudes, cusps=houses, aspects=records), records


def line_ends(line: ET.Element) -> list[tuple[float, float]]:
    return [(float(line.get(f"x{k}", 0)), float(line.get(f"y{k}", 0))) for k in (1, 2)]


def test_with_houses_the_angles_are_axes_with_one_label_each_and_their_aspects_end_on_them() -> None:
    chart, records = chart_with_angles(ANGLED)
    root = parse(render_wheel(chart))
    # One glyph per point that is not an angle, one axis label per angle.
    assert [g.get("data-point") for g in with_class(root, "point", "g")] == PLANETS
    assert len(with_class(root, "point-glyph", "text")) == len(PLANETS)
    angles = with_class(root, "angle", "g")
    assert [g.get("data-point") for g in angles] == list(ANGLES)
    assert [t.text for t in with_class(root, "axis-label", "text")] == list(ANGLES.values())
    angles_lon = SAMPLE["charts"][ANGLED]["angles"]
    assert [title_of(g) for g in angles] == [
        f"Ascendant {format_position(angles_lon['Ascendant']['lon'])}",
        f"Medium Coeli {format_position(angles_lon['Medium_Coeli']['lon'])}",
    ]
    # Still one line per aspect, those of the angles included, ending where the angle's axis starts.
    lines = with_class(root, "aspect", "line")
    assert len(lines) == len(records)
    for number, group in enumerate(angles, start=len(PLANETS)):
        (axis,) = with_class(group, "angle-axis", "line")
        foot = line_ends(axis)[0]
        own = [line for line, r in zip(lines, records, strict=True) if number in (r["p1"], r["p2"])]
        assert own, f"no aspect to {group.get('data-point')} in the sample"
        assert all(min(math.dist(foot, end) for end in line_ends(line)) < 0.01 for line in own)
    # Equal houses start at the Ascendant: its axis lies over the first cusp's.
    ascendant_cusp = with_class(root, "axis", "line")[0]
    axis_ends = line_ends(with_class(angles[0], "angle-axis", "line")[0])
    assert all(math.dist(a, c) < 0.01 for a, c in zip(axis_ends, line_ends(ascendant_cusp), strict=True))


def test_angles_apart_from_their_cusps_keep_their_own_axis_and_label() -> None:
    chart, _ = chart_with_angles(ANGLED, cusps="whole_sign")
    root = parse(render_wheel(chart))
    ascendant = with_class(with_class(root, "angle", "g")[0], "angle-axis", "line")[0]
    first_cusp = with_class(root, "axis", "line")[0]
    assert title_of(first_cusp).startswith("House 1 cusp (Ascendant)")
    assert math.dist(line_ends(ascendant)[1], line_ends(first_cusp)[1]) > 10  # another longitude
    assert [t.text for t in with_class(root, "axis-label", "text")] == ["Asc", "MC"]  # the cusps' are not repeated
    # A chart without angle points labels the Ascendant's and MC's cusps instead.
    plain = parse(render_wheel(sample_chart(0)))
    assert not with_class(plain, "angle", "g")
    assert [t.text for t in with_class(plain, "axis-label", "text")] == ["Asc", "MC"]


def test_without_houses_the_angles_are_points_with_labels_as_narrow_as_a_glyph() -> None:
    chart, records = chart_with_angles(ANGLED, cusps=None)
    root = parse(render_wheel(chart))
    assert [g.get("data-point") for g in with_class(root, "point", "g")] == [*PLANETS, *ANGLES]
    assert not with_class(root, "angle", "g") and not with_class(root, "axis-label", "text")
    assert len(with_class(root, "aspect", "line")) == len(records)
    glyphs = with_class(root, "point-glyph", "text")
    sun_font = float(glyphs[0].get("font-size", 0))
    for glyph, label in zip(glyphs[len(PLANETS) :], ANGLES.values(), strict=True):
        assert (glyph.text or "").strip() == label
        # Two or three letters in about the width of one symbol (in DejaVu capitals are at most ~0.86 em wide,
        # these lower-case letters ~0.55 em).
        ems = sum(0.86 if letter.isupper() else 0.55 for letter in label)
        assert float(glyph.get("font-size", 0)) * ems <= 1.2 * sun_font


def ink_box(image: Image.Image, box: tuple[int, int, int, int], background: tuple[int, ...]) -> tuple[int, ...]:
    """The bounding box, relative to ``box``, of the pixels in ``box`` that differ from ``background``."""
    crop = image.crop(box)
    mask = Image.eval(ImageChops.difference(crop, Image.new("RGB", crop.size, background)).convert("L"),
                      lambda v: 255 if v > 40 else 0)
    found = mask.getbbox()
    assert found is not None, "nothing drawn there"
    return tuple(found)


@pytest.mark.parametrize("size", [400, 800])
def test_letter_labels_fit_inside_their_grid_cells(size: int) -> None:
    chart, _ = chart_with_angles(ANGLED, cusps=None)
    svg_text = render_aspect_grid(chart, size=size)
    image = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg_text.encode()))).convert("RGB")
    background = tuple(int(THEMES["light"].background.lstrip("#")[k : k + 2], 16) for k in (0, 2, 4))
    headers = {g.get("data-point"): with_class(g, "header", "rect")[0] for g in with_class(parse(svg_text), "point")}
    for name in ANGLES:
        rect = headers[name]
        x, y, cell = float(rect.get("x", 0)), float(rect.get("y", 0)), float(rect.get("width", 0))
        # The cell's inside, clear of its border; the label's ink must keep a margin from it on every side.
        inset = 3
        box = (math.ceil(x) + inset, math.ceil(y) + inset, math.floor(x + cell) - inset, math.floor(y + cell) - inset)
        left, top, right, bottom = ink_box(image, box, background)
        width, height = box[2] - box[0], box[3] - box[1]
        margin = 0.06 * cell
        assert left >= margin and top >= margin and width - right >= margin and height - bottom >= margin, name


def glyph_positions(root: ET.Element) -> list[tuple[float, float]]:
    return [(float(e.get("x", 0)), float(e.get("y", 0))) for e in with_class(root, "point-glyph", "text")]


def test_the_ascendant_is_on_the_left_and_without_houses_aries_is() -> None:
    chart = sample_chart(0)
    root = parse(render_wheel(chart, size=600))
    ascendant = with_class(root, "axis", "line")[0]
    assert title_of(ascendant).startswith("House 1 cusp (Ascendant)")
    x_outer, y_outer = float(ascendant.get("x2", 0)), float(ascendant.get("y2", 0))
    assert x_outer < 50 and abs(y_outer - 300) < 0.01
    aries = ChartData(["Sun"], [0.0])
    ((x, y),) = glyph_positions(parse(render_wheel(aries, size=600)))
    assert x < 150 and abs(y - (300 + 0.36 * 0.042 * 600)) < 0.01  # centred on the horizontal


def test_a_crowded_chart_keeps_glyphs_and_text_apart_in_order_with_leader_lines() -> None:
    longitudes = [100.0 + 0.5 * k for k in range(10)]  # ten points within 5°
    root = parse(render_wheel(ChartData(PLANETS, longitudes, retrograde=[True] * 10), size=600))
    glyphs = with_class(root, "point-glyph", "text")
    font = float(glyphs[0].get("font-size", 0))
    positions = glyph_positions(root)
    for k in range(len(positions)):
        for m in range(k):
            assert math.dist(positions[k], positions[m]) >= 1.05 * font
    for row in ("point-degrees", "point-minutes"):
        texts = with_class(root, row, "text")
        size = float(texts[0].get("font-size", 0))
        spots = [(float(t.get("x", 0)), float(t.get("y", 0))) for t in texts]
        # Three characters of about 0.6 em each, laid along the circle.
        assert all(math.dist(spots[k], spots[k - 1]) >= 1.8 * size for k in range(1, len(spots)))
    # Screen angles (counter-clockwise, y up) increase as the longitudes do: the order is kept.
    angles = [math.degrees(math.atan2(300 - y, x - 300)) % 360 for x, y in positions]
    steps = [(b - a) % 360 for a, b in itertools.pairwise(angles)]
    assert all(0 < step < 90 for step in steps)
    assert len(with_class(root, "leader", "line")) >= 8  # the outer ones moved far; the middle ones may not


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=359.99, allow_nan=False), min_size=1, max_size=30),
    st.floats(min_value=1.0, max_value=30.0),
)
def test_spreading_keeps_order_and_separation_and_moves_nothing_needlessly(lons: list[float], gap: float) -> None:
    shown = spread_longitudes(lons, gap)
    need = min(gap, 360.0 / len(lons))
    order = sorted(range(len(lons)), key=lambda k: (lons[k], k))
    ring = [shown[k] for k in order]
    for k in range(len(ring)):
        assert circular_distance(ring[k], ring[k - 1]) >= need - 1e-6 or len(ring) == 1
    # Circular order: walking the ring from the first shown point, the steps add up to one turn at most.
    steps = [(ring[(k + 1) % len(ring)] - ring[k]) % 360.0 for k in range(len(ring))]
    assert len(ring) == 1 or abs(sum(steps) - 360.0) < 1e-6
    spaced = all(circular_distance(a, b) >= gap for i, a in enumerate(lons) for b in lons[:i])
    if spaced:
        assert shown == pytest.approx([lon % 360 for lon in lons], abs=1e-9)


def test_spreading_a_nearly_full_circle_spaces_it_evenly_in_order() -> None:
    # Cut at its widest gap and spread, this circle's two ends would overlap across the cut.
    lons = [23.1, 90.0, 114.2, 115.3, 140.9, 143.5, 164.1, 216.5, 280.1, 282.6, 320.8]
    shown = spread_longitudes(lons, 40.0)
    step = 360.0 / len(lons)
    assert all(circular_distance(a, b) == pytest.approx(step) for a, b in itertools.pairwise(shown))
    assert circular_distance(shown[-1], shown[0]) == pytest.approx(step)


def test_the_natal_grid_has_one_cell_per_pair_and_a_glyph_per_aspect() -> None:
    chart = sample_chart(0)
    root = parse(render_aspect_grid(chart))
    count = len(PLANETS)
    assert len(with_class(root, "point-glyph", "text")) == count
    cells = with_class(root, "pair", "g")
    assert len(cells) == len(with_class(root, "cell", "rect")) == count * (count - 1) // 2
    records = SAMPLE["charts"][0]["natal_aspects"]
    assert len(with_class(root, "aspect-glyph")) == len(with_class(root, "orb", "text")) == len(records)
    titles = {title_of(c) for c in cells}
    assert all(
        any(t.startswith(f"{r['p1']} {r['aspect']} {r['p2']}, orb {r['orb']:.1f}°") for t in titles) for r in records
    )
    assert sum(t.endswith(": no aspect") for t in titles) == len(cells) - len(records)


def test_the_synastry_grid_is_the_full_table_rows_a_columns_b() -> None:
    synastry = sample_synastry()
    root = parse(render_synastry_grid(synastry, theme="dark"))
    assert len(with_class(root, "cell", "rect")) == len(PLANETS) ** 2
    assert len(with_class(root, "point-glyph", "text")) == 2 * len(PLANETS)
    assert len(with_class(root, "aspect-glyph")) == len(synastry.aspects)
    cells = with_class(root, "pair", "g")
    # Row-major: cell (row r, column c) is A's point r against B's point c.
    assert title_of(cells[1]).startswith("Ann's Sun ") and "Ben's Moon" in title_of(cells[1])
    assert title_of(cells[len(PLANETS)]).startswith("Ann's Moon ") and "Ben's Sun" in title_of(cells[len(PLANETS)])


def test_engine_records_draw_directly() -> None:
    calc = MemoryOptimizedVectorizedCalculator(config=AspectConfig.from_orbs({"trine": 8, "square": 6}),
                                               backend="numpy")
    lon = np.array([[10.0, 130.0, 100.0, 250.0]])
    points = PLANETS[:4]
    for records in (calc.natal(lon).to_records(), calc.natal(lon).to_records(point_names=True)):
        root = parse(render_wheel(ChartData(points, lon[0].tolist(), aspects=records)))
        assert len(with_class(root, "aspect", "line")) == len(records) > 0


def test_numpy_arrays_from_the_engine_and_the_ephemeris_are_accepted() -> None:
    lon = np.array([10.0, 130.0, 250.0])
    chart = ChartData(np.array(PLANETS[:3]), lon, retrograde=[False, True, False],
                      cusps=np.arange(12) * 30.0 + 5.0, aspects=[(0, 1, "trine"), (1, 2, "trine")])
    assert parse(render_wheel(chart)) is not None
    with pytest.raises(FieldError) as caught:
        render_wheel(ChartData(PLANETS[:3], lon.reshape(1, 3)))
    assert caught.value.field == "chart.longitudes"


@pytest.mark.parametrize("size", [199, 2001, 0, -600, 600.0, True, "600", None])
def test_a_bad_size_is_refused_by_name(size: object) -> None:
    for _, render in RENDERERS:
        with pytest.raises(ValueError, match="size") as caught:
            render(size, "light")
        assert isinstance(caught.value, FieldError) and caught.value.field == "size"


@pytest.mark.parametrize("theme", ["blue", "", "Light", None, 1])
def test_a_bad_theme_is_refused_by_name(theme: object) -> None:
    for _, render in RENDERERS:
        with pytest.raises(FieldError, match="theme") as caught:
            render(600, theme)
        assert caught.value.field == "theme"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"longitudes": [float("nan"), 1.0]}, "chart.longitudes[0]"),
        ({"longitudes": [1.0]}, "chart.longitudes"),
        ({"longitudes": [1.0, "2"]}, "chart.longitudes[1]"),
        ({"points": ["Sun", "Sun"]}, "chart.points"),
        ({"points": []}, "chart.points"),
        ({"retrograde": [True]}, "chart.retrograde"),
        ({"retrograde": [1, 0]}, "chart.retrograde"),
        ({"cusps": [0.0] * 11}, "chart.cusps"),
        ({"cusps": [0.0] * 11 + [math.inf]}, "chart.cusps[11]"),
        ({"aspects": [("Sun", "Pluto", "trine")]}, "chart.aspects[0].p2"),
        ({"aspects": [("Sun", "Moon", "trine"), ("Moon", "Sun", "square")]}, "chart.aspects[1]"),
        ({"aspects": [("Sun", "Sun", "trine")]}, "chart.aspects[0]"),
        ({"aspects": [("Sun", "Moon", "novile")]}, "chart.aspects[0].aspect"),
        ({"aspects": [("Sun", "Moon", "trine", -1.0)]}, "chart.aspects[0].orb"),
        ({"aspects": [{"p1": 0, "p2": 5, "aspect": "trine"}]}, "chart.aspects[0].p2"),
        ({"aspects": [{"p1": 0, "aspect": "trine"}]}, "chart.aspects[0]"),
    ],
)
def test_bad_chart_data_is_refused_by_field(changes: dict[str, Any], field: str) -> None:
    data = {"points": ["Sun", "Moon"], "longitudes": [10.0, 130.0], **changes}
    with pytest.raises(FieldError) as caught:
        render_wheel(ChartData(**data))
    assert caught.value.field == field


def test_synastry_aspects_name_a_point_of_each_side() -> None:
    a = ChartData(["Sun"], [0.0])
    b = ChartData(["Moon"], [120.0])
    assert "aspect" in render_biwheel(SynastryData(a, b, [("Sun", "Moon", "trine")]))
    with pytest.raises(FieldError) as caught:
        render_synastry_grid(SynastryData(a, b, [("Moon", "Sun", "trine")]))
    assert caught.value.field == "synastry.aspects[0].p1"


def test_names_are_escaped_not_markup() -> None:
    name = '<script>alert("x")</script> & co'
    root = parse(render_wheel(ChartData([name], [10.0], name=name)))
    assert not with_class(root, "script") and all(e.tag != f"{NS}script" for e in root.iter())
    assert title_of(root).endswith(name)
    assert with_class(root, "point", "g")[0].get("data-point") == name


@pytest.mark.parametrize(("name", "render"), RENDERERS, ids=[n for n, _ in RENDERERS])
@pytest.mark.parametrize("theme", sorted(THEMES))
def test_cairosvg_rasterises_every_picture_at_its_size_in_its_theme(name: str, render: Any, theme: str) -> None:
    png = cairosvg.svg2png(bytestring=render(320, theme).encode())
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (320, 320)
    background = THEMES[theme].background.lstrip("#")
    assert image.getpixel((1, 1)) == tuple(int(background[k : k + 2], 16) for k in (0, 2, 4))
    colours = image.getcolors(maxcolors=320 * 320)
    assert colours is not None and len(colours) > 20  # something was drawn: glyphs, lines, tints
