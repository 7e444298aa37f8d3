"""Map the synthetic cohort's tables onto registry rows and write them in bulk, with audit.

Each created object gets one ``create`` audit record, exactly as the registry services write
them, chained and hashed in the same order the rows are inserted; the actor is the system
account ``synthetic-loader`` so nobody can mistake the load for a person's work.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Model

from vertebra.cohort.bulk import IdAllocator, RawJson, insert_rows, reset_sequences
from vertebra.cohort.followups import load_followups
from vertebra.core.synth import Cohort
from vertebra.followup import models as f
from vertebra.registry import models as m
from vertebra.registry.audit import GENESIS_HASH

LOADER_USERNAME = "synthetic-loader"
CELL_ARMS = {"bmac", "bmac_prp", "adipose", "adipose_prp", "allogeneic", "allogeneic_prp"}
HARVEST_SOURCE = {"bone_marrow": "bone_marrow_iliac_crest", "adipose": "adipose"}
PROCESSING_METHOD = {"bone_marrow": "bmac", "adipose": "svf"}
HARVEST_VOLUME_ML = {"bone_marrow": 60.0, "adipose": 120.0}  # clinical.md §6 (U)
AE_CATEGORY = {
    "harvest_site_pain": "harvest_site",
    "post_procedure_pain": "pain_flare",
    "pain_flare": "pain_flare",
    "discitis": "infection",
    "infection": "infection",
    "radicular_symptoms": "neurological",
    "nerve_irritation": "neurological",
    "haematoma": "bleeding",
    "hematoma": "bleeding",
    "allergic_reaction": "allergic",
}
Progress = Callable[[str, int], None]
AuditSpec = tuple[str, Callable[[tuple[Any, ...]], dict[str, Any]]]


@dataclass
class LoadSummary:
    """How many rows of each kind were written."""

    counts: dict[str, int] = field(default_factory=dict)
    audit_rows: int = 0

    def add(self, name: str, count: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + count


class _AuditChain:
    """Builds audit rows for bulk-created objects, continuing the existing hash chain."""

    def __init__(self, actor_id: int, now: dt.datetime, reason: str) -> None:
        last = m.AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
        self.seq = last["seq"] if last else 0
        self.prev_hash = last["hash"] if last else GENESIS_HASH
        self.actor_id = actor_id
        self.now = now.astimezone(dt.UTC)
        self.reason = reason
        self.request_id = f"synth-{uuid.uuid4().hex[:12]}"
        self.stamp = self.now.isoformat(timespec="microseconds")
        self.reason_json = json.dumps(reason, ensure_ascii=False)
        self.rows: list[tuple[Any, ...]] = []

    def created(
        self,
        object_type: str,
        object_id: int,
        values: dict[str, Any],
        *,
        clinic_id: int | None,
        patient_id: int | None,
    ) -> None:
        """Append the ``create`` record of one object to the chain (written on flush)."""
        self.seq += 1
        new_values = RawJson(
            json.dumps(
                {k: _canonical(v) for k, v in values.items()},
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
                default=_json_default,
            )
        )
        digest = self._digest(object_type, str(object_id), clinic_id, patient_id, new_values)
        self.rows.append(
            (
                self.seq, self.now, self.actor_id, LOADER_USERNAME, "system", clinic_id,
                patient_id, "create", object_type, str(object_id), None, new_values,
                self.reason, self.request_id, self.prev_hash, digest,
            )
        )  # fmt: skip
        self.prev_hash = digest

    def _digest(
        self,
        object_type: str,
        object_id: str,
        clinic_id: int | None,
        patient_id: int | None,
        new_values: str,
    ) -> str:
        """The digest ``audit.compute_hash`` gives for this row, without a second JSON dump.

        The canonical JSON (sorted keys, compact separators) is assembled around the already
        serialised ``new_values``; ``tests/cohort`` checks every chain with
        ``verify_audit_chain``, which uses ``compute_hash`` itself.
        """
        text = (
            f'{{"action":"create","actor_user_id":{self.actor_id},'
            f'"actor_username":{json.dumps(LOADER_USERNAME)},"clinic_id":{_int(clinic_id)},'
            f'"new_values":{new_values},"object_id":{json.dumps(object_id)},'
            f'"object_type":{json.dumps(object_type)},"occurred_at":"{self.stamp}",'
            f'"old_values":null,"patient_id":{_int(patient_id)},"prev_hash":"{self.prev_hash}",'
            f'"reason":{self.reason_json},"request_id":{json.dumps(self.request_id)},'
            f'"role":"system","seq":{self.seq}}}'
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def flush(self, summary: LoadSummary) -> None:
        names = [
            "seq", "occurred_at", "actor_user_id", "actor_username", "role", "clinic_id",
            "patient_id", "action", "object_type", "object_id", "old_values", "new_values",
            "reason", "request_id", "prev_hash", "hash",
        ]  # fmt: skip
        summary.audit_rows += insert_rows(m.AuditEvent, names, self.rows)
        self.rows = []


def _canonical(value: Any) -> Any:
    """Integral floats as ints, at any depth, as ``audit.compute_hash`` does."""
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    """Dates and datetimes as ``audit.to_json_value`` writes them."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot record a {type(value).__name__} in the audit trail")


