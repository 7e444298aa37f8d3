"""Follow-up rows of a synthetic cohort: schedules, time points, submissions and responses.

Written like :mod:`vertebra.followup.services` writes them for real patients (one schedule per
episode, one submission per answered time point, one scored response per instrument, one audit
record per schedule and per submission), but in bulk, a column at a time. Scores are the core
scorers' own: ODI comes from the generator's ``score_odi_matrix`` (proven equal to ``score``);
every other instrument is scored with ``score`` once per distinct answer set (they repeat).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from vertebra.cohort import jsontext
from vertebra.cohort.bulk import IdAllocator, db_date_texts, db_datetime_text
from vertebra.cohort.sink import Sink
from vertebra.core.instruments import get_definition, score
from vertebra.core.mme import opioid_factor
from vertebra.core.schedule import build_schedule, default_protocol
from vertebra.followup import models as f
from vertebra.followup.services import instruments_for
from vertebra.registry.audit import canonical_json

#: Synthetic columns holding each instrument's items, in the instrument's item order.
ITEM_COLUMNS = {
    "odi": [f"odi_{i}" for i in range(1, 11)],
    "nrs_back": ["nrs_back"],
    "nrs_leg": ["nrs_leg"],
    "promis_pf_4a": [f"promis_pf_{i}" for i in range(1, 5)],
    "promis_pi_4a": [f"promis_pi_{i}" for i in range(1, 5)],
    # Patient-level in the synthetic tables (asked once, at baseline): copied onto time points.
    "startback": [f"startback_{i}" for i in range(1, 10)],
    # The work-status code (1-9); the scorer gives its band (working, off work ...).
    "work_status": ["work_status"],
    # PSFS ratings of the patient's named activities. Written only where a time point asks
    # for the PSFS (followup.services.instruments_for) and at least one activity is rated; the
    # names go to PsfsActivities (see _load_psfs_names).
    "psfs": [f"psfs_{i}" for i in range(1, 6)],
}
STATUS = {
    "completed": "completed",
    "not_due": "pending",
    "due": "open",
    "overdue": "open",
    "missed": "missed",
}
#: The tables holding most rows (about 30 per patient): their foreign keys are checked in bulk.
ROW_HEAVY_MODELS = (f.FollowUpTimePoint, f.Submission, f.QuestionnaireResponse)
FOLLOWUP_MODELS = (
    f.FollowUpSchedule, f.FollowUpTimePoint, f.Submission, f.QuestionnaireResponse,
    f.PsfsActivities,
)  # fmt: skip


@functools.lru_cache(maxsize=200_000)
def _scored(instrument_id: str, answers: tuple[Any, ...]) -> tuple[str, float, str, str]:
    """(answers JSON, score, band, extras JSON) of one answer set in item order, by the core
    scorer (cached: answer sets repeat). The score is NaN when there is none."""
    result = score(instrument_id, list(answers))
    item_ids = get_definition(instrument_id).item_ids
    return (
        canonical_json(dict(zip(item_ids, answers, strict=True))),
        np.nan if result.score is None else float(result.score),
        result.band or "",
        canonical_json(result.to_dict()["extras"]),
    )


def _uuid4_hex(count: int) -> list[str]:
    """``count`` random version-4 UUIDs as 32 hex digits (both databases accept this form)."""
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    text = raw.tobytes().hex()
    return [text[i : i + 32] for i in range(0, 32 * count, 32)]


def load_followups(
    sink: Sink,
    ids: IdAllocator,
    tp: pd.DataFrame,
    *,
    episode_ids: np.ndarray,
    patient_ids: np.ndarray,
    clinic_ids: np.ndarray,
    opioid_drugs: np.ndarray,
    startback: np.ndarray,
    treated: np.ndarray,
    position: np.ndarray,
    psfs_names: np.ndarray | None = None,
) -> None:
    """Write schedules, time points, submissions and responses for one chunk of patients.

    The patient arrays are aligned by position in the chunk (``startback``: the 9 STarT Back
    answers per patient, item order); ``position`` gives each time point's patient position.
    Every patient gets a schedule (the default protocol). ``psfs_names``: n x 5 activity names
    (None/NaN = no such activity), stored for each episode whose PSFS was answered.
    """
    protocol = default_protocol()
    count = len(episode_ids)
    schedule_ids = ids.take(f.FollowUpSchedule, count)
    keys = tp["timepoint"].astype(str).to_numpy()
    status = tp["status"].astype(str).map(STATUS).to_numpy()
    opens, closes = db_date_texts(tp["due_date"]), db_date_texts(tp["window_closes"])
    completed = status == "completed"
    completed_day = np.asarray(db_date_texts(tp["response_date"]), dtype=object)
    noon = [
        None if not done or day is None else dt.datetime.fromisoformat(f"{day}T12:00:00+00:00")
        for day, done in zip(completed_day, completed, strict=True)
    ]
    completed_at = [None if when is None else db_datetime_text(when) for when in noon]

    treatment = db_date_texts(treated)
    schedules = pd.DataFrame(
        {
            "id": schedule_ids,
            "episode_id": episode_ids,
            "protocol_id": protocol.id,
            "protocol_version": protocol.version,
            "treatment_date": treatment,
            "created_at": sink.now_db,
            "updated_at": sink.now_db,
        }
    )
    windows = [
        f"{k}:[{o},{c},{s}]"
        for k, o, c, s in zip(
            jsontext.strings(pd.Series(keys)), jsontext.iso_dates(opens),
            jsontext.iso_dates(closes), jsontext.strings(pd.Series(status)), strict=True,
        )
    ]  # fmt: skip
    sink.created(
        f.FollowUpSchedule,
        schedules,
        clinic_ids=clinic_ids,
        patient_ids=patient_ids,
        object_type="followup_schedule",
        new_values=jsontext.objects(
            {
                "episode_id": jsontext.integers(pd.Series(episode_ids)),
                "protocol": [canonical_json(f"{protocol.id} {protocol.version}")] * count,
                "time_points": _time_point_maps(windows, keys, position, count),
                "treatment_date": jsontext.iso_dates(treatment),
            }
        ),
    )

    labels = {p.id: p.label for p in build_schedule(dt.date(2025, 1, 1), protocol)}
    instruments = {key: canonical_json(instruments_for(key)) for key in labels}
    tp_ids = ids.take(f.FollowUpTimePoint, len(tp))
    sink.write(
        f.FollowUpTimePoint,
        pd.DataFrame(
            {
                "id": tp_ids,
                "schedule_id": schedule_ids[position],
                "patient_id": patient_ids[position],
                "clinic_id": clinic_ids[position],
                "public_id": _uuid4_hex(len(tp)),
                "key": keys,
                "label": [labels[k] for k in keys],
                "months": tp["months"].astype(float).to_numpy(),
                "target": db_date_texts(tp["target_date"]),
                "opens": opens,
                "closes": closes,
                "instruments": [instruments[k] for k in keys],
                "status": status,
                "completed_at": completed_at,
            }
        ),
    )
    done = np.flatnonzero(completed)
    answered = tp.iloc[done].reset_index(drop=True)
    answered[ITEM_COLUMNS["startback"]] = startback[position[done]]
    _load_submissions(
        sink, ids, answered,
        tp_ids=tp_ids[done], keys=keys[done], submitted_at=[completed_at[i] for i in done],
        patient_ids=patient_ids[position[done]], clinic_ids=clinic_ids[position[done]],
        opioid_drugs=opioid_drugs[position[done]],
    )  # fmt: skip
    if psfs_names is not None:
        _load_psfs_names(
            sink, ids, answered, psfs_names,
            tp_ids=tp_ids[done], keys=keys[done], position=position[done],
            submitted_at=[completed_at[i] for i in done], episode_ids=episode_ids,
            patient_ids=patient_ids, clinic_ids=clinic_ids,
        )  # fmt: skip


def _names_of(row: Any) -> list[str]:
    """A patient's activity names in slot order, up to the first empty slot."""
    names: list[str] = []
    for value in row:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            break
        names.append(str(value))
    return names


