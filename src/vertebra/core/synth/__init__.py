"""Synthetic cohort generator: seeded, reproducible, calibrated to published figures.

Public API::

    generate_cohort(n_patients, seed, *, today, n_clinics=None, include_stories=True) -> Cohort
    iter_cohort(...same...) -> Iterator[Cohort]        # the same rows, CHUNK_SIZE patients at a time
    write_cohort(cohort_or_chunks, out_dir, formats=("parquet", "csv"), *, identified=True,
                 on_chunk=None) -> dict[str, list[Path]]
    load_priors() -> Priors                            # vertebra/data/synth/priors.yaml

Pure: numpy and pandas only (pyarrow for writing); no Django, no database, no network and no
clock (`today` is a parameter). Every questionnaire is generated item by item and scored by
vertebra.core.instruments, so generated scores are always valid scores. See
docs/algorithms/synthetic-cohort.md for the model, the priors and their sources.
"""

from __future__ import annotations

from vertebra.core.synth.generator import (
    CHUNK_SIZE,
    GENERATOR_VERSION,
    Cohort,
    generate_cohort,
    iter_cohort,
)
from vertebra.core.synth.priors import Priors, PriorsError, load_priors
from vertebra.core.synth.writer import FORMATS, IDENTIFYING_COLUMNS, write_cohort

__all__ = [
    "CHUNK_SIZE",
    "FORMATS",
    "GENERATOR_VERSION",
    "IDENTIFYING_COLUMNS",
    "Cohort",
    "Priors",
    "PriorsError",
    "generate_cohort",
    "iter_cohort",
    "load_priors",
    "write_cohort",
]