def _int(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def _write(
    model: type[Model],
    names: Sequence[str],
    rows: list[tuple[Any, ...]],
    chain: _AuditChain,
    summary: LoadSummary,
    *,
    clinic_of: Callable[[tuple[Any, ...]], int | None],
    patient_of: Callable[[tuple[Any, ...]], int | None],
    audit: AuditSpec | Literal["snapshot"] | None = "snapshot",
) -> None:
    """Insert rows (row[0] is the id) and append one ``create`` audit record per row.

    ``audit="snapshot"`` records the row's values, as the registry services do; an
    ``(object_type, new_values builder)`` pair records what the owning service records; None
    records nothing (rows that their service audits as part of another record).
    """
    insert_rows(model, names, rows)
    object_type = model._meta.model_name or model.__name__.lower()
    summary.add(object_type, len(rows))
    if audit is None:
        return
    for row in rows:
        if audit == "snapshot":
            kind, values = object_type, dict(zip(names, row, strict=True))
        else:
            kind, values = audit[0], audit[1](row)
        chain.created(kind, row[0], values, clinic_id=clinic_of(row), patient_id=patient_of(row))


def _date(value: Any) -> dt.date | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).date()


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _loader_user() -> Any:
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=LOADER_USERNAME, defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _staff_user(username: str) -> Any:
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


@transaction.atomic
def load_cohort(
    cohort: Cohort, *, now: dt.datetime, progress: Progress | None = None
) -> LoadSummary:
    """Write ``cohort`` into the registry in one transaction; return the row counts.

    Clinics get one clinician and one coordinator account each (unusable passwords; the demo
    gives its own accounts memberships separately). Raises on any constraint violation, in
    which case nothing is written.
    """
    report = progress or (lambda _stage, _count: None)
    summary = LoadSummary()
    ids = IdAllocator()
    loader = _loader_user()
    chain = _AuditChain(loader.pk, now, f"synthetic cohort load, seed {cohort.meta.get('seed')}")

    clinic_ids = _load_clinics(cohort.clinics, ids, chain, summary)
    operators = _clinic_staff(clinic_ids, ids, chain, summary, now)
    report("clinics", len(clinic_ids))

    patients = cohort.patients.reset_index(drop=True)
    patient_ids = np.asarray(ids.take(m.Patient, len(patients)))
    db_clinic = patients["clinic_id"].map(clinic_ids).to_numpy()
    _load_patients(patients, patient_ids, db_clinic, now, chain, summary)
    report("patients", len(patients))
    _load_consents_and_diagnoses(
        patients, patient_ids, db_clinic, operators, ids, chain, summary, now
    )
    episode_ids = _load_episodes(
        patients, patient_ids, db_clinic, operators, ids, chain, summary, now
    )
    report("pathway", len(patients))
    _load_events(
        cohort.events,
        patients,
        patient_ids,
        db_clinic,
        episode_ids,
        operators,
        ids,
        chain,
        summary,
        now,
    )
    report("events", len(cohort.events))
    episode_of_synthetic = dict(
        zip(
            patients["patient_id"].tolist(),
            [episode_ids[int(pid)] for pid in patient_ids],
            strict=True,
        )
    )
    clinic_of_patient = dict(zip(patient_ids.tolist(), db_clinic.tolist(), strict=True))
    drugs = patients["opioid_drug"].astype(object)
    load_followups(
        cohort.timepoints,
        {
            int(pid): (str(drug) if isinstance(drug, str) else None)
            for pid, drug in zip(patients["patient_id"], drugs, strict=True)
        },
        episode_of_synthetic,
        {eid: pid for pid, eid in episode_ids.items()},
        clinic_of_patient,
        ids=ids,
        write=functools.partial(_write, chain=chain, summary=summary),
        now=now,
    )
    report("follow-ups", len(cohort.timepoints))
    chain.flush(summary)
    reset_sequences(
        [
            m.Clinic,
            m.Membership,
            m.Patient,
            m.Consent,
            m.Diagnosis,
            m.PriorTreatment,
            m.TreatmentEpisode,
            m.AllogeneicLot,
            m.Harvest,
            m.Processing,
            m.Injection,
            m.AdverseEvent,
            m.ClinicalEvent,
            f.FollowUpSchedule,
            f.FollowUpTimePoint,
            f.Submission,
            f.QuestionnaireResponse,
            m.AuditEvent,
        ]
    )
    return summary


