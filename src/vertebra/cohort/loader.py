"""Map the synthetic cohort's tables onto registry rows and write them in bulk, with audit.

Each created object gets one ``create`` audit record, exactly as the registry services write
them, chained and hashed in the same order the rows are written; the actor is the system
account ``synthetic-loader`` so nobody can mistake the load for a person's work.

Rows are built a chunk of patients at a time with column operations (no per-patient Python
objects), so memory is bounded by one chunk and, on PostgreSQL, the server stores one chunk
while the next is built (:class:`vertebra.cohort.bulk.FrameWriter`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Model

from vertebra.cohort import jsontext
from vertebra.cohort.bulk import (
    FrameWriter,
    IdAllocator,
    db_date_texts,
    foreign_keys_checked_at_end,
    reset_sequences,
)
from vertebra.cohort.followups import FOLLOWUP_MODELS, ROW_HEAVY_MODELS, load_followups
from vertebra.cohort.sink import LOADER_USERNAME, AuditTrail, Sink
from vertebra.core.synth import Cohort
from vertebra.followup.models import TimePointCount, TimePointScores
from vertebra.registry import models as m
from vertebra.registry.audit import lock_chain

__all__ = ["LOADER_USERNAME", "LoadSummary", "load_cohort", "registry_is_empty"]

CELL_ARMS = ("bmac", "bmac_prp", "adipose", "adipose_prp", "allogeneic", "allogeneic_prp")
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
#: Patients per chunk: bounds memory (about 1 GB at 10,000) and sets the write pipeline's grain.
CHUNK_PATIENTS = 10_000
REGISTRY_MODELS = (
    m.Clinic, m.Membership, m.Patient, m.Consent, m.Diagnosis, m.PriorTreatment,
    m.TreatmentEpisode, m.AllogeneicLot, m.Harvest, m.Processing, m.Injection, m.AdverseEvent,
    m.ClinicalEvent, m.AuditEvent,
)  # fmt: skip
Progress = Callable[[str, int], None]


@dataclass
class LoadSummary:
    """How many rows of each kind were written, and how many audit records."""

    counts: dict[str, int] = field(default_factory=dict)
    audit_rows: int = 0


@dataclass(frozen=True)
class _Staff:
    clinician: dict[int, int]  # clinic id -> user id
    coordinator: dict[int, int]


@dataclass
class _Context:
    sink: Sink
    ids: IdAllocator
    staff: _Staff
    clinic_ids: dict[int, int]  # synthetic clinic id -> database id
    lots: np.ndarray
    batch: str  # distinguishes this load's product ids and lot numbers from another load's


def _users(usernames: list[str], *, active: bool) -> dict[str, int]:
    """Get or create accounts with unusable passwords; username -> id."""
    user_model = get_user_model()
    found: dict[str, int] = {}
    for username in usernames:
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"is_active": active}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        found[username] = int(user.pk)
    return found


#: Tables the load fills through database triggers (counts, kept scores): not written by the
#: loader itself, but analysed and vacuumed with the tables it writes.
KEPT_BY_TRIGGERS: tuple[type[Model], ...] = (TimePointCount, TimePointScores)


def load_cohort(
    cohort: Cohort,
    *,
    now: dt.datetime,
    progress: Progress | None = None,
    chunk_patients: int = CHUNK_PATIENTS,
) -> LoadSummary:
    """Write ``cohort`` into the registry in one transaction; return the row counts.

    Clinics get one clinician and one coordinator account each (unusable passwords; the demo
    gives its own accounts memberships separately). Raises on any constraint violation, in
    which case nothing is written. ``progress(stage, count)`` is called after each chunk.
    When the load is its own transaction (not inside the caller's), the written tables are
    vacuumed after the commit (:func:`vacuum`).
    """
    outermost = not connection.in_atomic_block
    # When the load is its own transaction, the VACUUM (ANALYZE) after the commit refreshes the
    # statistics: an ANALYZE inside as well would sample every table twice (~6 s at 100,000).
    summary = _load_in_one_transaction(
        cohort,
        now=now,
        progress=progress,
        chunk_patients=chunk_patients,
        analyze_inside=not outermost,
    )
    if outermost:
        vacuum((*REGISTRY_MODELS, *FOLLOWUP_MODELS, *KEPT_BY_TRIGGERS))
    return summary


@transaction.atomic
def _load_in_one_transaction(
    cohort: Cohort,
    *,
    now: dt.datetime,
    progress: Progress | None,
    chunk_patients: int,
    analyze_inside: bool,
) -> LoadSummary:
    """:func:`load_cohort`'s writes, all in one transaction; ``analyze_inside``: refresh the
    planner's statistics before the commit (for a caller whose transaction goes on reading)."""
    report = progress or (lambda _stage, _count: None)
    ids = IdAllocator()
    for model in (*REGISTRY_MODELS, *FOLLOWUP_MODELS):
        ids.take(model, 0)  # read every MAX(id) now: the writer owns the connection later
    loader_id = _users([LOADER_USERNAME], active=False)[LOADER_USERNAME]
    clinic_ids = dict(
        zip(cohort.clinics["clinic_id"].astype(int), ids.take(m.Clinic, len(cohort.clinics)).tolist(), strict=True)
    )  # fmt: skip
    accounts = _users(
        [f"{role}-c{cid}" for cid in clinic_ids.values() for role in ("clinician", "coordinator")],
        active=True,
    )
    staff = _Staff(
        {cid: accounts[f"clinician-c{cid}"] for cid in clinic_ids.values()},
        {cid: accounts[f"coordinator-c{cid}"] for cid in clinic_ids.values()},
    )
    taken_names = set(m.Clinic.objects.values_list("name", flat=True))
    lock_chain()
    trail = AuditTrail(loader_id, now, f"synthetic cohort load, seed {cohort.meta.get('seed')}")
    if connection.vendor == "postgresql":
        # Check foreign keys as rows arrive (overlapping the checks with building the next
        # chunk) rather than all at commit, after everything else is done.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with foreign_keys_checked_at_end(ROW_HEAVY_MODELS), FrameWriter() as writer:
        sink = Sink(writer, trail, now)
        batch = trail.request_id[-6:].upper()
        _load_clinics(sink, cohort.clinics, clinic_ids, taken_names)
        _load_memberships(sink, ids, staff)
        first_treatment = cohort.patients["treatment_date"].min()
        if pd.isna(first_treatment):  # clinics only (an empty demo): lots released a month ago
            first_treatment = pd.Timestamp(now.date())
        lots = _load_lots(sink, ids, first_treatment, batch)
        report("clinics", len(clinic_ids))
        context = _Context(sink, ids, staff, clinic_ids, lots, batch)
        done = 0
        for patients, timepoints, events in _chunks(cohort, chunk_patients):
            _load_chunk(context, patients, timepoints, events)
            done += len(patients)
            report("patients", done)
    trail.seal()  # the connection is free again: seal the rows, still under the chain lock
    reset_sequences((*REGISTRY_MODELS, *FOLLOWUP_MODELS))
    if analyze_inside:
        analyze((*REGISTRY_MODELS, *FOLLOWUP_MODELS, *KEPT_BY_TRIGGERS))
    counts = {k: v for k, v in writer.counts.items() if k != "auditevent"}
    return LoadSummary(counts=counts, audit_rows=trail.rows)


def analyze(models: Iterable[type[Model]]) -> None:
    """Refresh the PostgreSQL planner's statistics of ``models``' tables (no-op elsewhere).

    A bulk load leaves the planner with the statistics of the empty tables until autovacuum
    gets round to them, minutes later: in between, the pages get plans for empty tables (a
    nested loop over a million rows). ANALYZE samples (30,000 rows a table), so it takes a few
    seconds at 1,000,000 patients; inside the load's transaction it sees the new rows.
    """
    if connection.vendor != "postgresql":
        return
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {tables}")


def vacuum(models: Iterable[type[Model]]) -> None:
    """``VACUUM (ANALYZE)`` the tables of ``models`` on PostgreSQL (no-op elsewhere), outside
    any transaction (VACUUM cannot run in one).

    A bulk load leaves every page of the new rows unmarked in the visibility map until
    autovacuum visits them, so index-only scans fetch the heap for every row: at 1,000,000
    patients the family-name searches were 2.5x slower (502 against 197 ms p95) until the
    patient table was vacuumed (ADR 0023 §8).
    """
    if connection.vendor != "postgresql":
        return
    tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {tables}")


def _chunks(cohort: Cohort, size: int) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """(patients, their time points, their events) per chunk of ``size`` patients."""
    patients = cohort.patients.reset_index(drop=True)
    tp = cohort.timepoints.sort_values("patient_id", kind="stable").reset_index(drop=True)
    events = cohort.events.sort_values("patient_id", kind="stable").reset_index(drop=True)
    tp_pid, ev_pid = tp["patient_id"].to_numpy(), events["patient_id"].to_numpy()
    for start in range(0, len(patients), max(1, size)):
        part = patients.iloc[start : start + size].reset_index(drop=True)
        wanted = part["patient_id"].to_numpy()
        yield (
            part,
            tp[np.isin(tp_pid, wanted)].reset_index(drop=True),
            events[np.isin(ev_pid, wanted)].reset_index(drop=True),
        )


def _load_clinics(
    sink: Sink, clinics: pd.DataFrame, clinic_ids: dict[int, int], taken: set[str]
) -> None:
    trial = (clinics["regulatory_status"].astype(str) == "registered_trial").to_numpy()
    names = []
    for synth_id, name in zip(
        clinics["clinic_id"].astype(int), clinics["name"].astype(str), strict=True
    ):
        # Clinic names are unique in the registry; synthetic names can repeat in big cohorts.
        new_id = clinic_ids[synth_id]
        names.append(name if name not in taken and new_id == synth_id else f"{name} ({new_id})")
        taken.add(name)
    synth_ids = clinics["clinic_id"].astype(int).to_numpy()
    status = clinics["regulatory_status"].astype(str).to_numpy()
    nct = clinics["nct_id"].astype(object).to_numpy()
    frame = pd.DataFrame(
        {
            "id": [clinic_ids[int(c)] for c in synth_ids],
            "name": names,
            "regulatory_status": status,
            "nct_id": [str(n) if t and isinstance(n, str) else "" for n, t in zip(nct, trial, strict=True)],
            "irb": np.where(trial, "Synthetic Central IRB (demo)", ""),
            "ind_number": [f"IND {19000 + int(c)}" if t else "" for c, t in zip(synth_ids, trial, strict=True)],
            "lab_accreditation": np.where(status != "none", "FACT-accredited cell lab (synthetic)", ""),
        }
    )  # fmt: skip
    sink.created(m.Clinic, frame, clinic_ids=frame["id"], patient_ids=None)


def _load_memberships(sink: Sink, ids: IdAllocator, staff: _Staff) -> None:
    """One clinician and one coordinator per clinic (operators and recorders of the rows)."""
    rows = [
        (user, clinic, role)
        for clinic in staff.clinician
        for user, role in ((staff.clinician[clinic], "clinician"), (staff.coordinator[clinic], "coordinator"))
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["user_id", "clinic_id", "role"])
    frame.insert(0, "id", ids.take(m.Membership, len(frame)))
    sink.created(m.Membership, frame, clinic_ids=frame["clinic_id"], patient_ids=None)


def _load_lots(sink: Sink, ids: IdAllocator, first_treatment: Any, batch: str) -> np.ndarray:
    """Three released allogeneic lots the allogeneic arms draw from."""
    lot_ids = ids.take(m.AllogeneicLot, 3)
    released = (pd.Timestamp(first_treatment) - pd.Timedelta(days=30)).date().isoformat()
    frame = pd.DataFrame(
        {
            "id": lot_ids,
            "lot_number": [f"SYN-LOT-{batch}-{n}" for n in range(1, 4)],
            "product": "Allogeneic disc progenitor cells (synthetic)",
            "released": True,
            "released_on": released,
        }
    )
    sink.created(m.AllogeneicLot, frame, clinic_ids=None, patient_ids=None)
    return lot_ids


@dataclass(frozen=True)
class _Chunk:
    """One chunk's patients as columns, aligned by position."""

    frame: pd.DataFrame
    patient_ids: np.ndarray  # database ids
    clinic_ids: np.ndarray  # database clinic id of each patient
    treated: np.ndarray  # treatment date, datetime64[D]
    episode_ids: np.ndarray

    def days_before(self, days: Any) -> list[str | None]:
        return db_date_texts(self.treated - np.asarray(days).astype("timedelta64[D]"))


def _load_chunk(
    context: _Context, patients: pd.DataFrame, timepoints: pd.DataFrame, events: pd.DataFrame
) -> None:
    ids = context.ids
    clinic = patients["clinic_id"].astype(int).map(context.clinic_ids).to_numpy(dtype=np.int64)
    chunk = _Chunk(
        patients,
        ids.take(m.Patient, len(patients)),
        clinic,
        patients["treatment_date"].to_numpy().astype("datetime64[D]"),
        ids.take(m.TreatmentEpisode, len(patients)),
    )
    _load_patients(context, chunk)
    _load_consents(context, chunk)
    _load_diagnoses(context, chunk)
    _load_prior_treatments(context, chunk)
    _load_pathway(context, chunk)
    _load_events(context, chunk, events)
    position = pd.Index(patients["patient_id"].to_numpy()).get_indexer(
        pd.Index(timepoints["patient_id"])
    )
    load_followups(
        context.sink,
        ids,
        timepoints,
        episode_ids=chunk.episode_ids,
        patient_ids=chunk.patient_ids,
        clinic_ids=chunk.clinic_ids,
        opioid_drugs=patients["opioid_drug"].astype(object).to_numpy(),
        startback=patients[[f"startback_{i}" for i in range(1, 10)]].to_numpy(dtype=float),
        treated=chunk.treated,
        position=position,
        psfs_names=_psfs_names(patients),
    )


def _psfs_names(patients: pd.DataFrame) -> np.ndarray | None:
    """The n x 5 PSFS activity names of a chunk (None for a cohort generated without them)."""
    columns = [f"psfs_activity_{j}" for j in range(1, 6)]
    if not set(columns) <= set(patients.columns):
        return None
    return patients[columns].astype(object).to_numpy()


def _load_patients(context: _Context, chunk: _Chunk) -> None:
    p = chunk.frame
    synth_ids = p["patient_id"].to_numpy()
    # A date of birth consistent with the age at treatment (day of year spread by id).
    age_days = np.floor(p["age"].to_numpy() * 365.25 + (synth_ids * 37) % 365).astype(
        "timedelta64[D]"
    )
    frame = pd.DataFrame(
        {
            "id": chunk.patient_ids,
            "clinic_id": chunk.clinic_ids,
            "mrn": [f"SYN-{int(s):07d}" for s in synth_ids],
            "given_name": p["first_name"].astype(str).to_numpy(),
            "family_name": p["last_name"].astype(str).to_numpy(),
            "date_of_birth": db_date_texts(chunk.treated - age_days),
            "sex": p["sex"].astype(str).to_numpy(),
            "email": p["email"].astype(str).to_numpy(),
            "phone": "",
            "created_at": context.sink.now_db,
            "version": 1,
        }
    )  # fmt: skip
    context.sink.created(
        m.Patient, frame, clinic_ids=chunk.clinic_ids, patient_ids=chunk.patient_ids
    )


def _load_consents(context: _Context, chunk: _Chunk) -> None:
    count = len(chunk.patient_ids)
    signed = np.repeat(np.asarray(chunk.days_before(np.full(count, 14)), dtype=object), 2)
    recorder = pd.Series(chunk.clinic_ids).map(context.staff.coordinator).to_numpy()
    frame = pd.DataFrame(
        {
            "id": context.ids.take(m.Consent, 2 * count),
            "patient_id": np.repeat(chunk.patient_ids, 2),
            "kind": np.tile(["registry", "treatment"], count),
            "form_version": np.tile(["registry-consent v2", "treatment-consent v1"], count),
            "signed_on": signed,
            "recorded_by_id": np.repeat(recorder, 2),
            "withdrawn_on": None,
        }
    )
    context.sink.created(
        m.Consent, frame, clinic_ids=np.repeat(chunk.clinic_ids, 2), patient_ids=frame["patient_id"]
    )


def _load_diagnoses(context: _Context, chunk: _Chunk) -> None:
    p = chunk.frame
    count = len(p)
    condition = p["condition"].astype(str).to_numpy()
    frame = pd.DataFrame(
        {
            "id": context.ids.take(m.Diagnosis, count),
            "patient_id": chunk.patient_ids,
            "condition": condition,
            "icd10": p["icd10"].astype(str).to_numpy(),
            "diagnosed_on": chunk.days_before(np.full(count, 60)),
            "level": p["level"].astype(str).to_numpy(),
            "laterality": "",
            "pfirrmann_grade": p["pfirrmann_grade"].astype(int).to_numpy(),  # classic 1-5
            "modified_pfirrmann_grade": pd.Series([None] * count, dtype="Int64"),  # ADR 0006
            "modic_type": p["modic_type"].astype(int).to_numpy(),
            "disc_height_pct": p["disc_height_pct"].astype(float).to_numpy(),
            "spondylolisthesis_grade": 0,
            "stenosis": np.where(condition == "spinal_stenosis", "moderate", "none"),
            "created_at": context.sink.now_db,
        }
    )
    context.sink.created(
        m.Diagnosis, frame, clinic_ids=chunk.clinic_ids, patient_ids=chunk.patient_ids
    )


def _load_prior_treatments(context: _Context, chunk: _Chunk) -> None:
    """Opioid at baseline (or else simple analgesics), physiotherapy and steroid injections."""
    p = chunk.frame
    drug = p["opioid_drug"].astype(object).to_numpy()
    on_opioid = p["opioid_use_baseline"].to_numpy(dtype=bool) & pd.notna(drug)
    analgesic = ~on_opioid & p["prior_medication"].to_numpy(dtype=bool)
    physio = p["prior_physical_therapy"].to_numpy(dtype=bool)
    steroid = p["prior_steroid_injection"].to_numpy(dtype=bool)
    started = np.asarray(chunk.days_before(p["pain_duration_months"].to_numpy() * 30), dtype=object)
    relief = p["prior_steroid_relief_weeks"].astype(float).to_numpy()
    parts = []
    for rank, (mask, kind, details) in enumerate(
        (
            (on_opioid, "medication", "opioid at baseline"),
            (analgesic, "medication", "NSAID or paracetamol"),
            (physio, "physical_therapy", "supervised exercise programme"),
            (steroid, "steroid_injection", "epidural steroid injection"),
        )
    ):
        where = np.flatnonzero(mask)
        parts.append(
            pd.DataFrame(
                {
                    "position": where,
                    "rank": rank,
                    "patient_id": chunk.patient_ids[where],
                    "kind": kind,
                    "details": details,
                    "medication_name": np.where(rank == 0, drug[where], "").astype(object),
                    "daily_dose": p["opioid_dose_mg_day"].to_numpy(dtype=float)[where] if rank == 0 else np.nan,
                    "mme_per_day": p["opioid_mme_baseline"].to_numpy(dtype=float)[where] if rank == 0 else np.nan,
                    "relief_weeks": pd.array(relief[where] if rank == 3 else np.full(len(where), np.nan)).astype("Int64"),
                    "started_on": started[where],
                    "ended_on": None,
                }
            )
        )  # fmt: skip
    frame = pd.concat(parts).sort_values(["position", "rank"], kind="stable")
    clinics = chunk.clinic_ids[frame["position"].to_numpy()]
    frame = frame.drop(columns=["position", "rank"]).reset_index(drop=True)
    frame.insert(0, "id", context.ids.take(m.PriorTreatment, len(frame)))
    context.sink.created(
        m.PriorTreatment, frame, clinic_ids=clinics, patient_ids=frame["patient_id"]
    )


def _amount_texts(values: Any) -> list[str | None]:
    """Amounts as the decimal texts the services store and audit ("12000.00"); NaN -> None."""
    return [None if v != v else f"{v:.2f}" for v in np.asarray(values, dtype=np.float64)]


def _episode_costs(p: pd.DataFrame) -> dict[str, Any]:
    """The episode's cost columns from the cohort's ``cost_*`` columns (all empty when the
    cohort has none, e.g. one written before generator 1.1.0)."""
    n = len(p)
    if "cost_price" not in p.columns:
        return {"price": [None] * n, "currency": "", "billed_to": "", "patient_paid": [None] * n,
                "cost_note": ""}  # fmt: skip
    price = p["cost_price"].to_numpy(dtype=np.float64, na_value=np.nan)
    currency = p["cost_currency"].astype(object).where(p["cost_currency"].notna(), "")
    billed = p["cost_billed_to"].astype(object).where(p["cost_billed_to"].notna(), "")
    return {
        "price": _amount_texts(price),
        "currency": currency.astype(str).str.upper().to_numpy(),  # "usd" -> ISO "USD"
        "billed_to": billed.astype(str).to_numpy(),
        "patient_paid": _amount_texts(
            p["cost_patient_paid"].to_numpy(dtype=np.float64, na_value=np.nan)
        ),
        "cost_note": "",
    }


def _load_pathway(context: _Context, chunk: _Chunk) -> None:
    """Episodes and, for cell therapy, harvest -> processing -> injection (or a released lot)."""
    p, ids, sink = chunk.frame, context.ids, context.sink
    arm = p["arm"].astype(str).to_numpy()
    cell = np.isin(arm, CELL_ARMS)
    start = db_date_texts(chunk.treated)
    episodes = pd.DataFrame(
        {
            "id": chunk.episode_ids,
            "patient_id": chunk.patient_ids,
            "arm": np.where(cell, "cell_therapy", arm),
            "start_date": start,
            **_episode_costs(p),
            "created_at": sink.now_db,
            "version": 1,
        }
    )
    sink.created(
        m.TreatmentEpisode, episodes, clinic_ids=chunk.clinic_ids, patient_ids=chunk.patient_ids
    )

    source = p["cell_source"].astype(object).to_numpy()
    allo = cell & (source == "allogeneic")
    auto = np.flatnonzero(cell & ~allo)
    operator = pd.Series(chunk.clinic_ids).map(context.staff.clinician).to_numpy()
    day = np.asarray(start, dtype=object)
    auto_source = source[auto].astype(str)
    harvest_ids = ids.take(m.Harvest, len(auto))
    harvests = pd.DataFrame(
        {
            "id": harvest_ids,
            "episode_id": chunk.episode_ids[auto],
            "source": [HARVEST_SOURCE[s] for s in auto_source],
            "allogeneic_lot_id": pd.Series([None] * len(auto), dtype="Int64"),
            "volume_ml": [HARVEST_VOLUME_ML[s] for s in auto_source],
            "harvested_on": day[auto],
            "operator_id": operator[auto],
        }
    )
    sink.created(
        m.Harvest, harvests, clinic_ids=chunk.clinic_ids[auto], patient_ids=chunk.patient_ids[auto]
    )
    synth_ids = p["patient_id"].to_numpy()
    processing_ids = ids.take(m.Processing, len(auto))
    processings = pd.DataFrame(
        {
            "id": processing_ids,
            "harvest_id": harvest_ids,
            "method": [PROCESSING_METHOD[s] for s in auto_source],
            "lab": "On-site point-of-care lab (synthetic)",
            "processed_on": day[auto],
            "tnc_per_ml": p["tnc_e6_per_ml"].to_numpy(dtype=float)[auto],
            "cfu_f_per_ml": p["cfu_f_per_ml"].to_numpy(dtype=float)[auto],
            "cd34_pct": np.nan,
            "viability_pct": p["viability_pct"].to_numpy(dtype=float)[auto],
            "sterility": "pass",
            "adjunct_prp": (p["adjunct"].astype(str).to_numpy() == "prp")[auto],
            "adjunct_hyaluronic_acid": False,
            "product_id": [f"SYN-{context.batch}-{s[:3].upper()}-{int(i):07d}" for s, i in zip(auto_source, synth_ids[auto], strict=True)],
        }
    )  # fmt: skip
    sink.created(
        m.Processing,
        processings,
        clinic_ids=chunk.clinic_ids[auto],
        patient_ids=chunk.patient_ids[auto],
    )

    treated = np.flatnonzero(cell)
    processing_of = pd.Series(processing_ids, index=auto)
    lot = pd.Series(context.lots[synth_ids % len(context.lots)])
    is_allo = allo[treated]
    injections = pd.DataFrame(
        {
            "id": ids.take(m.Injection, len(treated)),
            "episode_id": chunk.episode_ids[treated],
            "processing_id": pd.Series(processing_of.reindex(treated).to_numpy(), dtype="Int64"),
            "allogeneic_lot_id": pd.Series(np.where(is_allo, lot[treated], np.nan), dtype="Int64"),
            "levels": ["[" + t + "]" for t in jsontext.strings(p["level"].iloc[treated])],
            "target": "intradiscal",
            "guidance": "fluoroscopy",
            "volume_ml": np.where(is_allo, 1.0, 2.0),
            # PRP given with the cells: recorded on processing for autologous cells and, since
            # a lot has no processing here, on the injection too.
            "adjunct_prp": (p["adjunct"].astype(str).to_numpy() == "prp")[treated],
            "cell_dose": p["cell_dose_e6"].to_numpy(dtype=float)[treated],
            "injected_on": day[treated],
            "operator_id": operator[treated],
        }
    )
    sink.created(
        m.Injection,
        injections,
        clinic_ids=chunk.clinic_ids[treated],
        patient_ids=chunk.patient_ids[treated],
    )


def _load_events(context: _Context, chunk: _Chunk, events: pd.DataFrame) -> None:
    """Adverse events (adjudicated or pending) and clinical events (surgery, repeat injection)."""
    position = pd.Index(chunk.frame["patient_id"].to_numpy()).get_indexer(
        pd.Index(events["patient_id"])
    )
    kind = events["event_type"].astype(str).to_numpy()
    day = np.asarray(db_date_texts(events["event_date"]), dtype=object)
    term = events["term"].astype(str).to_numpy()
    adverse = np.flatnonzero(kind == "adverse_event")
    done = (events["adjudication"].astype(str).to_numpy() == "adjudicated")[adverse]
    at = position[adverse]
    resolved = np.asarray(
        db_date_texts(events["event_date"].iloc[adverse] + pd.Timedelta(days=14)), dtype=object
    )
    grade = events["ctcae_grade"].astype(object).to_numpy()[adverse]
    serious = events["serious"].astype(object).to_numpy()[adverse]
    related = events["relatedness"].astype(object).to_numpy()[adverse]
    expected = events["expected"].astype(object).to_numpy()[adverse]
    clinician = [context.staff.clinician[int(c)] for c in chunk.clinic_ids[at]]
    aes = pd.DataFrame(
        {
            "id": context.ids.take(m.AdverseEvent, len(adverse)),
            "patient_id": chunk.patient_ids[at],
            "clinic_id": chunk.clinic_ids[at],
            "episode_id": chunk.episode_ids[at],
            "description": [t.replace("_", " ").capitalize() for t in term[adverse]],
            "category": [AE_CATEGORY.get(t, "other") for t in term[adverse]],
            "onset": day[adverse],
            "ctcae_grade": pd.Series([int(g) if d and pd.notna(g) else None for g, d in zip(grade, done, strict=True)], dtype="Int64"),
            "serious": [bool(s) if d and pd.notna(s) else False for s, d in zip(serious, done, strict=True)],
            "relatedness": [str(r) if d else "" for r, d in zip(related, done, strict=True)],
            "expected": pd.Series([bool(e) if d and pd.notna(e) else None for e, d in zip(expected, done, strict=True)], dtype="boolean"),
            "outcome": np.where(done, "recovered", "unknown"),
            "resolved_on": [r if d else None for r, d in zip(resolved, done, strict=True)],
            "status": np.where(done, "adjudicated", "pending"),
            "adjudicated_by_id": pd.Series([c if d else None for c, d in zip(clinician, done, strict=True)], dtype="Int64"),
            "adjudicated_at": [context.sink.now_db if d else None for d in done],
        }
    )  # fmt: skip
    context.sink.created(
        m.AdverseEvent, aes, clinic_ids=chunk.clinic_ids[at], patient_ids=aes["patient_id"]
    )
    clinical = np.flatnonzero(kind != "adverse_event")
    at = position[clinical]
    ces = pd.DataFrame(
        {
            "id": context.ids.take(m.ClinicalEvent, len(clinical)),
            "patient_id": chunk.patient_ids[at],
            "episode_id": chunk.episode_ids[at],
            "kind": kind[clinical],
            "occurred_on": day[clinical],
            "details": [t.replace("_", " ") for t in term[clinical]],
        }
    )
    context.sink.created(
        m.ClinicalEvent, ces, clinic_ids=chunk.clinic_ids[at], patient_ids=ces["patient_id"]
    )


def registry_is_empty() -> bool:
    """True when no patient exists yet (the demo loads its cohort only then)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {m.Patient._meta.db_table} LIMIT 1")
        return cursor.fetchone() is None
