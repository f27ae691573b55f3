"""Batch jobs over whole populations: the spec and selection (:mod:`.spec`), the charts as arrays
(:mod:`.population`), the run and its modes (:mod:`.job`), and where results go (:mod:`.writers`). Runs are
started, resumed and cancelled through :mod:`aspects_app.jobs`."""

from .job import MODE_TABLE, BatchInterrupted, BatchJob, BlockResult, Computation, Summary, calibrate, create_run
from .population import Block, Population, load_population
from .spec import FORMATS, MODES, OPERATIONS, BatchError, JobSpec, Selection, check_plan
from .writers import DatabaseWriter, FileWriter, NpzWriter, Writer, open_writer

__all__ = [
    "FORMATS",
    "MODES",
    "MODE_TABLE",
    "OPERATIONS",
    "BatchError",
    "BatchInterrupted",
    "BatchJob",
    "Block",
    "BlockResult",
    "Computation",
    "DatabaseWriter",
    "FileWriter",
    "JobSpec",
    "NpzWriter",
    "Population",
    "Selection",
    "Summary",
    "Writer",
    "calibrate",
    "check_plan",
    "create_run",
    "load_population",
    "open_writer",
]