def _load_clinics(
    clinics: pd.DataFrame, ids: IdAllocator, chain: _AuditChain, summary: LoadSummary
) -> dict[int, int]:
    """Insert the clinics; return synthetic clinic id → database id."""
    new_ids = ids.take(m.Clinic, len(clinics))
    names = ["id", "name", "regulatory_status", "nct_id", "irb", "ind_number", "lab_accreditation"]
    rows = []
    mapping: dict[int, int] = {}
    seen_names: set[str] = set(m.Clinic.objects.values_list("name", flat=True))
    for new_id, clinic in zip(new_ids, _tuples(clinics), strict=True):
        trial = clinic.regulatory_status == "registered_trial"
        nct = clinic.nct_id if trial and isinstance(clinic.nct_id, str) else ""
        # Clinic names are unique in the registry; synthetic names can repeat in big cohorts.
        name = str(clinic.name)
        suffix = "" if name not in seen_names and new_id == clinic.clinic_id else f" ({new_id})"
        seen_names.add(name)
        rows.append(
            (
                new_id,
                f"{clinic.name}{suffix}",
                clinic.regulatory_status,
                nct,
                "Synthetic Central IRB (demo)" if trial else "",
                f"IND {19000 + int(clinic.clinic_id)}" if trial else "",
                "FACT-accredited cell lab (synthetic)"
                if clinic.regulatory_status != "none"
                else "",
            )
        )
        mapping[int(clinic.clinic_id)] = new_id
    _write(
        m.Clinic, names, rows, chain, summary, clinic_of=lambda r: r[0], patient_of=lambda r: None
    )
    return mapping


@dataclass(frozen=True)
class _Staff:
    clinician: int
    coordinator: int


def _clinic_staff(
    clinic_ids: dict[int, int],
    ids: IdAllocator,
    chain: _AuditChain,
    summary: LoadSummary,
    now: dt.datetime,
) -> dict[int, _Staff]:
    """One clinician and one coordinator per clinic (operators and recorders of the rows)."""
    staff: dict[int, _Staff] = {}
    rows = []
    for synth_id, clinic_id in clinic_ids.items():
        clinician = _staff_user(f"clinician-c{clinic_id}")
        coordinator = _staff_user(f"coordinator-c{clinic_id}")
        staff[clinic_id] = _Staff(clinician.pk, coordinator.pk)
        for user_id, role in ((clinician.pk, "clinician"), (coordinator.pk, "coordinator")):
            rows.append((user_id, clinic_id, role))
        assert synth_id is not None
    membership_ids = ids.take(m.Membership, len(rows))
    full = [(mid, *row) for mid, row in zip(membership_ids, rows, strict=True)]
    _write(
        m.Membership,
        ["id", "user_id", "clinic_id", "role"],
        full,
        chain,
        summary,
        clinic_of=lambda r: r[2],
        patient_of=lambda r: None,
    )
    return staff


