"""Where a batch mode's results go: the database (through :mod:`aspects_app.results`), JSON Lines or CSV files,
or a dense ``.npz`` score matrix. File writers write to a partial file that is renamed into place when the mode
completes, and report their length after each block so that a resumed run cuts off what an interrupted block
wrote. Putting a complete file in place (:func:`finish_output`) can be repeated after a crash at any of its steps:
it never opens the output for writing, so it cannot truncate a finished file or start an empty one. Nor does a
resumed mode whose partial file is gone: that file held the recorded blocks' rows, and a new empty one would
lose them under a run reported done (:func:`missing_partial`)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from django.db import transaction

from .. import results
from ..engine import AspectHits, ChartPatterns, TopK, TransitEvents
from ..engine.aspects import ASPECT_NAMES
from ..engine.hits import MOVEMENTS
from ..models import AspectResult, Match
from .population import Block, Population
from .spec import BatchError, JobSpec


class Writer:
    """Where a mode's results go; ``block()`` wraps one block's writes and its progress record."""

    def block(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def write_hits(self, hits: AspectHits, block: Block, natal: bool) -> int:
        raise BatchError("this output does not take aspect hits")

    def write_scores(self, values: npt.NDArray[Any], block: Block) -> int:
        raise BatchError("this output does not take score matrices")

    def write_matches(self, best: TopK, block: Block) -> int:
        raise BatchError("this output does not take matches")

    def write_transits(self, events: TransitEvents, block: Block) -> int:
        raise BatchError("this output does not take transit events")

    def write_patterns(self, found: ChartPatterns, block: Block) -> int:
        raise BatchError("this output does not take aspect patterns")

    def flush(self) -> int:
        """Make the written data durable; returns the output's length to record (files)."""
        return 0

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class DatabaseWriter(Writer):
    """AspectResult rows (one per chart or pair, upserted), Match lists (k rows per chart, replaced) and transit
    events (the block's charts' events of the run's ``transit_window``, replaced)."""

    def __init__(
        self,
        config_hash: str,
        method: str,
        run_id: int | None,
        transit_window: tuple[datetime, datetime] | None = None,
    ) -> None:
        self.config_hash = config_hash
        self.method = method
        self.run_id = run_id
        self.transit_window = transit_window

    def block(self) -> contextlib.AbstractContextManager[Any]:
        return transaction.atomic()

    def write_hits(self, hits: AspectHits, block: Block, natal: bool) -> int:
        kind = AspectResult.Kind.NATAL if natal else AspectResult.Kind.SYNASTRY
        rows, a, b = block.rows, block.a, block.b
        width = len(b.ids)
        parts = hits.split()
        local_rows = range(rows.stop - rows.start)
        if natal:
            pairs = [(r, rows.start + r) for r in local_rows]
        elif block.within_one_group:
            pairs = [(r, c) for r in local_rows for c in range(rows.start + r + 1, width)]
        else:
            pairs = [(r, c) for r in local_rows for c in range(width)]
        # A chart (pair) without aspects is stored too, so that it is known to have none.
        empty = AspectHits.empty(hits.points, natal)
        rows_out = []
        for local, column in pairs:
            picked = parts.get(local if natal else (local, column), empty)
            partner = a.ids[column] if natal else b.ids[column]
            rows_out.append(
                results.result_row(
                    kind,
                    int(a.ids[rows.start + local]),
                    int(partner),
                    self.config_hash,
                    picked.to_bytes(),
                    len(picked),
                )
            )
        return results.save_results(rows_out)

    def write_matches(self, best: TopK, block: Block) -> int:
        matches = [
            Match(
                chart_id=chart,
                partner_id=partner,
                rank=rank,
                score=float(score),
                method=self.method,
                config_hash=self.config_hash,
                run_id=self.run_id,
            )
            for chart, rank, partner, score in _match_rows(best, block)
        ]
        return results.replace_matches(block.a.ids[block.rows].tolist(), self.method, self.config_hash, matches)

    def write_transits(self, events: TransitEvents, block: Block) -> int:
        if self.transit_window is None:
            raise BatchError("transit events need the run's range")
        rows = _transit_rows(events, block)
        chart_ids = block.a.ids[block.rows].tolist()
        return results.replace_transit_events(chart_ids, self.config_hash, *self.transit_window, rows, self.run_id)


