"""OMOP CDM v5.4 tables from the de-identified research release. Pure.

Input: the released tables in codebook form (:func:`vertebra.core.codebook.for_csv`), which
carry no calendar date (treatment year and days after treatment). OMOP needs dates, so every
patient's dates are **shifted**: the treatment is placed on 1 January of the treatment year
and every other date is that day plus the released day count. The shifted dates say nothing the
release does not (year + days after treatment); they are not the real dates (ADR 0013).
Concept ids come from ``vertebra/data/omop/concepts.yaml`` (0 + source value where no standard
concept can be justified offline). Documented in docs/research-exports.md.

Contracts
---------
* :func:`build` returns the CDM tables (name -> DataFrame with OHDSI column names): person,
  observation_period, visit_occurrence, condition_occurrence (diagnosis, adverse events),
  procedure_occurrence (the treatment, subsequent surgeries, repeat injections), drug_exposure
  (opioids reported at follow-up), device_exposure (the injected cell product), measurement
  (instrument scores), observation (STarT Back group), cdm_source, and the minimal vocabulary
  tables (concept, domain, vocabulary, concept_class) holding the concepts used, so the
  official foreign keys hold without Athena.
* ``person_id`` is the release's pseudonym; every other id is 1..n per table.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from functools import cache
from importlib.resources import files
from typing import Any

import pandas as pd

from vertebra.core.yamltext import load_yaml

__all__ = ["CDM_TABLES", "VOCABULARY_TABLES", "build", "concepts"]

CDM_TABLES = (
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "procedure_occurrence",
    "drug_exposure",
    "device_exposure",
    "measurement",
    "observation",
    "cdm_source",
)
VOCABULARY_TABLES = ("concept", "domain", "vocabulary", "concept_class")
#: timepoints score column -> measurement_source_value and unit_source_value.
SCORES = {
    "odi": "percent",
    "nrs_back": "points (0-10)",
    "nrs_leg": "points (0-10)",
    "promis_pf": "T-score",
    "promis_pi": "T-score",
    "mme": "MME/day",
}


@cache
def concepts() -> Mapping[str, Any]:
    """The concept mapping data file (read once)."""
    return load_yaml(files("vertebra").joinpath("data", "omop", "concepts.yaml").read_text("utf-8"))


def _on(year: int, day: int) -> date:
    """The shifted date: 1 January of ``year`` plus ``day`` days."""
    return date(int(year), 1, 1) + timedelta(days=int(day))


def build(tables: Mapping[str, pd.DataFrame], *, cutoff_year: int) -> dict[str, pd.DataFrame]:
    """The OMOP CDM v5.4 tables of a release (see the module contract)."""
    cmap = concepts()
    patients, tp, ev = tables["patients"], tables["timepoints"], tables["events"]
    year = dict(zip(patients["patient_id"], patients["treatment_year"], strict=True))
    reg = int(cmap["type_concept"])
    person = pd.DataFrame(
        {
            "person_id": patients["patient_id"].astype(int),
            "gender_concept_id": patients["sex"].map(cmap["gender"]).fillna(0).astype(int),
            "year_of_birth": (patients["treatment_year"] - patients["age"]).astype(int),
            "race_concept_id": 0,
            "ethnicity_concept_id": 0,
            "person_source_value": patients["patient_id"].astype(str),
            "gender_source_value": patients["sex"].astype(str),
        }
    )
    done = tp[tp["completed"].astype(int) == 1]
    visits = pd.DataFrame(
        {
            "person_id": [*patients["patient_id"], *done["patient_id"]],
            "day": [0] * len(patients) + done["completed_day"].astype(int).tolist(),
            "visit_source_value": ["treatment"] * len(patients)
            + done["timepoint"].astype(str).tolist(),
        }
    )
    visits["date"] = [
        _on(year[p], d) for p, d in zip(visits["person_id"], visits["day"], strict=True)
    ]
    visits["visit_occurrence_id"] = range(1, len(visits) + 1)
    visit_occurrence = pd.DataFrame(
        {
            "visit_occurrence_id": visits["visit_occurrence_id"],
            "person_id": visits["person_id"].astype(int),
            "visit_concept_id": int(cmap["visit"]),
            "visit_start_date": visits["date"],
            "visit_end_date": visits["date"],
            "visit_type_concept_id": reg,
            "visit_source_value": visits["visit_source_value"],
        }
    )
    treat_visit = dict(
        zip(
            visits["person_id"][: len(patients)],
            visits["visit_occurrence_id"][: len(patients)],
            strict=True,
        )
    )
    tp_visit = {
        (p, t): v
        for p, t, v in zip(
            visits["person_id"][len(patients) :],
            visits["visit_source_value"][len(patients) :],
            visits["visit_occurrence_id"][len(patients) :],
            strict=True,
        )
    }
    out: dict[str, pd.DataFrame] = {"person": person}
    out["observation_period"] = _periods(patients, visits, ev, year, reg)
    out["visit_occurrence"] = visit_occurrence
    out["condition_occurrence"] = _conditions(patients, ev, year, reg, treat_visit)
    out["procedure_occurrence"] = _procedures(patients, ev, year, reg, treat_visit)
    out["drug_exposure"] = _drugs(done, year, reg, tp_visit)
    out["device_exposure"] = _devices(patients, year, reg, treat_visit)
    out["measurement"] = _measurements(done, year, reg, tp_visit)
    out["observation"] = _observations(patients, year, reg, treat_visit)
    out["cdm_source"] = pd.DataFrame(
        [
            {
                "cdm_source_name": "Vertebra registry research export (de-identified)",
                "cdm_source_abbreviation": "Vertebra",
                "cdm_holder": "the registry site",
                "source_description": "De-identified (HIPAA Safe Harbor) release; dates shifted: "
                "treatment on 1 January of the treatment year",
                "source_release_date": date(cutoff_year, 1, 1),
                "cdm_release_date": date(cutoff_year, 1, 1),
                "cdm_version": "5.4",
                "cdm_version_concept_id": int(cmap["cdm_version_concept"]),
                "vocabulary_version": f"vertebra-{cmap['version']}",  # varchar(20); no Athena
            }
        ]
    )
    out.update(_vocabulary())
    return out


def _periods(
    patients: pd.DataFrame,
    visits: pd.DataFrame,
    ev: pd.DataFrame,
    year: Mapping[Any, Any],
    reg: int,
) -> pd.DataFrame:
    """One observation period per person: earliest to latest known day (treatment included)."""
    days = pd.concat(
        [
            visits[["person_id", "day"]],
            ev[["patient_id", "day"]].rename(columns={"patient_id": "person_id"}),
        ]
    )
    span = days.groupby("person_id")["day"].agg(["min", "max"]).reset_index()
    return pd.DataFrame(
        {
            "observation_period_id": range(1, len(span) + 1),
            "person_id": span["person_id"].astype(int),
            "observation_period_start_date": [
                _on(year[p], d) for p, d in zip(span["person_id"], span["min"], strict=True)
            ],
            "observation_period_end_date": [
                _on(year[p], d) for p, d in zip(span["person_id"], span["max"], strict=True)
            ],
            "period_type_concept_id": reg,
        }
    )


def _conditions(
    patients: pd.DataFrame,
    ev: pd.DataFrame,
    year: Mapping[Any, Any],
    reg: int,
    visit: Mapping[Any, int],
) -> pd.DataFrame:
    """The diagnosis at treatment and every adverse event (source value = registry code)."""
    ae = ev[ev["kind"] == "adverse_event"]
    rows = [
        (p, 0, str(c), visit[p], None)
        for p, c in zip(patients["patient_id"], patients["condition"], strict=True)
    ] + [
        (p, d, "adverse_event", None, None if pd.isna(r) else f"relatedness:{r}")
        for p, d, r in zip(ae["patient_id"], ae["day"], ae["relatedness"], strict=True)
    ]
    frame = pd.DataFrame(rows, columns=["person_id", "day", "source", "visit", "status"])
    return pd.DataFrame(
        {
            "condition_occurrence_id": range(1, len(frame) + 1),
            "person_id": frame["person_id"].astype(int),
            "condition_concept_id": 0,
            "condition_start_date": [
                _on(year[p], d) for p, d in zip(frame["person_id"], frame["day"], strict=True)
            ],
            "condition_type_concept_id": reg,
            "visit_occurrence_id": frame["visit"].astype("Int64"),
            "condition_source_value": frame["source"],
            "condition_status_source_value": frame["status"],
        }
    )


def _procedures(
    patients: pd.DataFrame,
    ev: pd.DataFrame,
    year: Mapping[Any, Any],
    reg: int,
    visit: Mapping[Any, int],
) -> pd.DataFrame:
    """The treatment (its arm) on day 0, subsequent surgeries and repeat injections."""
    clinical = ev[ev["kind"] != "adverse_event"]
    rows = [
        (p, 0, str(a), visit[p])
        for p, a in zip(patients["patient_id"], patients["arm"], strict=True)
    ] + [
        (p, d, str(k), None)
        for p, d, k in zip(clinical["patient_id"], clinical["day"], clinical["kind"], strict=True)
    ]
    frame = pd.DataFrame(rows, columns=["person_id", "day", "source", "visit"])
    return pd.DataFrame(
        {
            "procedure_occurrence_id": range(1, len(frame) + 1),
            "person_id": frame["person_id"].astype(int),
            "procedure_concept_id": 0,
            "procedure_date": [
                _on(year[p], d) for p, d in zip(frame["person_id"], frame["day"], strict=True)
            ],
            "procedure_type_concept_id": reg,
            "visit_occurrence_id": frame["visit"].astype("Int64"),
            "procedure_source_value": frame["source"],
        }
    )


def _drugs(
    done: pd.DataFrame, year: Mapping[Any, Any], reg: int, visit: Mapping[Any, int]
) -> pd.DataFrame:
    """Opioids reported at a follow-up (opioid_use items): drug code and daily dose."""
    taking = done[(done["opi_current_use"] == 1) & done["opi_opioid"].notna()]
    dates = [
        _on(year[p], d) for p, d in zip(taking["patient_id"], taking["completed_day"], strict=True)
    ]
    return pd.DataFrame(
        {
            "drug_exposure_id": range(1, len(taking) + 1),
            "person_id": taking["patient_id"].astype(int).to_numpy(),
            "drug_concept_id": 0,
            "drug_exposure_start_date": dates,
            "drug_exposure_end_date": dates,
            "drug_type_concept_id": reg,
            "quantity": taking["opi_daily_dose"].astype(float).to_numpy(),
            "visit_occurrence_id": [
                visit[(p, str(t))]
                for p, t in zip(taking["patient_id"], taking["timepoint"], strict=True)
            ],
            "drug_source_value": taking["opi_opioid"].astype(str).to_numpy(),
            "dose_unit_source_value": "mg/day (ug/h for a fentanyl patch)",
        }
    )


def _devices(
    patients: pd.DataFrame, year: Mapping[Any, Any], reg: int, visit: Mapping[Any, int]
) -> pd.DataFrame:
    """The injected cell product (cell source, adjunct, dose) of cell-therapy patients."""
    cells = patients[patients["cell_source"].notna()]
    source = [
        f"{s}+{a}" if pd.notna(a) else str(s)
        for s, a in zip(cells["cell_source"], cells["adjunct"], strict=True)
    ]
    dates = [_on(year[p], 0) for p in cells["patient_id"]]
    return pd.DataFrame(
        {
            "device_exposure_id": range(1, len(cells) + 1),
            "person_id": cells["patient_id"].astype(int).to_numpy(),
            "device_concept_id": 0,
            "device_exposure_start_date": dates,
            "device_type_concept_id": reg,
            "quantity": pd.array(cells["dose"].round().astype("Int64").to_numpy()),
            "visit_occurrence_id": [visit[p] for p in cells["patient_id"]],
            "device_source_value": source,
            "unit_source_value": "million cells",
        }
    )


def _measurements(
    done: pd.DataFrame, year: Mapping[Any, Any], reg: int, visit: Mapping[Any, int]
) -> pd.DataFrame:
    """Instrument scores of answered time points (one row per score present)."""
    long = done.melt(
        id_vars=["patient_id", "timepoint", "completed_day"],
        value_vars=list(SCORES),
        var_name="score",
    ).dropna(subset=["value"])
    return pd.DataFrame(
        {
            "measurement_id": range(1, len(long) + 1),
            "person_id": long["patient_id"].astype(int).to_numpy(),
            "measurement_concept_id": 0,
            "measurement_date": [
                _on(year[p], d)
                for p, d in zip(long["patient_id"], long["completed_day"], strict=True)
            ],
            "measurement_type_concept_id": reg,
            "value_as_number": long["value"].astype(float).to_numpy(),
            "visit_occurrence_id": [
                visit[(p, str(t))]
                for p, t in zip(long["patient_id"], long["timepoint"], strict=True)
            ],
            "measurement_source_value": long["score"].to_numpy(),
            "unit_source_value": long["score"].map(SCORES).to_numpy(),
        }
    )


def _observations(
    patients: pd.DataFrame, year: Mapping[Any, Any], reg: int, visit: Mapping[Any, int]
) -> pd.DataFrame:
    """The STarT Back risk group at treatment (value as string)."""
    return pd.DataFrame(
        {
            "observation_id": range(1, len(patients) + 1),
            "person_id": patients["patient_id"].astype(int),
            "observation_concept_id": 0,
            "observation_date": [_on(year[p], 0) for p in patients["patient_id"]],
            "observation_type_concept_id": reg,
            "value_as_string": patients["startback_group"].astype(str),
            "visit_occurrence_id": [visit[p] for p in patients["patient_id"]],
            "observation_source_value": "startback_group",
        }
    )


def _vocabulary() -> dict[str, pd.DataFrame]:
    """Minimal concept, domain, vocabulary and concept_class rows for the concepts used."""
    cmap = concepts()
    rows = cmap["concepts"]
    concept = pd.DataFrame(
        {
            "concept_id": [int(r["concept_id"]) for r in rows],
            "concept_name": [r["concept_name"] for r in rows],
            "domain_id": [r["domain_id"] for r in rows],
            "vocabulary_id": [r["vocabulary_id"] for r in rows],
            "concept_class_id": [r["concept_class_id"] for r in rows],
            "standard_concept": [r.get("standard") for r in rows],
            "concept_code": [str(r["concept_code"]) for r in rows],
            "valid_start_date": date.fromisoformat(cmap["valid_start_date"]),
            "valid_end_date": date.fromisoformat(cmap["valid_end_date"]),
        }
    )

    def ids(key: str) -> list[str]:
        return sorted({str(r[key]) for r in rows})

    return {
        "concept": concept,
        "domain": pd.DataFrame(
            {"domain_id": ids("domain_id"), "domain_name": ids("domain_id"), "domain_concept_id": 0}
        ),
        "vocabulary": pd.DataFrame(
            {
                "vocabulary_id": ids("vocabulary_id"),
                "vocabulary_name": ids("vocabulary_id"),
                "vocabulary_concept_id": 0,
            }
        ),
        "concept_class": pd.DataFrame(
            {
                "concept_class_id": ids("concept_class_id"),
                "concept_class_name": ids("concept_class_id"),
                "concept_class_concept_id": 0,
            }
        ),
    }