def _birth_dates(patients: pd.DataFrame, now: dt.datetime) -> list[dt.date]:
    """A date of birth consistent with the age at treatment (day of year spread by id)."""
    treated = pd.to_datetime(patients["treatment_date"])
    offsets = (patients["patient_id"].to_numpy() * 37) % 365
    births = treated - pd.to_timedelta(patients["age"].to_numpy() * 365.25 + offsets, unit="D")
    return [d.date() for d in births]


def _load_patients(
    patients: pd.DataFrame,
    patient_ids: np.ndarray,
    db_clinic: np.ndarray,
    now: dt.datetime,
    chain: _AuditChain,
    summary: LoadSummary,
) -> None:
    names = [
        "id", "clinic_id", "mrn", "given_name", "family_name", "date_of_birth", "sex",
        "email", "phone", "created_at", "version",
    ]  # fmt: skip
    births = _birth_dates(patients, now)
    rows = [
        (
            int(pid),
            int(cid),
            f"SYN-{int(sid):07d}",
            str(first),
            str(last),
            born,
            str(sex),
            str(email),
            "",
            now,
            1,
        )
        for pid, cid, sid, first, last, born, sex, email in zip(
            patient_ids,
            db_clinic,
            patients["patient_id"],
            patients["first_name"],
            patients["last_name"],
            births,
            patients["sex"],
            patients["email"],
            strict=True,
        )
    ]
    _write(
        m.Patient, names, rows, chain, summary, clinic_of=lambda r: r[1], patient_of=lambda r: r[0]
    )


def _load_consents_and_diagnoses(
    patients: pd.DataFrame,
    patient_ids: np.ndarray,
    db_clinic: np.ndarray,
    operators: dict[int, _Staff],
    ids: IdAllocator,
    chain: _AuditChain,
    summary: LoadSummary,
    now: dt.datetime,
) -> None:
    clinic_of_patient = dict(zip(patient_ids.tolist(), db_clinic.tolist(), strict=True))
    treated = [d.date() for d in pd.to_datetime(patients["treatment_date"])]
    consent_rows = []
    consent_ids = iter(ids.take(m.Consent, 2 * len(patients)))
    for pid, cid, day in zip(patient_ids.tolist(), db_clinic.tolist(), treated, strict=True):
        signed = day - dt.timedelta(days=14)
        recorder = operators[cid].coordinator
        consent_rows.append(
            (next(consent_ids), pid, "registry", "registry-consent v2", signed, recorder, None)
        )
        consent_rows.append(
            (next(consent_ids), pid, "treatment", "treatment-consent v1", signed, recorder, None)
        )
    _write(
        m.Consent,
        ["id", "patient_id", "kind", "form_version", "signed_on", "recorded_by_id", "withdrawn_on"],
        consent_rows,
        chain,
        summary,
        clinic_of=lambda r: clinic_of_patient[r[1]],
        patient_of=lambda r: r[1],
    )

    diagnosis_ids = ids.take(m.Diagnosis, len(patients))
    diagnosis_rows = []
    for did, pid, row, day in zip(
        diagnosis_ids, patient_ids.tolist(), _tuples(patients), treated, strict=True
    ):
        stenosis = "moderate" if row.condition == "spinal_stenosis" else "none"
        diagnosis_rows.append(
            (
                did,
                pid,
                str(row.condition),
                str(row.icd10),
                day - dt.timedelta(days=60),
                str(row.level),
                "",
                int(row.pfirrmann_grade),
                int(row.modic_type),
                float(row.disc_height_pct),
                0,
                stenosis,
                now,
            )
        )
    _write(
        m.Diagnosis,
        [
            "id",
            "patient_id",
            "condition",
            "icd10",
            "diagnosed_on",
            "level",
            "laterality",
            "pfirrmann_grade",
            "modic_type",
            "disc_height_pct",
            "spondylolisthesis_grade",
            "stenosis",
            "created_at",
        ],
        diagnosis_rows,
        chain,
        summary,
        clinic_of=lambda r: clinic_of_patient[r[1]],
        patient_of=lambda r: r[1],
    )

    prior_rows: list[tuple[Any, ...]] = []
    for pid, row, day in zip(patient_ids.tolist(), _tuples(patients), treated, strict=True):
        start = day - dt.timedelta(days=int(row.pain_duration_months) * 30)
        if row.opioid_use_baseline and isinstance(row.opioid_drug, str):
            prior_rows.append(
                (
                    pid,
                    "medication",
                    "opioid at baseline",
                    row.opioid_drug,
                    _num(row.opioid_dose_mg_day),
                    _num(row.opioid_mme_baseline),
                    None,
                    start,
                    None,
                )
            )
        elif row.prior_medication:
            prior_rows.append(
                (pid, "medication", "NSAID or paracetamol", "", None, None, None, start, None)
            )
        if row.prior_physical_therapy:
            prior_rows.append(
                (
                    pid,
                    "physical_therapy",
                    "supervised exercise programme",
                    "",
                    None,
                    None,
                    None,
                    start,
                    None,
                )
            )
        if row.prior_steroid_injection:
            relief = (
                None
                if pd.isna(row.prior_steroid_relief_weeks)
                else int(row.prior_steroid_relief_weeks)
            )
            prior_rows.append(
                (
                    pid,
                    "steroid_injection",
                    "epidural steroid injection",
                    "",
                    None,
                    None,
                    relief,
                    start,
                    None,
                )
            )
    prior_ids = ids.take(m.PriorTreatment, len(prior_rows))
    full = [(i, *row) for i, row in zip(prior_ids, prior_rows, strict=True)]
    _write(
        m.PriorTreatment,
        [
            "id",
            "patient_id",
            "kind",
            "details",
            "medication_name",
            "daily_dose",
            "mme_per_day",
            "relief_weeks",
            "started_on",
            "ended_on",
        ],
        full,
        chain,
        summary,
        clinic_of=lambda r: clinic_of_patient[r[1]],
        patient_of=lambda r: r[1],
    )