def _load_psfs_names(
    sink: Sink,
    ids: IdAllocator,
    done: pd.DataFrame,
    psfs_names: np.ndarray,
    *,
    tp_ids: np.ndarray,
    keys: np.ndarray,
    position: np.ndarray,
    submitted_at: list[str | None],
    episode_ids: np.ndarray,
    patient_ids: np.ndarray,
    clinic_ids: np.ndarray,
) -> None:
    """One PsfsActivities row (and its audit record, as the portal writes it) per episode
    whose PSFS was answered: named at the first answered time point asking the PSFS."""
    # per distinct key, not per row: a schedule has a handful of keys and a load 10^5+ rows
    asking = [key for key in set(keys.tolist()) if "psfs" in instruments_for(key)]
    asked = np.isin(keys, asking)
    rated = ~np.isnan(done[ITEM_COLUMNS["psfs"]].astype("float64").to_numpy()).all(axis=1)
    rows = np.flatnonzero(asked & rated)
    first: dict[int, int] = {}
    for i in rows.tolist():  # time points come ordered by patient, then time
        first.setdefault(int(position[i]), i)
    chosen = [(p, i, _names_of(psfs_names[p])) for p, i in sorted(first.items())]
    chosen = [(p, i, n) for p, i, n in chosen if n]
    if not chosen:
        return
    who = np.array([p for p, _, _ in chosen], dtype=np.int64)
    at = [i for _, i, _ in chosen]
    names = [canonical_json(n) for _, _, n in chosen]
    frame = pd.DataFrame(
        {
            "id": ids.take(f.PsfsActivities, len(chosen)),
            "episode_id": episode_ids[who],
            "names": names,
            "named_at": [submitted_at[i] for i in at],
            "time_point_id": tp_ids[at],
        }
    )
    sink.created(
        f.PsfsActivities,
        frame,
        clinic_ids=clinic_ids[who],
        patient_ids=patient_ids[who],
        object_type="psfs_activities",
        new_values=jsontext.objects(
            {
                "episode": jsontext.integers(pd.Series(episode_ids[who])),
                "names": names,
                "time_point": jsontext.strings(pd.Series(keys[at])),
            }
        ),
    )


