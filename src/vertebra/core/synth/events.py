"""Events after treatment: surgery conversions, repeat injections and adverse events.

Every event is dated; events after `today` have not happened yet and are not emitted.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd

from vertebra.core.synth._frames import categorical
from vertebra.core.synth._num import (
    BoolArray,
    DateArray,
    FloatArray,
    IntArray,
    norm_cdf,
    weighted_choice,
)
from vertebra.core.synth.constants import ARM_GROUP, ARMS, CELL_ARMS, EVENT_TYPES, RELATEDNESS
from vertebra.core.synth.patients import Traits
from vertebra.core.synth.priors import Priors

DAYS_PER_MONTH = 365.25 / 12
#: Column order of the events table.
EVENT_COLUMNS = (
    "event_id",
    "patient_id",
    "event_type",
    "event_date",
    "months_after_treatment",
    "term",
    "ctcae_grade",
    "serious",
    "relatedness",
    "expected",
    "adjudication",
)


@dataclass(slots=True)
class EventRows:
    """Columnar events of one chunk before they become a DataFrame (row i = one event)."""

    patient_index: IntArray  # 0-based index into the chunk's patients
    event_type: IntArray
    day: IntArray  # days after treatment
    term: npt.NDArray[np.object_]
    grade: IntArray  # 0 = not an adverse event
    relatedness: IntArray  # -1 = not an adverse event
    expected: BoolArray

    @staticmethod
    def concat(parts: list[EventRows]) -> EventRows:
        """Stack several EventRows into one."""
        return EventRows(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(EventRows))
        )


def arm_group3(arm: IntArray) -> npt.NDArray[np.object_]:
    """'cell', 'surgery' or 'conservative' for each arm index (the surgery_free prior's groups)."""
    lookup = np.array(
        [
            "cell" if a in CELL_ARMS else "surgery" if a == "surgery" else "conservative"
            for a in ARMS
        ],
        dtype=object,
    )
    return lookup[arm]


def conversion_months(
    rng: np.random.Generator, priors: Priors, traits: Traits
) -> tuple[FloatArray, npt.NDArray[np.object_]]:
    """Months from treatment to a subsequent surgery (inf = none) and the procedure performed.

    Weibull per arm group, solved so that S(12) and S(24) equal the priors; a Gaussian copula
    ties early conversion to poor response (rho), while keeping each group's marginal exact
    because the copula input is the N(0, 1) draw behind the response.
    """
    p = priors["surgery_free"]
    n = len(traits.arm)
    group = arm_group3(traits.arm)
    rho = p["response_copula_rho"]
    # u is the patient's survival quantile S(T): a large u means an early conversion. It must
    # therefore fall with response (-rho): poor responders (low response_z) draw a large u and
    # convert first. (Until 2026-12 the sign was +rho, so good responders converted first.)
    u = norm_cdf(-rho * traits.response_z + np.sqrt(1 - rho**2) * rng.standard_normal(n))
    months = np.full(n, np.inf)
    procedure = np.full(n, None, dtype=object)
    for g in ("cell", "conservative", "surgery"):
        mask = group == g
        shape, scale = weibull_from_survival(p[g]["s12"], p[g]["s24"])
        # Survival S(T) = u  =>  T = scale * (-ln u)^(1/shape); poor responders have large u,
        # so a small -ln u and a short time to conversion.
        months[mask] = scale * (-np.log(np.clip(u[mask], 1e-12, 1.0))) ** (1.0 / shape)
        procs = p["procedures"][g]
        pick = weighted_choice(rng, procs, n)
        procedure[mask] = np.array(list(procs), dtype=object)[pick][mask]
    return months, procedure


def weibull_from_survival(s12: float, s24: float) -> tuple[float, float]:
    """(shape k, scale lambda) of the Weibull with S(12) = s12 and S(24) = s24 (months)."""
    shape = float(np.log(np.log(s24) / np.log(s12)) / np.log(2.0))
    scale = float(12.0 / (-np.log(s12)) ** (1.0 / shape))
    return shape, scale


def surgery_rows(months: FloatArray, procedure: npt.NDArray[np.object_]) -> EventRows:
    """One subsequent_surgery event per converting patient."""
    idx = np.flatnonzero(np.isfinite(months))
    return _plain_rows(
        idx, "subsequent_surgery", np.rint(months[idx] * DAYS_PER_MONTH), procedure[idx]
    )


def repeat_injection_rows(rng: np.random.Generator, priors: Priors, traits: Traits) -> EventRows:
    """Repeat injections: occasional in cell arms, common after steroid injections."""
    p = priors["repeat_injections"]
    n = len(traits.arm)
    group = np.array([ARM_GROUP[a] for a in ARMS], dtype=object)[traits.arm]
    prob = np.zeros(n)
    lo = np.zeros(n)
    hi = np.zeros(n)
    for g in ("cell", "steroid_injection"):
        mask = group == g
        prob[mask] = p[g]["p"]
        lo[mask], hi[mask] = p[g]["months"]
    idx = np.flatnonzero(rng.random(n) < prob)
    months = rng.uniform(lo, hi)[idx]
    term = np.where(group[idx] == "cell", "repeat_cell_injection", "repeat_steroid_injection")
    return _plain_rows(
        idx, "repeat_injection", np.rint(months * DAYS_PER_MONTH), term.astype(object)
    )


def adverse_event_rows(rng: np.random.Generator, priors: Priors, traits: Traits) -> EventRows:
    """Adverse events per term of the priors: Bernoulli per eligible patient, graded 1-5."""
    n = len(traits.arm)
    arm_names = np.array(ARMS, dtype=object)[traits.arm]
    group = np.array([ARM_GROUP[a] for a in ARMS], dtype=object)[traits.arm]
    parts = []
    for spec in priors["adverse_events"]["terms"]:
        targets = set(spec["arms"])
        eligible = (
            np.ones(n, dtype=bool)
            if "all" in targets
            else np.isin(arm_names, list(targets)) | np.isin(group, list(targets))
        )
        idx = np.flatnonzero(eligible & (rng.random(n) < spec["p"]))
        grade = 1 + weighted_choice(rng, spec["grades"], len(idx))
        first, last = spec["onset_days"]
        day = rng.integers(first, last + 1, len(idx))
        parts.append(
            EventRows(
                patient_index=idx,
                event_type=np.full(len(idx), EVENT_TYPES.index("adverse_event")),
                day=day.astype(np.int64),
                term=np.full(len(idx), spec["term"], dtype=object),
                grade=grade,
                relatedness=np.full(len(idx), RELATEDNESS.index(spec["relatedness"])),
                expected=np.full(len(idx), bool(spec["expected"])),
            )
        )
    return EventRows.concat(parts)


def _plain_rows(
    idx: IntArray, kind: str, day: FloatArray, term: npt.NDArray[np.object_]
) -> EventRows:
    """EventRows for non-adverse events (no grade, relatedness or expectedness)."""
    k = len(idx)
    return EventRows(
        patient_index=idx.astype(np.int64),
        event_type=np.full(k, EVENT_TYPES.index(kind)),
        day=day.astype(np.int64),
        term=term,
        grade=np.zeros(k, dtype=np.int64),
        relatedness=np.full(k, -1),
        expected=np.zeros(k, dtype=bool),
    )


def death_dates(rows: EventRows, treatment: DateArray, n: int) -> DateArray:
    """Date of death (grade 5 adverse event) per patient; NaT for the living."""
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    fatal = rows.grade == 5
    idx = rows.patient_index[fatal]
    dates = treatment[idx] + rows.day[fatal].astype("timedelta64[D]")
    order = np.argsort(dates)[::-1]  # assign latest first so the earliest wins
    out[idx[order]] = dates[order]
    return out


def events_frame(
    rows: EventRows,
    traits: Traits,
    death: DateArray,
    today: date,
    pending_days: int,
    first_event_id: int,
) -> pd.DataFrame:
    """The public events table: only events on or before `today` (and not after death)."""
    when = traits.treatment_date[rows.patient_index] + rows.day.astype("timedelta64[D]")
    dead = death[rows.patient_index]
    today64 = np.datetime64(today, "D")
    keep = (when <= today64) & (np.isnat(dead) | (when <= dead))
    pid = traits.patient_id[rows.patient_index]
    order = np.lexsort((rows.event_type[keep], when[keep], pid[keep]))
    sel = np.flatnonzero(keep)[order]
    is_ae = rows.grade[sel] > 0
    grade = rows.grade[sel]
    recent = (today64 - when[sel]).astype(np.int64) <= pending_days
    adjudication = np.where(recent, "pending", "adjudicated").astype(object)
    adjudication[~is_ae] = None  # only adverse events are adjudicated
    k = len(sel)
    return pd.DataFrame(
        {
            "event_id": np.arange(first_event_id, first_event_id + k, dtype=np.int64),
            "patient_id": pid[sel],
            "event_type": categorical(rows.event_type[sel], EVENT_TYPES),
            "event_date": when[sel].astype("datetime64[s]"),
            "months_after_treatment": np.round(rows.day[sel] / DAYS_PER_MONTH, 2),
            "term": pd.array(rows.term[sel], dtype="string"),
            "ctcae_grade": pd.arrays.IntegerArray(grade.astype(np.int8), ~is_ae),
            "serious": pd.arrays.BooleanArray(grade >= 3, ~is_ae),
            "relatedness": categorical(rows.relatedness[sel], RELATEDNESS),
            "expected": pd.arrays.BooleanArray(rows.expected[sel], ~is_ae),
            "adjudication": pd.array(adjudication, dtype="string"),
        },
        columns=list(EVENT_COLUMNS),
    )
