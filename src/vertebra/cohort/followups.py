"""Follow-up rows of a synthetic cohort: schedules, time points, submissions and responses.

Written like :mod:`vertebra.followup.services` writes them for real patients (one schedule per
episode, one submission per answered time point, one scored response per instrument, one audit
record per schedule and per submission), but in bulk. Scores are the core scorers' own: the
synthetic generator computes ODI with ``score_odi_matrix`` (proven equal to ``score``), and the
small instruments are scored with ``score`` through a cache, since their answer sets repeat.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vertebra.core.instruments import get_definition, score
from vertebra.core.mme import opioid_factor
from vertebra.core.schedule import default_protocol
from vertebra.followup import models as f
from vertebra.followup.services import instruments_for

#: Synthetic columns holding each instrument's items, in the instrument's item order.
ITEM_COLUMNS = {
    "odi": [f"odi_{i}" for i in range(1, 11)],
    "nrs_back": ["nrs_back"],
    "nrs_leg": ["nrs_leg"],
    "promis_pf_4a": [f"promis_pf_{i}" for i in range(1, 5)],
    "promis_pi_4a": [f"promis_pi_{i}" for i in range(1, 5)],
}
STATUS = {
    "completed": "completed",
    "not_due": "pending",
    "due": "open",
    "overdue": "open",
    "missed": "missed",
}
Writer = Callable[..., None]


@functools.lru_cache(maxsize=100_000)
def _scored(
    instrument_id: str, answers: tuple[Any, ...]
) -> tuple[float | None, str, dict[str, Any]]:
    """(score, band, extras) of one answer set in item order, via the core scorer (cached:
    the small instruments' answer sets repeat). Callers must not mutate the extras."""
    result = score(instrument_id, list(answers))
    return result.score, result.band or "", dict(result.to_dict()["extras"])


def _odi(
    answers: tuple[Any, ...], synthetic_score: float
) -> tuple[float | None, str, dict[str, Any]]:
    """ODI score, band and extras; the score is the generator's (the core's vectorised scorer)."""
    answered = [a for a in answers if a is not None]
    if pd.isna(synthetic_score):
        return None, "", _scored("odi", answers)[2]
    band = get_definition("odi").band_for(float(synthetic_score)) or ""
    return float(synthetic_score), band, {"raw": sum(answered), "max_possible": 5 * len(answered)}


def _opioid_answers(
    uses: Any, drug: str | None, mme: Any
) -> tuple[dict[str, Any], tuple[float | None, str, dict[str, Any]]] | None:
    """The opioid-use answers and (score, band, extras) of one time point; None if unanswered.

    The daily dose is recovered from the generated MME and the CDC factor of the patient's
    opioid (an opioid started after baseline has no known drug: answered as "other", unscored).
    """
    if uses is None or pd.isna(uses):
        return None
    if not uses:
        answers: dict[str, Any] = {"current_use": 0, "opioid": None, "daily_dose": None}
    elif drug is None or mme is None or pd.isna(mme):
        answers = {"current_use": 1, "opioid": "other", "daily_dose": None}
    else:
        dose = round(float(mme) / opioid_factor(drug).factor, 1)
        answers = {"current_use": 1, "opioid": drug, "daily_dose": dose}
    in_item_order = (answers["current_use"], answers["opioid"], answers["daily_dose"])
    return answers, _scored("opioid_use", in_item_order)


def _value(raw: Any) -> Any:
    return None if pd.isna(raw) else int(raw)


def load_followups(
    timepoints: pd.DataFrame,
    opioid_drug_of_patient: dict[int, str | None],
    episode_of_synthetic_patient: dict[int, int],
    patient_of_episode: dict[int, int],
    clinic_of_patient: dict[int, int],
    *,
    ids: Any,
    write: Writer,
    now: dt.datetime,
) -> None:
    """Write schedules, time points, submissions and responses for every synthetic time point.

    ``write(model, names, rows, clinic_of=..., patient_of=..., audit=...)`` inserts rows and,
    when ``audit`` gives an object type and new-values builder, one audit record per row.
    """
    protocol = default_protocol()
    episodes = list(episode_of_synthetic_patient.values())
    schedule_ids = dict(zip(episodes, ids.take(f.FollowUpSchedule, len(episodes)), strict=True))
    tp = timepoints.reset_index(drop=True)
    synthetic_patient = tp["patient_id"].to_numpy()
    keys = tp["timepoint"].astype(str).to_numpy()
    statuses = tp["status"].astype(str).map(STATUS).to_numpy()
    tp_ids = np.asarray(ids.take(f.FollowUpTimePoint, len(tp)))
    completed_at: list[dt.datetime | None] = [
        None if day is None else dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
        for day in _dates(tp["response_date"])
    ]
    opens_list, closes_list, targets = (
        _dates(tp["due_date"]),
        _dates(tp["window_closes"]),
        _dates(tp["target_date"]),
    )
    months = tp["months"].astype(float).tolist()

    time_points_by_schedule: dict[int, dict[str, list[Any]]] = {}
    tp_rows = []
    labels = {point["id"]: point["label"] for point in _protocol_points(protocol)}
    instrument_lists = {key: instruments_for(key) for key in labels}
    for i in range(len(tp)):
        episode = episode_of_synthetic_patient[int(synthetic_patient[i])]
        schedule = schedule_ids[episode]
        key, status = str(keys[i]), str(statuses[i])
        tp_rows.append(
            (
                int(tp_ids[i]), schedule, patient_of_episode[episode], uuid.uuid4(), key,
                labels[key], months[i], targets[i], opens_list[i], closes_list[i],
                instrument_lists[key], status, completed_at[i] if status == "completed" else None,
            )
        )  # fmt: skip
        time_points_by_schedule.setdefault(schedule, {})[key] = [
            opens_list[i],
            closes_list[i],
            status,
        ]

    treatment = _treatment_dates(tp, episode_of_synthetic_patient)
    schedule_rows: list[tuple[Any, ...]] = [
        (schedule_ids[e], e, protocol.id, protocol.version, treatment[e], now, now)
        for e in episodes
    ]
    write(
        f.FollowUpSchedule,
        [
            "id",
            "episode_id",
            "protocol_id",
            "protocol_version",
            "treatment_date",
            "created_at",
            "updated_at",
        ],
        schedule_rows,
        clinic_of=lambda r: clinic_of_patient[patient_of_episode[r[1]]],
        patient_of=lambda r: patient_of_episode[r[1]],
        audit=(
            "followup_schedule",
            lambda r: {
                "episode_id": r[1],
                "protocol": f"{r[2]} {r[3]}",
                "treatment_date": r[4],
                "time_points": time_points_by_schedule[r[0]],
            },
        ),
    )
    write(
        f.FollowUpTimePoint,
        ["id", "schedule_id", "patient_id", "public_id", "key", "label", "months", "target", "opens",
         "closes", "instruments", "status", "completed_at"],
        tp_rows,
        clinic_of=lambda r: None, patient_of=lambda r: None, audit=None,
    )  # fmt: skip
    _load_submissions(
        tp, tp_ids, statuses, completed_at, keys, tp_rows, clinic_of_patient,
        opioid_drug_of_patient, ids=ids, write=write,
    )  # fmt: skip


def _protocol_points(protocol: Any) -> list[dict[str, Any]]:
    from vertebra.core.schedule import build_schedule

    return [{"id": p.id, "label": p.label} for p in build_schedule(dt.date(2025, 1, 1), protocol)]


def _dates(column: pd.Series) -> list[Any]:
    """A datetime column as a list of ``date`` (None for missing), without per-row pandas calls."""
    values = pd.to_datetime(column).dt.date
    return [None if pd.isna(v) else v for v in values.tolist()]


def _treatment_dates(tp: pd.DataFrame, episode_of: dict[int, int]) -> dict[int, Any]:
    baseline = tp[tp["timepoint"].astype(str) == "baseline"]
    # The baseline window closes on the treatment day (default protocol: 30 days up to it).
    return {
        episode_of[int(pid)]: closes
        for pid, closes in zip(
            baseline["patient_id"], _dates(baseline["window_closes"]), strict=True
        )
    }


def _load_submissions(
    tp: pd.DataFrame,
    tp_ids: np.ndarray,
    statuses: np.ndarray,
    completed_at: Sequence[dt.datetime | None],
    keys: np.ndarray,
    tp_rows: list[tuple[Any, ...]],
    clinic_of_patient: dict[int, int],
    opioid_drug_of_patient: dict[int, str | None],
    *,
    ids: Any,
    write: Writer,
) -> None:
    """One submission per completed time point, one response per instrument with data."""
    done = np.flatnonzero(statuses == "completed")
    submission_ids = ids.take(f.Submission, len(done))
    submission_rows = []
    response_rows: list[tuple[Any, ...]] = []
    summary: dict[int, dict[str, Any]] = {}
    columns = {name: tp[cols].to_numpy(dtype=object) for name, cols in ITEM_COLUMNS.items()}
    odi_scores = tp["odi"].to_numpy()
    item_ids = {name: get_definition(name).item_ids for name in ITEM_COLUMNS}
    versions = {name: get_definition(name).version for name in ITEM_COLUMNS}
    opioid_version = get_definition("opioid_use").version
    synthetic_ids = tp["patient_id"].to_numpy()
    opioid_use = tp["opioid_use"].to_numpy(dtype=object)
    opioid_mme = tp["opioid_mme"].to_numpy(dtype=object)
    for sid, i in zip(submission_ids, done.tolist(), strict=True):
        when = completed_at[i]
        patient_id = tp_rows[i][2]
        submission_rows.append(
            (sid, int(tp_ids[i]), f"synth{uuid.uuid4().hex}", secrets.token_hex(5).upper(), when)
        )
        responses: dict[str, Any] = {}
        for name in instruments_for(str(keys[i])):
            if name == "opioid_use":
                drug = opioid_drug_of_patient.get(int(synthetic_ids[i]))
                opioid = _opioid_answers(opioid_use[i], drug, opioid_mme[i])
                if opioid is None:
                    continue
                mapping, (value, band, extras) = opioid
                response_rows.append(
                    (sid, int(tp_ids[i]), name, opioid_version, mapping, value, band, extras, when)
                )
                responses[name] = {
                    "version": opioid_version,
                    "answers": mapping,
                    "score": value,
                    "band": band,
                }
                continue
            if name not in ITEM_COLUMNS:
                continue
            answers = tuple(_value(v) for v in columns[name][i])
            if name == "odi":
                value, band, extras = _odi(answers, odi_scores[i])
            else:
                value, band, extras = _scored(name, answers)
            mapping = dict(zip(item_ids[name], answers, strict=True))
            response_rows.append(
                (sid, int(tp_ids[i]), name, versions[name], mapping, value, band, extras, when)
            )
            responses[name] = {
                "version": versions[name],
                "answers": mapping,
                "score": value,
                "band": band,
            }
        summary[sid] = {"time_point": str(keys[i]), "patient": patient_id, "responses": responses}
    write(
        f.Submission, ["id", "time_point_id", "idempotency_key", "reference", "submitted_at"], submission_rows,
        clinic_of=lambda r: clinic_of_patient[summary[r[0]]["patient"]],
        patient_of=lambda r: summary[r[0]]["patient"],
        audit=(
            "followup_submission",
            lambda r: {
                "time_point": summary[r[0]]["time_point"],
                "reference": r[3],
                "responses": summary[r[0]]["responses"],
            },
        ),
    )  # fmt: skip
    response_ids = ids.take(f.QuestionnaireResponse, len(response_rows))
    write(
        f.QuestionnaireResponse,
        ["id", "submission_id", "time_point_id", "instrument_id", "instrument_version", "answers",
         "score", "band", "extras", "submitted_at"],
        [(rid, *row) for rid, row in zip(response_ids, response_rows, strict=True)],
        clinic_of=lambda r: None, patient_of=lambda r: None, audit=None,
    )  # fmt: skip