def _transit_rows(events: TransitEvents, block: Block) -> list[list[Any]]:
    """(chart, point, body, aspect, exact, starts, ends, retrograde) of each event; moments aware UTC or None."""
    charts = block.a.ids[block.rows][events.i].tolist()
    records = events.to_records(point_names=True)
    return [
        [chart, r["point"], r["body"], r["aspect"], r["exact"], r["starts"], r["ends"], r["retrograde"]]
        for chart, r in zip(charts, records, strict=True)
    ]


def _match_rows(best: TopK, block: Block) -> list[list[Any]]:
    """(chart, rank from 1, partner, score) of each chart's list."""
    partners = block.b.ids[best.indices].tolist()
    charts = block.a.ids[block.rows].tolist()
    return [
        [chart, rank + 1, partner, score]
        for chart, row_partners, row_scores in zip(charts, partners, best.scores.tolist(), strict=True)
        for rank, (partner, score) in enumerate(zip(row_partners, row_scores, strict=True))
    ]


class FileWriter(Writer):
    """JSON Lines or CSV, written to ``PATH.partial`` and renamed into place when the mode completes."""

    def __init__(self, spec: JobSpec, mode: str, resume_bytes: int) -> None:
        self.path = Path(spec.output)
        self.partial = _text_partial(self.path)
        self.format = spec.file_format
        self.mode = mode
        exists = self.partial.exists()
        if not exists and resume_bytes > 0:
            raise missing_partial(self.partial, mode)
        self.handle = open(self.partial, "r+b" if exists else "wb")  # noqa: SIM115 - closed in close()/abort()
        # Resuming: cut whatever the interrupted block wrote after the last recorded length.
        self.handle.truncate(resume_bytes if exists else 0)
        self.handle.seek(0, io.SEEK_END)
        if self.handle.tell() == 0 and self.format == "csv":
            self._write_csv([self._header()])

    def _header(self) -> list[str]:
        if self.mode == "top-k":
            return ["chart", "rank", "partner", "score"]
        if self.mode == "scores":
            return ["chart_a", "chart_b", "score"]
        if self.mode == "transits":
            return ["chart", "point", "body", "aspect", "exact", "starts", "ends", "retrograde"]
        if self.mode == "patterns":
            return ["chart", "pattern", "points"]
        head = ["chart"] if self.mode == "natal" else ["chart_a", "chart_b"]
        return [*head, "p1", "p2", "aspect", "orb", "movement"]

    def _write_rows(self, rows: list[list[Any]]) -> int:
        if self.format == "csv":
            self._write_csv(rows)
        else:
            keys = self._header()
            self.handle.write("".join(json.dumps(dict(zip(keys, row, strict=True))) + "\n" for row in rows).encode())
        return len(rows)

    def _write_csv(self, rows: list[list[Any]]) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        self.handle.write(text.getvalue().encode())

    def write_hits(self, hits: AspectHits, block: Block, natal: bool) -> int:
        points = np.asarray(hits.points, dtype=object)
        chart_a = block.a.ids[block.rows][hits.i].tolist()
        charts = [chart_a] if hits.j is None else [chart_a, block.b.ids[hits.j].tolist()]
        columns = [
            *charts,
            points[hits.p1].tolist(),
            points[hits.p2].tolist(),
            np.asarray(ASPECT_NAMES, dtype=object)[hits.aspect].tolist(),
            hits.orb.tolist(),
            np.asarray(MOVEMENTS, dtype=object)[hits.movement].tolist(),
        ]
        return self._write_rows([list(row) for row in zip(*columns, strict=True)])

    def write_scores(self, values: npt.NDArray[Any], block: Block) -> int:
        rows, a, b = block.rows, block.a, block.b
        chart_a = np.repeat(a.ids[rows], len(b.ids)).tolist()
        chart_b = np.tile(b.ids, rows.stop - rows.start).tolist()
        return self._write_rows([list(r) for r in zip(chart_a, chart_b, values.ravel().tolist(), strict=True)])

    def write_matches(self, best: TopK, block: Block) -> int:
        return self._write_rows(_match_rows(best, block))

    def write_transits(self, events: TransitEvents, block: Block) -> int:
        # ISO 8601 with the UTC offset; a bound outside the range is null (JSON) or empty (CSV).
        rows = _transit_rows(events, block)
        for row in rows:
            row[4:7] = [None if moment is None else moment.isoformat() for moment in row[4:7]]
        return self._write_rows(rows)

    def write_patterns(self, found: ChartPatterns, block: Block) -> int:
        # One row per pattern; CSV joins its points with ";" (JSON Lines keeps the list).
        charts = block.a.ids[block.rows][found.i].tolist()
        joined = self.format == "csv"
        return self._write_rows(
            [
                [chart, record["pattern"], ";".join(record["points"]) if joined else record["points"]]
                for chart, record in zip(charts, found.to_records(point_names=True), strict=True)
            ]
        )

    def flush(self) -> int:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        return self.handle.tell()

    def close(self) -> None:
        length = self.flush()
        self.handle.close()
        self.finish(self.path, length)

    @staticmethod
    def finish(path: Path, length: int) -> None:
        """Rename the complete partial file (``length`` bytes) onto ``path``, or accept it already renamed."""
        partial = _text_partial(path)
        if partial.exists():
            if partial.stat().st_size != length:
                raise BatchError(f"--resume: {partial} is not {length} bytes long as recorded; start the run again")
            os.replace(partial, path)
            _sync_directory(path)
        elif not (path.exists() and path.stat().st_size == length):
            raise BatchError(f"--resume: {partial} is gone and {path} is not the finished output; start the run again")

    def abort(self) -> None:
        # The partial file stays for --resume; only the handle goes.
        self.handle.close()


