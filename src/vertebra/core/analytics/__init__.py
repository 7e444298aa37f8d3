"""Outcomes analytics on the analysis-ready tables (pure: pandas/numpy/scipy/statsmodels/lifelines).

Entry points: `AnalysisTables.of(patients, timepoints, events)` or `read_tables(DIR)`, a
`CohortFilter`, and `build_report(tables, filter, as_of) -> Report` (`Report.to_dict()` is the
JSON contract). The pieces (`arm_outcomes`, `baseline_table`, `surgery_free_survival`,
`compare_arms`, `clinic_benchmark`) work on a `Panel` from `build_panel`.
See docs/algorithms/analytics.md for every formula.
"""

from vertebra.core.analytics.benchmark import ClinicBenchmark, ClinicRow, clinic_benchmark
from vertebra.core.analytics.cohort import CohortFilter, Panel, build_panel, select_patients
from vertebra.core.analytics.descriptive import (
    AdverseEventSummary,
    BaselineSummary,
    EventCount,
    adverse_events,
    baseline_table,
)
from vertebra.core.analytics.outcomes import (
    MeasureSummary,
    OpioidSummary,
    TimepointOutcome,
    arm_outcomes,
    responder_flags,
)
from vertebra.core.analytics.propensity import (
    OBSERVATIONAL_CAVEAT,
    BalanceRow,
    EffectEstimate,
    PropensityComparison,
    compare_arms,
)
from vertebra.core.analytics.report import Report, build_report, cell_arms
from vertebra.core.analytics.results import Mean, Rate
from vertebra.core.analytics.schema import (
    AnalysisTables,
    Exclusion,
    SchemaError,
    read_tables,
    validate_tables,
)
from vertebra.core.analytics.survival import SurvivalResult, surgery_free_survival

__all__ = [
    "OBSERVATIONAL_CAVEAT",
    "AdverseEventSummary",
    "AnalysisTables",
    "BalanceRow",
    "BaselineSummary",
    "ClinicBenchmark",
    "ClinicRow",
    "CohortFilter",
    "EffectEstimate",
    "EventCount",
    "Exclusion",
    "Mean",
    "MeasureSummary",
    "OpioidSummary",
    "Panel",
    "PropensityComparison",
    "Rate",
    "Report",
    "SchemaError",
    "SurvivalResult",
    "TimepointOutcome",
    "adverse_events",
    "arm_outcomes",
    "baseline_table",
    "build_panel",
    "build_report",
    "cell_arms",
    "clinic_benchmark",
    "compare_arms",
    "read_tables",
    "responder_flags",
    "select_patients",
    "surgery_free_survival",
    "validate_tables",
]
