"""``vertebra import fhir``: patients from FHIR NDJSON, written through the audited services.

Contracts
---------
* Reads ``Patient.ndjson`` (required), ``Condition.ndjson``, ``Consent.ndjson``,
  ``Procedure.ndjson`` (treatment episodes only; pathway steps and prior treatments are not
  imported) and ``QuestionnaireResponse.ndjson``; other files are ignored.
* **Nothing is written unless every line is well-formed.** Phase 1 reads every file: each line
  must be JSON, of the file's resource type, valid FHIR R4 (``fhir.resources`` R4B models) and
  carry what the registry needs (:mod:`vertebra.core.fhir.parse`), and every reference must
  resolve within the import. The first problem stops the import with
  ``<file> line <n>: <what>`` before any write.
* **Phase 2: one transaction per patient.** A patient and everything of theirs (diagnoses,
  consents, episodes with their follow-up schedules, answers) is written in one transaction
  through :mod:`vertebra.registry.services` and :mod:`vertebra.followup.services`, which
  validate, check permissions and write the audit rows. If any service refuses anything of a
  patient, that patient is rolled back whole and reported; the other patients are imported. So
  a patient is never half-imported, and one bad record does not block a 100,000-patient import.
  A patient whose MRN is already registered at the clinic is skipped (a re-run after fixing
  the failures imports only what is missing).
* Every write is the named staff user's (``--as``), who must hold the clinician or coordinator
  role at the clinic: the audit trail shows who imported. Scores are recomputed by the core
  scorers in this registry's instrument version; answers of another version are refused.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from vertebra.core.fhir import FhirValidationError, fhir_codes, validate_resource
from vertebra.core.fhir.codes import FhirCodes
from vertebra.core.fhir.parse import (
    ImportedConsent,
    ImportedDiagnosis,
    ImportedEpisode,
    ImportedPatient,
    ImportedResponse,
    ParseError,
    parse_condition,
    parse_consent,
    parse_episode,
    parse_patient,
    parse_response,
)
from vertebra.core.safeinput import JsonInputError, load_json
from vertebra.followup import services as followup_services
from vertebra.followup.errors import FollowUpError
from vertebra.followup.models import FollowUpTimePoint
from vertebra.registry import services as registry_services
from vertebra.registry.errors import RegistryError
from vertebra.registry.models import Clinic, Patient, Role
from vertebra.registry.permissions import Actor

__all__ = [
    "IMPORTED_TYPES",
    "ImportFormatError",
    "ImportReport",
    "ImportSetupError",
    "PatientBundle",
    "import_fhir_folder",
    "read_folder",
]

#: Files read, in reading order (patients first: the others refer to them).
IMPORTED_TYPES = ("Patient", "Condition", "Consent", "Procedure", "QuestionnaireResponse")
#: Roles whose holder may import (both may register patients and start episodes).
IMPORT_ROLES = (Role.CLINICIAN, Role.COORDINATOR)


class ImportFormatError(Exception):
    """A line of the input is malformed; nothing was written. Names file and line."""


class ImportSetupError(Exception):
    """The clinic or the importing user is not usable; nothing was written."""


class _Refused(Exception):
    """A patient that cannot be imported as given (rolled back, reported)."""


@dataclass
class PatientBundle:
    """Everything of one imported patient, with the line each item came from."""

    patient: ImportedPatient
    line: int
    diagnoses: list[ImportedDiagnosis] = field(default_factory=list)
    consents: list[ImportedConsent] = field(default_factory=list)
    episodes: list[ImportedEpisode] = field(default_factory=list)
    responses: list[tuple[int, ImportedResponse]] = field(default_factory=list)


@dataclass
class ImportReport:
    """What an import did: patients imported, skipped (already there) and failed (reasons)."""

    imported: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(IMPORTED_TYPES, 0))

    def describe_counts(self) -> str:
        """One line: resources written per type, and the skipped patients."""
        parts = [f"{n} {kind}" for kind, n in self.counts.items() if n]
        if self.skipped:
            parts.append(f"{len(self.skipped)} patients skipped (MRN already registered)")
        return ", ".join(parts) or "nothing written"


# ------------------------------------------------------------------------ phase 1: reading


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, resource) of each non-blank line; ImportFormatError naming the line for
    one that is not UTF-8, not JSON, or nested deeper than ``MAX_JSON_DEPTH``."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = load_json(line)
            except JsonInputError as exc:
                raise ImportFormatError(f"{path.name} line {number}: {exc}") from None
            if not isinstance(value, dict):
                raise ImportFormatError(f"{path.name} line {number}: not a JSON object")
            yield number, value


def _checked(
    path: Path, kind: str, codes: FhirCodes, parse: Callable[[dict[str, Any], FhirCodes], Any]
) -> Iterator[tuple[int, Any]]:
    """(line, parsed value) of each line of ``path``: right type, valid R4, parseable."""
    for number, resource in _lines(path):
        where = f"{path.name} line {number}"
        if resource.get("resourceType") != kind:
            raise ImportFormatError(
                f"{where}: resourceType {resource.get('resourceType')!r}, expected {kind!r}"
            )
        try:
            validate_resource(resource)
            yield number, parse(resource, codes)
        except (FhirValidationError, ParseError) as exc:
            raise ImportFormatError(f"{where}: {str(exc).splitlines()[0]}") from None


def read_folder(folder: Path, codes: FhirCodes | None = None) -> list[PatientBundle]:
    """Phase 1: every file read and checked; the patients' bundles in Patient-file order.

    Raises ImportFormatError naming file and line for the first problem found.
    """
    codes = codes or fhir_codes()
    if not (folder / "Patient.ndjson").is_file():
        raise ImportFormatError(f"{folder}: no Patient.ndjson")
    bundles: dict[str, PatientBundle] = {}
    for number, imported in _checked(folder / "Patient.ndjson", "Patient", codes, parse_patient):
        if imported.source_ref in bundles:
            raise ImportFormatError(
                f"Patient.ndjson line {number}: {imported.source_ref} appears twice"
            )
        bundles[imported.source_ref] = PatientBundle(patient=imported, line=number)
    episodes: dict[str, str] = {}  # episode ref -> patient ref

    def owner(name: str, number: int, patient_ref: str) -> PatientBundle:
        if patient_ref not in bundles:
            raise ImportFormatError(
                f"{name} line {number}: refers to {patient_ref}, which is not in Patient.ndjson"
            )
        return bundles[patient_ref]

    readers: list[tuple[str, Callable[[dict[str, Any], FhirCodes], Any]]] = [
        ("Condition", parse_condition),
        ("Consent", parse_consent),
        ("Procedure", parse_episode),
        ("QuestionnaireResponse", parse_response),
    ]
    for kind, parse in readers:
        path = folder / f"{kind}.ndjson"
        if not path.is_file():
            continue
        for number, item in _checked(path, kind, codes, parse):
            if item is None:  # a Procedure that is not a treatment episode
                continue
            bundle = owner(path.name, number, item.patient_ref)
            if isinstance(item, ImportedDiagnosis):
                bundle.diagnoses.append(item)
            elif isinstance(item, ImportedConsent):
                bundle.consents.append(item)
            elif isinstance(item, ImportedEpisode):
                episodes[item.source_ref] = item.patient_ref
                bundle.episodes.append(item)
            else:
                if episodes.get(item.episode_ref) != item.patient_ref:
                    raise ImportFormatError(
                        f"{path.name} line {number}: refers to {item.episode_ref}, which is not "
                        f"a treatment episode of {item.patient_ref} in Procedure.ndjson"
                    )
                bundle.responses.append((number, item))
    return list(bundles.values())


# ------------------------------------------------------------------------ phase 2: writing


def _actor(username: str, clinic_id: int) -> Actor:
    """The importing staff user as an Actor holding an import role at the clinic."""
    if not Clinic.objects.filter(pk=clinic_id).exists():
        raise ImportSetupError(f"--clinic: no clinic with id {clinic_id}")
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ImportSetupError(f"--as: no active user {username!r}")
    for role in IMPORT_ROLES:
        actor = Actor.for_user(user, role) if user.memberships.filter(role=role).exists() else None
        if actor is not None and clinic_id in actor.clinic_ids:
            return actor
    raise ImportSetupError(
        f"--as: {username!r} is not a clinician or coordinator of clinic {clinic_id}"
    )


def _write_patient(
    bundle: PatientBundle,
    actor: Actor,
    clinic_id: int,
    today: dt.date,
    now: dt.datetime,
    source: str,
) -> dict[str, int]:
    """Register one patient and all of theirs (caller holds the transaction); counts written."""
    given = bundle.patient
    patient = registry_services.register_patient(
        actor=actor,
        clinic_id=clinic_id,
        mrn=given.mrn,
        given_name=given.given_name,
        family_name=given.family_name,
        date_of_birth=given.date_of_birth,
        sex=given.sex,
        email=given.email,
        phone=given.phone,
    )
    for diagnosis in bundle.diagnoses:
        fields = {k: v for k, v in _fields_of(diagnosis).items() if k != "patient_ref"}
        registry_services.record_diagnosis(actor=actor, patient_id=patient.pk, **fields)
    for consent in bundle.consents:
        if consent.withdrawn_on is not None:
            # Importing it as signed would record consent the patient has withdrawn.
            raise _Refused("a withdrawn consent cannot be imported (no withdrawal service yet)")
        registry_services.record_consent(
            actor=actor,
            patient_id=patient.pk,
            kind=consent.kind,
            form_version=consent.form_version,
            signed_on=consent.signed_on,
        )
    episode_ids = {}
    for episode in bundle.episodes:
        created = followup_services.start_episode_with_follow_up(
            actor=actor,
            patient_id=patient.pk,
            arm=episode.arm,
            start_date=episode.start_date,
            today=today,
        )
        episode_ids[episode.source_ref] = created.pk
    points = _answers_by_time_point(bundle, episode_ids)
    for (episode_id, key), answers in points.items():
        point_id = (
            FollowUpTimePoint.objects.filter(schedule__episode_id=episode_id, key=key)
            .values_list("pk", flat=True)
            .first()
        )
        if point_id is None:
            raise _Refused(f"time point {key!r} is not in this registry's follow-up protocol")
        followup_services.record_imported_answers(
            actor=actor,
            time_point_id=point_id,
            answers_by_instrument=answers,
            source=source,
            now=now,
        )
    return {
        "Patient": 1,
        "Condition": len(bundle.diagnoses),
        "Consent": len(bundle.consents),
        "Procedure": len(bundle.episodes),
        "QuestionnaireResponse": len(bundle.responses),
    }


def _fields_of(item: Any) -> dict[str, Any]:
    """A slotted dataclass's fields as a dict (``vars`` does not work with slots)."""
    return {name: getattr(item, name) for name in item.__dataclass_fields__}