class NpzWriter(Writer):
    """Dense scores into a memory-mapped ``PATH.partial.npy``, compressed into PATH (.npz) when complete."""

    def __init__(self, spec: JobSpec, a: Population, b: Population, recorded_rows: int = 0) -> None:
        """``recorded_rows``: the rows of A whose scores a resumed run recorded as written to the partial."""
        self.spec, self.a, self.b = spec, a, b
        self.path = Path(spec.output)
        self.partial = _npz_partial(self.path)
        shape, dtype = _matrix_layout(spec, a, b)
        self.matrix: np.memmap[Any, Any]
        if self.partial.exists():
            self.matrix = _load_partial_matrix(self.partial, spec, a, b, "r+")
        elif recorded_rows > 0:
            raise missing_partial(self.partial, "scores")
        else:
            self.matrix = np.lib.format.open_memmap(self.partial, mode="w+", dtype=dtype, shape=shape)

    def write_scores(self, values: npt.NDArray[Any], block: Block) -> int:
        self.matrix[block.rows] = values
        return int(values.size)

    def flush(self) -> int:
        self.matrix.flush()
        return 0

    def close(self) -> None:
        self.matrix.flush()
        del self.matrix  # released before its file is removed
        self.finish(self.spec, self.a, self.b)

    @staticmethod
    def finish(spec: JobSpec, a: Population, b: Population) -> None:
        """Compress the complete partial matrix into PATH, repeatably. The matrix is whole in exactly one place at
        every step: the partial, until a durable compressed copy exists; that copy (``PATH.tmp.npz``), once the
        partial is gone; PATH, once it is renamed. So a resume never rewrites a PATH already in place."""
        path = Path(spec.output)
        partial, temporary = _npz_partial(path), path.with_name(path.name + ".tmp.npz")
        layout = _matrix_layout(spec, a, b)
        if partial.exists():
            matrix = _load_partial_matrix(partial, spec, a, b, "r")
            with open(temporary, "wb") as handle:
                np.savez_compressed(handle, scores=matrix, chart_a=a.ids, chart_b=b.ids)
                handle.flush()
                os.fsync(handle.fileno())
            del matrix  # released before its file is removed
            _sync_directory(path)
            partial.unlink()
        elif not temporary.exists():
            if not _holds_matrix(path, *layout):
                raise BatchError(f"--resume: {partial} is gone and {path} is not the finished output; start again")
            return  # in place already
        elif not _holds_matrix(temporary, *layout):
            raise BatchError(f"--resume: {partial} is gone and {temporary} is not this run's matrix; start again")
        os.replace(temporary, path)
        _sync_directory(path)

    def abort(self) -> None:
        if hasattr(self, "matrix"):  # gone once close() has handed the matrix to finish()
            self.matrix.flush()


