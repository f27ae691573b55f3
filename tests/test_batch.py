"""aspects_app.batch on its own (the command and the job API are tested through it elsewhere): the spec's
checks and their fields, selections, populations, the mode table, block counting, writers, and results."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aspects_app import batch, results
from aspects_app.engine import AspectHits
from aspects_app.engine.errors import FieldError
from aspects_app.models import AspectResult, Chart

from .conftest import ChartFactory

pytestmark = pytest.mark.django_db


def spec(**changes: Any) -> batch.JobSpec:
    return batch.JobSpec(**{"modes": ["natal"], "group_a": [1], "backend": "numpy", **changes})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"modes": []}, "modes"),
        ({"modes": ["horoscope"]}, "modes"),
        ({"modes": ["scores"]}, "modes"),  # scores need a file
        ({"output": "{tmp}/out.xml"}, "file_format"),
        ({"output": "{tmp}/out.npz"}, "file_format"),
        ({"modes": ["natal", "top-k"], "output": "{tmp}/out.csv"}, "output"),
        ({"output": "/nonexistent/out.csv"}, "output"),
        ({"k": 0}, "k"),
        ({"working_memory_mb": float("nan")}, "working_memory_mb"),
        ({"working_memory_mb": -1.0}, "working_memory_mb"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"orbs": "tight"}, "orbs"),
        ({"aspects": ["trigon"]}, "aspects"),
    ],
)
def test_a_bad_spec_names_its_field(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    if isinstance(changes.get("output"), str):
        changes["output"] = changes["output"].replace("{tmp}", str(tmp_path))
    with pytest.raises(FieldError) as raised:
        spec(**changes)
    assert raised.value.field == field
    assert raised.value.message in str(raised.value)


def test_a_spec_survives_its_parameters() -> None:
    original = spec(modes=["top-k", "natal"], group_b=[2, 3], k=4, orbs={"trine": 6.0}, aspects=["trine"])
    assert batch.JobSpec.from_parameters(original.to_parameters()) == original


def test_selection_errors_name_the_callers_field(make_chart: ChartFactory) -> None:
    charts = [make_chart() for _ in range(3)]
    ids = [c.pk for c in charts]
    assert batch.Selection(ids=ids).resolve("group_a") == sorted(ids)
    with pytest.raises(FieldError) as raised:
        batch.Selection(ids=[*ids, 999_999]).resolve("group_b")
    assert raised.value.field == "group_b" and "999999" in raised.value.message
    with pytest.raises(FieldError, match="no charts owned by 'nobody'") as raised:
        batch.Selection(owner="nobody").resolve("group_a")
    assert raised.value.field == "group_a"
    with pytest.raises(FieldError, match="selection is empty") as raised:
        batch.Selection(ids=None, changed_since=datetime(2999, 1, 1, tzinfo=UTC)).resolve("group_b")
    assert raised.value.field == "group_b"


def test_a_population_keeps_the_given_order_and_refuses_mixed_points(make_chart: ChartFactory) -> None:
    charts = [make_chart() for _ in range(3)]
    order = [charts[2].pk, charts[0].pk, charts[1].pk]
    population = batch.load_population(order, "group_a")
    assert population.ids.tolist() == order
    np.testing.assert_array_equal(population.longitudes[0], charts[2].longitude_array)
    assert population.speeds is not None
    other = make_chart(points=("Sun", "Moon"))
    with pytest.raises(FieldError) as raised:
        batch.load_population([*order, other.pk], "group_b")
    assert raised.value.field == "group_b"
    Chart.objects.filter(pk=charts[0].pk).delete()
    with pytest.raises(FieldError, match="deleted since the run started"):
        batch.load_population(order, "group_a")


def test_every_mode_has_one_row_in_the_mode_table() -> None:
    assert set(batch.MODE_TABLE) == set(batch.MODES) == set(batch.OPERATIONS)


def test_units_count_each_unordered_pair_once_within_one_group(make_chart: ChartFactory) -> None:
    ids = [make_chart().pk for _ in range(20)]
    computation = batch.Computation(spec(modes=["synastry"], group_a=ids))
    a, b = computation.load_groups()
    whole = computation.block(a, b)
    assert computation.units("synastry", whole) == 20 * 19 // 2
    assert computation.units("top-k", whole) == 20 * 20
    assert computation.units("natal", whole) == 20
    halves = [computation.block(a, b, slice(0, 7)), computation.block(a, b, slice(7, 20))]
    assert sum(computation.units("synastry", block) for block in halves) == 20 * 19 // 2


def test_the_estimate_counts_units_as_the_run_does(make_chart: ChartFactory) -> None:
    ids = [make_chart().pk for _ in range(30)]
    report = batch.calibrate(spec(modes=["natal", "synastry", "top-k"], group_a=ids))
    assert report["modes"]["natal"]["units"] == 30
    assert report["modes"]["synastry"]["units"] == 30 * 29 // 2  # each unordered pair once, as the run counts
    assert report["modes"]["top-k"]["units"] == 30 * 30
    assert report["modes"]["synastry"]["units_per_second"] > 0


def test_block_slices_cover_the_rows_and_give_workers_enough_blocks(make_chart: ChartFactory) -> None:
    ids = [make_chart().pk for _ in range(200)]
    computation = batch.Computation(spec(group_a=ids))
    a, b = computation.load_groups()
    for min_blocks in (1, 8):
        slices = computation.block_slices("natal", a, b, min_blocks=min_blocks)
        covered = [r for s in slices for r in range(s.start, s.stop)]
        assert covered == list(range(200))
        assert len(slices) >= min(min_blocks, 200 // batch.job.MIN_BLOCK_ROWS)
    assert computation.block_slices("natal", a, b, first_row=150)[0].start == 150


def test_the_database_writer_stores_pairs_without_aspects_too(make_chart: ChartFactory) -> None:
    ids = [make_chart().pk for _ in range(6)]
    computation = batch.Computation(spec(modes=["synastry"], group_a=ids))
    a, b = computation.load_groups()
    writer = batch.DatabaseWriter(computation.config.config_hash(), "discepolo", None)
    done = computation.compute_block("synastry", computation.block(a, b), writer)
    assert done.units == done.rows_written == 6 * 5 // 2
    assert AspectResult.objects.filter(kind="synastry").count() == 15
    stored = sum(len(AspectHits.from_bytes(bytes(p))) for p in AspectResult.objects.values_list("payload", flat=True))
    assert stored == done.hits


def test_a_file_writer_cuts_a_resumed_file_back_to_the_recorded_length(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    partial = output.with_name("out.jsonl.partial")
    partial.write_bytes(b'{"kept": 1}\n{"written after the last record": 2}\n')
    writer = batch.FileWriter(spec(output=str(output)), "natal", resume_bytes=len(b'{"kept": 1}\n'))
    writer.close()
    assert output.read_bytes() == b'{"kept": 1}\n'
    assert not partial.exists()


def test_results_are_upserted_and_stamped_with_their_charts_positions(make_chart: ChartFactory) -> None:
    x, y = make_chart(), make_chart()
    row = results.result_row("synastry", x.pk, y.pk, "cfg", b"first", 1)
    results.save_results([row])
    results.save_results([results.result_row("synastry", x.pk, y.pk, "cfg", b"second", 2)])
    stored = AspectResult.objects.get()
    assert (bytes(stored.payload), stored.hit_count) == (b"second", 2)
    assert stored.positions_hash == results.combined_positions_hash(x.positions_hash, y.positions_hash)
    assert results.stored_payload("synastry", x, y, "cfg") == b"second"
    x.set_positions(x.points, (x.longitude_array + 1.0) % 360.0, x.speed_array)
    x.save()
    assert results.stored_payload("synastry", x, y, "cfg") is None  # computed from positions x no longer has


def test_a_batch_run_has_a_calculator_of_its_own(make_chart: ChartFactory) -> None:
    """A run resets, closes and may fall back on its calculator: none of that may reach the requests' warm one."""
    from aspects_app import calculators

    ids = [make_chart().pk for _ in range(4)]
    computation = batch.Computation(spec(group_a=ids))
    shared = calculators.calculator(computation.config, "numpy", computation.spec.working_memory_mb)
    assert computation.calculator is not shared