def _time_point_maps(
    windows: Sequence[str], keys: np.ndarray, position: np.ndarray, count: int
) -> list[str]:
    """Per patient, the JSON object key -> [opens, closes, status] (keys sorted)."""
    order = np.lexsort((keys, position))
    bounds = np.searchsorted(position[order], np.arange(count + 1))
    ordered = [windows[i] for i in order]
    return ["{" + ",".join(ordered[a:b]) + "}" for a, b in itertools.pairwise(bounds)]


@functools.lru_cache(maxsize=4096)
def _opioid(current: int, drug: str | None, dose: float | None) -> tuple[str, float, str, str]:
    """The opioid-use response of one time point (see :func:`_opioid_answers`)."""
    return _scored("opioid_use", (current, drug, dose))


def _opioid_answers(uses: Any, drug: Any, mme: Any) -> tuple[int, str | None, float | None] | None:
    """The opioid-use answers in item order; None if unanswered.

    The daily dose is recovered from the generated MME and the CDC factor of the patient's
    opioid (an opioid started after baseline has no known drug: answered as "other", unscored).
    """
    if uses is None or pd.isna(uses):
        return None
    if not uses:
        return (0, None, None)
    if not isinstance(drug, str) or mme is None or pd.isna(mme):
        return (1, "other", None)
    return (1, drug, round(float(mme) / opioid_factor(drug).factor, 1))


def _instrument_responses(
    name: str, done: pd.DataFrame
) -> tuple[np.ndarray, list[str], np.ndarray, list[str], list[str]]:
    """(rows answered, answers JSON, score, band, extras JSON) of one instrument per time point.

    Distinct answer sets are scored once each; ODI takes the generator's score (which the core
    scorer reproduces, see tests) and its extras from the item sums.
    """
    if name == "opioid_use":
        answers_of = [
            _opioid_answers(u, d, mme)
            for u, d, mme in zip(done["opioid_use"].astype(object), done["_drug"], done["opioid_mme"].astype(object), strict=True)
        ]  # fmt: skip
        rows = np.array([i for i, a in enumerate(answers_of) if a is not None], dtype=np.int64)
        results = [_opioid(*answers_of[i]) for i in rows]
    else:
        matrix = done[ITEM_COLUMNS[name]].astype("float64").to_numpy()
        rows = np.arange(len(done), dtype=np.int64)
        if name == "psfs":  # a patient who named no activity has no PSFS to store
            rows = np.flatnonzero(~np.isnan(matrix).all(axis=1)).astype(np.int64)
            matrix = matrix[rows]
        if name == "odi":
            return (rows, *_odi_responses(matrix, done["odi"].to_numpy(dtype=float)))
        coded = np.where(np.isnan(matrix), -1, matrix).astype(np.int64)
        unique, inverse = np.unique(coded, axis=0, return_inverse=True)
        distinct = [_scored(name, tuple(None if v < 0 else int(v) for v in row)) for row in unique]
        results = [distinct[i] for i in inverse.reshape(-1)]
    return (
        rows,
        [r[0] for r in results],
        np.array([r[1] for r in results], dtype=float),
        [r[2] for r in results],
        [r[3] for r in results],
    )