def _answers_by_time_point(
    bundle: PatientBundle, episode_ids: Mapping[str, int]
) -> dict[tuple[int, str], dict[str, followup_services.ImportedAnswers]]:
    """The patient's responses grouped by (new episode id, time point key) and instrument."""
    grouped: dict[tuple[int, str], dict[str, followup_services.ImportedAnswers]] = defaultdict(dict)
    for number, response in bundle.responses:
        slot = grouped[(episode_ids[response.episode_ref], response.time_point_key)]
        if response.instrument_id in slot:
            raise _Refused(
                f"QuestionnaireResponse.ndjson line {number}: a second {response.instrument_id} "
                f"response at time point {response.time_point_key}"
            )
        slot[response.instrument_id] = followup_services.ImportedAnswers(
            instrument_version=response.instrument_version,
            answers=dict(response.answers),
            authored=response.authored,
        )
    return grouped


def _reason(exc: Exception) -> str:
    """A refusal as one line (a ValidationError's field messages joined)."""
    if isinstance(exc, ValidationError) and hasattr(exc, "message_dict"):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def import_fhir_folder(
    folder: Path,
    *,
    clinic_id: int,
    username: str,
    today: dt.date,
    now: dt.datetime | None = None,
    on_patient: Callable[[], None] | None = None,
) -> ImportReport:
    """Import ``folder`` at ``clinic_id`` as ``username`` (see the module docstring).

    Raises ImportSetupError (clinic, user) or ImportFormatError (a malformed line) before any
    write; otherwise returns the report (per-patient refusals are in ``failed``).
    """
    actor = _actor(username, clinic_id)
    bundles = read_folder(folder)
    report = ImportReport()
    source = f"fhir-import:{folder.name}"
    for bundle in bundles:
        mrn = bundle.patient.mrn
        if Patient.objects.filter(clinic_id=clinic_id, mrn=mrn).exists():
            report.skipped.append(f"Patient.ndjson line {bundle.line}: MRN {mrn}")
            continue
        try:
            with transaction.atomic():
                written = _write_patient(
                    bundle, actor, clinic_id, today, now or timezone.now(), source
                )
        except (ValidationError, RegistryError, FollowUpError, _Refused, DatabaseError) as exc:
            report.failed.append(f"Patient.ndjson line {bundle.line} (MRN {mrn}): {_reason(exc)}")
        else:
            report.imported += 1
            for kind, n in written.items():
                report.counts[kind] += n
        if on_patient is not None:
            on_patient()
    return report