def missing_partial(partial: Path, mode: str) -> BatchError:
    """The error of a resumed mode whose partial file, holding the rows already recorded, is gone."""
    return BatchError(
        f"--resume: {partial} is gone, and with it the rows of {mode} this run recorded as written; it cannot "
        "be resumed: start a new run with the same options (compute_aspects without --resume)"
    )


def _text_partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _npz_partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial.npy")


def _matrix_layout(spec: JobSpec, a: Population, b: Population) -> tuple[tuple[int, int], np.dtype[Any]]:
    return (len(a.ids), len(b.ids)), np.dtype(np.int16 if spec.method == "discepolo" else np.float64)


def _load_partial_matrix(partial: Path, spec: JobSpec, a: Population, b: Population, mode: Literal["r", "r+"]) -> Any:
    matrix = np.load(partial, mmap_mode=mode)
    if (matrix.shape, matrix.dtype) != _matrix_layout(spec, a, b):
        raise BatchError(f"--resume: {partial} does not hold this run's matrix")
    return matrix


def _holds_matrix(path: Path, shape: tuple[int, int], dtype: np.dtype[Any]) -> bool:
    """Whether ``path`` is an .npz whose scores have this shape and dtype (read from the header only)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("scores.npy") as member:
            version = np.lib.format.read_magic(member)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            header = read(member)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False
    found_shape, _fortran, found_dtype = header
    return bool(found_shape == shape and found_dtype == dtype)


def _sync_directory(path: Path) -> None:
    """Make a rename durable before the run records it: otherwise a power cut could undo it under a run marked
    done. (Only POSIX can open a directory for this.)"""
    if os.name != "posix":
        return
    descriptor = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def finish_output(spec: JobSpec, a: Population, b: Population, file_bytes: int) -> None:
    """Put in place the output of a mode whose every block is recorded (its data is whole), when a crash came
    before that was done or before the run recorded it. Nothing is opened for writing: a writer would start an
    empty partial and rename it over the finished file."""
    if spec.output == "db":
        return  # every block committed with its rows
    if spec.file_format == "npz":
        NpzWriter.finish(spec, a, b)
    else:
        FileWriter.finish(Path(spec.output), file_bytes)


def open_writer(
    spec: JobSpec,
    mode: str,
    a: Population,
    b: Population,
    resume_bytes: int,
    config_hash: str,
    run_id: int | None,
    recorded_rows: int = 0,
) -> Writer:
    """``resume_bytes`` and ``recorded_rows``: what a resumed mode recorded as written (0 for a fresh mode)."""
    if spec.output == "db":
        return DatabaseWriter(config_hash, spec.method, run_id, spec.transit_window())
    if spec.file_format == "npz":
        return NpzWriter(spec, a, b, recorded_rows)
    return FileWriter(spec, mode, resume_bytes)