def _odi_responses(
    matrix: np.ndarray, scores: np.ndarray
) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """ODI answers, score, band and extras ({raw, max_possible}) from the item matrix."""
    item_ids = get_definition("odi").item_ids
    order = np.argsort(np.array(item_ids))  # canonical JSON sorts keys
    template = "{" + ",".join(f'"{item_ids[i]}":%s' for i in order) + "}"
    texts = np.where(np.isnan(matrix), "null", np.nan_to_num(matrix).astype(np.int64).astype(str))
    answers = [template % tuple(row) for row in texts[:, order].tolist()]
    answered = (~np.isnan(matrix)).sum(axis=1)
    raw = np.nansum(matrix, axis=1).astype(np.int64)
    extras = [
        f'{{"max_possible":{5 * a},"raw":{r}}}'
        for a, r in zip(answered.tolist(), raw.tolist(), strict=True)
    ]
    definition = get_definition("odi")
    bands = {s: definition.band_for(s) or "" for s in np.unique(scores[~np.isnan(scores)]).tolist()}
    band = ["" if np.isnan(s) else bands[s] for s in scores.tolist()]
    missing = np.flatnonzero(np.isnan(scores))
    for i in missing.tolist():  # no score: the core says why (e.g. too many missing sections)
        answers[i], _, band[i], extras[i] = _scored(
            "odi", tuple(None if np.isnan(v) else int(v) for v in matrix[i])
        )
    return answers, scores, band, extras


def _load_submissions(
    sink: Sink,
    ids: IdAllocator,
    done: pd.DataFrame,
    *,
    tp_ids: np.ndarray,
    keys: np.ndarray,
    submitted_at: list[str | None],
    patient_ids: np.ndarray,
    clinic_ids: np.ndarray,
    opioid_drugs: np.ndarray,
) -> None:
    """One submission per completed time point, one response per instrument with data."""
    count = len(done)
    submission_ids = ids.take(f.Submission, count)
    # "SYN" + id: unique, visibly synthetic, and never equal to a service's hex reference.
    references = [f"SYN{int(i):09d}" for i in submission_ids]
    submissions = pd.DataFrame(
        {
            "id": submission_ids,
            "time_point_id": tp_ids,
            "idempotency_key": [f"synthetic-load-{int(i)}" for i in submission_ids],
            "reference": references,
            "submitted_at": submitted_at,
        }
    )
    done = done.assign(_drug=opioid_drugs)
    asked = {key: set(instruments_for(key)) for key in set(keys.tolist())}
    names = sorted(n for n in (*ITEM_COLUMNS, "opioid_use") if any(n in a for a in asked.values()))
    members: dict[str, list[str]] = {}
    frames = []
    for name in names:
        rows, answers, scores, bands, extras = _instrument_responses(name, done)
        keep = np.array([name in asked[k] for k in keys[rows].tolist()], dtype=bool)
        rows, scores = rows[keep], scores[keep]
        answers = [a for a, k in zip(answers, keep, strict=True) if k]
        bands = [b for b, k in zip(bands, keep, strict=True) if k]
        extras = [e for e, k in zip(extras, keep, strict=True) if k]
        version = get_definition(name).version
        head = f'"{name}":{{"answers":'
        tail = f',"version":{canonical_json(version)}}}'
        fragment = [""] * count
        for i, a, s, b in zip(
            rows.tolist(),
            answers,
            jsontext.numbers(scores),
            jsontext.strings(pd.Series(bands)),
            strict=True,
        ):
            fragment[i] = f'{head}{a},"band":{b},"score":{s}{tail}'
        members[name] = fragment
        frames.append(
            pd.DataFrame(
                {
                    "submission_id": submission_ids[rows],
                    "time_point_id": tp_ids[rows],
                    "instrument_id": name,
                    "instrument_version": version,
                    "answers": answers,
                    "score": scores,
                    "band": bands,
                    "extras": extras,
                    "submitted_at": [submitted_at[i] for i in rows.tolist()],
                }
            )
        )  # fmt: skip
    responses_json = [
        "{" + ",".join(part for part in parts if part) + "}"
        for parts in zip(*(members[n] for n in names), strict=True)
    ] if names else ["{}"] * count  # fmt: skip
    sink.created(
        f.Submission,
        submissions,
        clinic_ids=clinic_ids,
        patient_ids=patient_ids,
        object_type="followup_submission",
        new_values=jsontext.objects(
            {
                "reference": jsontext.strings(pd.Series(references)),
                "responses": responses_json,
                "time_point": jsontext.strings(pd.Series(keys)),
            }
        ),
    )
    responses = pd.concat(frames).sort_values(["submission_id", "instrument_id"], kind="stable")
    responses.insert(0, "id", ids.take(f.QuestionnaireResponse, len(responses)))
    sink.write(f.QuestionnaireResponse, responses.reset_index(drop=True))