def _load_episodes(
    patients: pd.DataFrame,
    patient_ids: np.ndarray,
    db_clinic: np.ndarray,
    operators: dict[int, _Staff],
    ids: IdAllocator,
    chain: _AuditChain,
    summary: LoadSummary,
    now: dt.datetime,
) -> dict[int, int]:
    """Episodes and, for cell therapy, harvest → processing → injection; patient → episode id."""
    clinic_of_patient = dict(zip(patient_ids.tolist(), db_clinic.tolist(), strict=True))
    treated = [d.date() for d in pd.to_datetime(patients["treatment_date"])]
    episode_ids = ids.take(m.TreatmentEpisode, len(patients))
    episode_rows = []
    by_patient: dict[int, int] = {}
    for eid, pid, arm, day in zip(
        episode_ids, patient_ids.tolist(), patients["arm"].astype(str), treated, strict=True
    ):
        episode_rows.append((eid, pid, "cell_therapy" if arm in CELL_ARMS else arm, day, now, 1))
        by_patient[pid] = eid
    _write(
        m.TreatmentEpisode,
        ["id", "patient_id", "arm", "start_date", "created_at", "version"],
        episode_rows,
        chain,
        summary,
        clinic_of=lambda r: clinic_of_patient[r[1]],
        patient_of=lambda r: r[1],
    )

    cell = patients["arm"].astype(str).isin(CELL_ARMS).to_numpy()
    lots = _allogeneic_lots(ids, chain, summary, min(treated) if treated else now.date())
    harvests: list[tuple[Any, ...]] = []
    processings: list[tuple[Any, ...]] = []
    injections: list[tuple[Any, ...]] = []
    patient_of_episode = {eid: pid for pid, eid in by_patient.items()}
    for index in np.flatnonzero(cell):
        row: Any = patients.iloc[index]
        pid = int(patient_ids[index])
        eid = by_patient[pid]
        day = treated[index]
        operator = operators[clinic_of_patient[pid]].clinician
        source = str(row["cell_source"])
        levels = [str(row["level"])]
        prp = str(row["adjunct"]) == "prp"
        if source == "allogeneic":
            lot_id = lots[int(row["patient_id"]) % len(lots)]
            injections.append(
                (
                    eid,
                    None,
                    lot_id,
                    levels,
                    "intradiscal",
                    "fluoroscopy",
                    1.0,
                    _num(row["cell_dose_e6"]),
                    day,
                    operator,
                )
            )
            continue
        harvests.append(
            (eid, HARVEST_SOURCE[source], None, HARVEST_VOLUME_ML[source], day, operator)
        )
        processings.append(
            (
                PROCESSING_METHOD[source],
                "On-site point-of-care lab (synthetic)",
                day,
                _num(row["tnc_e6_per_ml"]),
                _num(row["cfu_f_per_ml"]),
                None,
                _num(row["viability_pct"]),
                "pass",
                prp,
                False,
                f"SYN-{chain.request_id[-6:].upper()}-{source[:3].upper()}-{int(row['patient_id']):07d}",
            )
        )
        injections.append(
            (
                eid,
                "processing",
                None,
                levels,
                "intradiscal",
                "fluoroscopy",
                2.0,
                _num(row["cell_dose_e6"]),
                day,
                operator,
            )
        )

    harvest_ids = list(ids.take(m.Harvest, len(harvests)))
    harvest_rows = [(hid, *row) for hid, row in zip(harvest_ids, harvests, strict=True)]
    _write(
        m.Harvest,
        [
            "id",
            "episode_id",
            "source",
            "allogeneic_lot_id",
            "volume_ml",
            "harvested_on",
            "operator_id",
        ],
        harvest_rows,
        chain,
        summary,
        clinic_of=lambda r: clinic_of_patient[patient_of_episode[r[1]]],
        patient_of=lambda r: patient_of_episode[r[1]],
    )
    processing_ids = list(ids.take(m.Processing, len(processings)))
    processing_rows = [
        (qid, hid, *row)
        for qid, hid, row in zip(processing_ids, harvest_ids, processings, strict=True)
    ]
    episode_of_harvest = {r[0]: r[1] for r in harvest_rows}
    _write(
        m.Processing,
        [
            "id",
            "harvest_id",
            "method",
            "lab",
            "processed_on",
            "tnc_per_ml",
            "cfu_f_per_ml",
            "cd34_pct",
            "viability_pct",
            "sterility",
            "adjunct_prp",
            "adjunct_hyaluronic_acid",
            "product_id",
        ],
        processing_rows,
        chain,
        summary,
        clinic_of=lambda r: clinic_of_patient[patient_of_episode[episode_of_harvest[r[1]]]],
        patient_of=lambda r: patient_of_episode[episode_of_harvest[r[1]]],
    )
    processing_of_episode = {episode_of_harvest[r[1]]: r[0] for r in processing_rows}
    injection_ids = ids.take(m.Injection, len(injections))
    injection_rows = []
    for iid, (eid, kind, lot_id, *rest) in zip(injection_ids, injections, strict=True):
        processing_id = processing_of_episode[eid] if kind == "processing" else None
        injection_rows.append((iid, eid, processing_id, lot_id, *rest))
    _write(
        m.Injection,
        [
            "id",
            "episode_id",
            "processing_id",
            "allogeneic_lot_id",
            "levels",
            "target",
            "guidance",
            "volume_ml",
            "cell_dose",
            "injected_on",
            "operator_id",
        ],
        injection_rows,
        chain,
        summary,
        clinic_of=lambda r: clinic_of_patient[patient_of_episode[r[1]]],
        patient_of=lambda r: patient_of_episode[r[1]],
    )
    return by_patient