def test_the_estimate_scales_time_with_the_rows_computed(make_chart: ChartFactory) -> None:
    ids = [make_chart().pk for _ in range(40)]
    report = batch.calibrate(spec(modes=["synastry"], group_a=ids), sample_rows=40)["modes"]["synastry"]
    # The whole population was the sample: the estimate is the sample's time, whatever the units count.
    assert report["estimated_seconds"] == pytest.approx(report["units"] / report["units_per_second"])
    assert report["units"] == 40 * 39 // 2


def test_groups_with_different_points_fail_before_a_run_exists(make_chart: ChartFactory) -> None:
    a = [make_chart().pk for _ in range(3)]
    b = [make_chart(points=("Sun", "Moon")).pk for _ in range(3)]
    with pytest.raises(FieldError) as raised:
        batch.check_plan(spec(modes=["synastry"], group_a=a, group_b=b))
    assert raised.value.field == "group_b"


def test_bulk_writes_keep_a_stored_compute_time(make_chart: ChartFactory) -> None:
    x = make_chart()
    results.save_results([results.result_row("natal", x.pk, x.pk, "cfg", b"timed", 1, duration_ms=12.5)], timed=True)
    results.save_results([results.result_row("natal", x.pk, x.pk, "cfg", b"bulk", 1)])
    stored = AspectResult.objects.get()
    assert bytes(stored.payload) == b"bulk"
    assert stored.duration_ms == 12.5