def _allogeneic_lots(
    ids: IdAllocator, chain: _AuditChain, summary: LoadSummary, first_day: dt.date
) -> list[int]:
    """Three released allogeneic lots the allogeneic arms draw from."""
    lot_ids = list(ids.take(m.AllogeneicLot, 3))
    suffix = uuid.uuid4().hex[:6].upper()
    rows = [
        (lot_id, f"SYN-LOT-{suffix}-{n}", "Allogeneic disc progenitor cells (synthetic)", True,
         first_day - dt.timedelta(days=30))
        for n, lot_id in enumerate(lot_ids, start=1)
    ]  # fmt: skip
    _write(
        m.AllogeneicLot,
        ["id", "lot_number", "product", "released", "released_on"],
        rows,
        chain,
        summary,
        clinic_of=lambda r: None,
        patient_of=lambda r: None,
    )
    return lot_ids


def _load_events(
    events: pd.DataFrame,
    patients: pd.DataFrame,
    patient_ids: np.ndarray,
    db_clinic: np.ndarray,
    episode_ids: dict[int, int],
    operators: dict[int, _Staff],
    ids: IdAllocator,
    chain: _AuditChain,
    summary: LoadSummary,
    now: dt.datetime,
) -> None:
    """Adverse events (adjudicated or pending) and clinical events (surgery, repeat injection)."""
    to_db = dict(zip(patients["patient_id"].tolist(), patient_ids.tolist(), strict=True))
    clinic_of_patient = dict(zip(patient_ids.tolist(), db_clinic.tolist(), strict=True))
    adverse, clinical = [], []
    for event in _event_rows(events):
        pid = to_db[int(event["patient_id"])]
        eid = episode_ids.get(pid)
        day = _date(event["event_date"])
        term = str(event["term"])
        if event["event_type"] == "adverse_event":
            adjudicated = event["adjudication"] == "adjudicated"
            grade = None if pd.isna(event["ctcae_grade"]) else int(event["ctcae_grade"])
            adverse.append(
                (
                    pid,
                    eid,
                    term.replace("_", " ").capitalize(),
                    AE_CATEGORY.get(term, "other"),
                    day,
                    grade if adjudicated else None,
                    bool(event["serious"]) if adjudicated else False,
                    str(event["relatedness"]) if adjudicated else "",
                    bool(event["expected"]) if adjudicated else None,
                    "recovered" if adjudicated else "unknown",
                    (day + dt.timedelta(days=14)) if adjudicated and day else None,
                    "adjudicated" if adjudicated else "pending",
                    operators[clinic_of_patient[pid]].clinician if adjudicated else None,
                    now if adjudicated else None,
                )
            )
        else:
            clinical.append((pid, eid, str(event["event_type"]), day, term.replace("_", " ")))
    ae_ids = ids.take(m.AdverseEvent, len(adverse))
    _write(
        m.AdverseEvent,
        [
            "id",
            "patient_id",
            "episode_id",
            "description",
            "category",
            "onset",
            "ctcae_grade",
            "serious",
            "relatedness",
            "expected",
            "outcome",
            "resolved_on",
            "status",
            "adjudicated_by_id",
            "adjudicated_at",
        ],
        [(i, *row) for i, row in zip(ae_ids, adverse, strict=True)],
        chain,
        summary,
        clinic_of=lambda r: clinic_of_patient[r[1]],
        patient_of=lambda r: r[1],
    )
    ce_ids = ids.take(m.ClinicalEvent, len(clinical))
    _write(
        m.ClinicalEvent,
        ["id", "patient_id", "episode_id", "kind", "occurred_on", "details"],
        [(i, *row) for i, row in zip(ce_ids, clinical, strict=True)],
        chain,
        summary,
        clinic_of=lambda r: clinic_of_patient[r[1]],
        patient_of=lambda r: r[1],
    )


def _event_rows(events: pd.DataFrame) -> Iterator[dict[str, Any]]:
    for record in events.to_dict("records"):
        yield {str(key): value for key, value in record.items()}


def _tuples(frame: pd.DataFrame) -> Iterator[Any]:
    """Rows as named tuples, typed loosely: the frames' columns are checked by the generator."""
    return iter(frame.itertuples(index=False))


def registry_is_empty() -> bool:
    """True when no patient exists yet (the demo loads its cohort only then)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {m.Patient._meta.db_table} LIMIT 1")
        return cursor.fetchone() is None
