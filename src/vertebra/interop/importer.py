"""``vertebra import fhir``: a Vertebra FHIR export, imported without loss through the services.

Contracts
---------
* Reads every file a Vertebra export writes (:data:`vertebra.core.fhir.RESOURCE_TYPES`):
  Organization, Patient, Consent, Condition, Procedure (treatment episodes, harvests,
  injections, prior treatments, subsequent surgeries and repeat injections),
  Questionnaire (reference data: present when this registry has the instrument in that
  version, else refused), BiologicallyDerivedProduct (processed products with their lab
  results and sterility; allogeneic lots), MedicationStatement (prior medications; opioid use derived from answers),
  QuestionnaireResponse, Observation (scores, derived from answers) and AdverseEvent (with
  adjudication). ADR 0012 states the identity and lossless rules.
* **A malformed file stops the import before any write**: a line that is not JSON, not an
  object, of another resource type, or not valid FHIR R4 raises :class:`ImportFormatError`
  naming file and line. Everything else is decided per resource and reported.
* **Identity is identifier system + value.** A patient is its MRN identifier: the system
  (``<base>/sid/mrn/<source clinic>``, or any other system) is mapped to a receiving clinic
  (``clinic_map``, else ``default_clinic_id``) and the value is the MRN there. A patient already
  registered at that clinic with that MRN, the same birth date and family name is *already
  present* (it and everything of theirs is counted so, nothing is written): re-importing a file
  is idempotent. Two source systems mapped to one clinic that share an MRN value are two
  people: the second is refused, never merged or skipped as present. Products are their product
  id, lots their lot number.
* **The services' rows and audit records** (:mod:`vertebra.registry.services`,
  :mod:`vertebra.followup.services`): each write validated, permission-checked and audited as
  the importing user. By default many patients share a transaction on the bulk path
  (:mod:`vertebra.interop.importbulk`, ADR 0016: the same rows and ``create`` records, written
  per table per batch), which hands every patient its checks do not pass, and every patient
  of a batch that fails while writing, to the careful path; ``careful=True`` (CLI
  ``--careful``) takes the careful path for everyone: one transaction per patient through the
  services. If anything of a patient is refused (by the parser or by a service), the
  patient is rolled back whole; the resource that failed carries the reason, the rest of the
  patient's resources are refused as "its patient was refused". Never half a patient.
* Derived resources are not written but recomputed: scores (Observation) and opioid use
  (MedicationStatement) come back from the answers they were derived from; MME/day of prior
  medications from the dose; an adverse event's ``suspectEntity`` from its relatedness. They
  count as imported when the response they came from is.
* What a target registry cannot take as given is stated, not guessed: the operator of a
  harvest or injection is the importing clinician (a source registry's staff user ids mean
  nothing here); an adjudicated adverse event is adjudicated by the importing clinician at
  import time; scores are recomputed in this registry's instrument version (answers of another
  version are refused).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from vertebra.core.fhir import RESOURCE_TYPES, FhirValidationError, fhir_codes, validate_resource
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
    patient_reference,
)
from vertebra.core.fhir.parse_pathway import (
    ImportedAdverseEvent,
    ImportedClinicalEvent,
    ImportedHarvest,
    ImportedInjection,
    ImportedLot,
    ImportedPriorTreatment,
    ImportedProduct,
    ProductLink,
    derived_from,
    medication_statement_kind,
    parse_adverse_event,
    parse_clinical_event,
    parse_harvest,
    parse_injection,
    parse_lot,
    parse_prior_treatment,
    parse_product,
    procedure_kind,
)
from vertebra.core.instruments import UnknownInstrumentError, get_definition
from vertebra.core.safeinput import JsonInputError, load_json
from vertebra.followup import services as followup_services
from vertebra.followup.errors import FollowUpError, SubmissionInvalid
from vertebra.followup.models import FollowUpTimePoint
from vertebra.interop import importbulk
from vertebra.registry import services as registry_services
from vertebra.registry.errors import RegistryError
from vertebra.registry.models import AllogeneicLot, Clinic, Patient, Role
from vertebra.registry.permissions import Actor

__all__ = [
    "ImportFormatError",
    "ImportReport",
    "ImportSetupError",
    "PatientBundle",
    "TypeTally",
    "import_fhir_folder",
    "read_folder",
]

#: The role the importing user needs at every receiving clinic: only a clinician may be the
#: operator of a harvest or injection and adjudicate an adverse event (registry permissions).
IMPORT_ROLE = Role.CLINICIAN
#: Reason given for the other resources of a patient that was refused.
WITH_PATIENT = "not imported: its patient was refused (see the patient's reason)"


class ImportFormatError(Exception):
    """A line of the input is malformed; nothing was written. Names file and line."""


class ImportSetupError(Exception):
    """The clinic, the clinic map or the importing user is not usable; nothing was written."""


class _Refused(Exception):
    """A resource the registry cannot take as given (its patient is rolled back, reported)."""


# ---------------------------------------------------------------------------------- report


@dataclass
class TypeTally:
    """One resource type's figures: read, imported, already present, refused by reason
    (reason -> [count, an example resource id])."""

    read: int = 0
    imported: int = 0
    present: int = 0
    refused: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def n_refused(self) -> int:
        return sum(n for n, _ in self.refused.values())


@dataclass
class ImportReport:
    """What an import did, per resource type, and per patient."""

    tallies: dict[str, TypeTally] = field(
        default_factory=lambda: {kind: TypeTally() for kind in RESOURCE_TYPES}
    )
    patients_imported: int = 0
    patients_present: int = 0
    patients_refused: int = 0
    #: Patients the careful path decided (all with ``careful``; else those the bulk path's
    #: checks handed over, or whose batch failed while writing).
    patients_careful: int = 0

    def tally(self, kind: str) -> TypeTally:
        return self.tallies.setdefault(kind, TypeTally())

    def refuse(self, kind: str, resource_id: str, reason: str) -> None:
        """Count one refused resource under ``reason`` (the first id kept as the example)."""
        entry = self.tally(kind).refused.setdefault(reason, [0, resource_id])
        entry[0] += 1

    @property
    def n_refused(self) -> int:
        return sum(t.n_refused for t in self.tallies.values())

    def rows(self) -> list[tuple[str, TypeTally]]:
        """The types that were read, in export order."""
        return [(kind, t) for kind, t in self.tallies.items() if t.read]


# ------------------------------------------------------------------------ phase 1: reading


@dataclass
class _Item:
    """One resource of a patient: type, id, line, and the parsed value (None if refused)."""

    kind: str
    rid: str
    line: int
    value: Any = None


@dataclass
class PatientBundle:
    """Everything of one patient in the import, with where each item came from."""

    ref: str
    item: _Item
    patient: ImportedPatient | None = None
    problems: list[tuple[_Item, str]] = field(default_factory=list)
    consents: list[_Item] = field(default_factory=list)
    diagnoses: list[_Item] = field(default_factory=list)
    priors: list[_Item] = field(default_factory=list)
    episodes: list[_Item] = field(default_factory=list)
    harvests: list[_Item] = field(default_factory=list)
    products: list[_Item] = field(default_factory=list)
    injections: list[_Item] = field(default_factory=list)
    events: list[_Item] = field(default_factory=list)
    adverse: list[_Item] = field(default_factory=list)
    responses: list[_Item] = field(default_factory=list)
    derived: list[tuple[_Item, str]] = field(default_factory=list)

    def items(self) -> Iterator[_Item]:
        """Every resource of the patient, the Patient first."""
        yield self.item
        for group in (
            self.consents, self.diagnoses, self.priors, self.episodes, self.harvests,
            self.products, self.injections, self.events, self.adverse, self.responses,
        ):  # fmt: skip
            yield from group
        yield from (item for item, _ in self.derived)


@dataclass
class _Folder:
    """Phase 1's result: the patients' bundles and the shared lots."""

    bundles: dict[str, PatientBundle]
    lots: dict[str, ImportedLot]  # source ref -> lot
    organizations: list[_Item]
    orphans: list[tuple[_Item, str]]  # resources of no patient in the import, with the reason


def _typed(path: Path, kind: str) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    """(line number, raw line, resource) of each non-blank line of ``path``: JSON of type
    ``kind``, else ImportFormatError naming the line: not UTF-8, not JSON, nested deeper than
    ``MAX_JSON_DEPTH``, not an object, or of another type."""
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
            if value.get("resourceType") != kind:
                raise ImportFormatError(
                    f"{path.name} line {number}: resourceType {value.get('resourceType')!r}, "
                    f"expected {kind!r}"
                )
            yield number, line, value


#: Lines a validation worker checks per task, and tasks in flight: bounds the memory held
#: while the workers validate (a few thousand resources at a time) and keeps them busy.
VALIDATE_CHUNK = 500
IN_FLIGHT = 6
#: Files smaller than this are validated in the reading process: starting workers (forking,
#: importing the R4B models) costs more than they save on a small file.
PARALLEL_MIN_BYTES = 4_000_000


def _first_invalid(lines: Sequence[tuple[int, bytes]]) -> tuple[int, str] | None:
    """(line number, message) of the first of ``lines`` (JSON objects already checked by the
    reader) that is not valid R4, or None. Runs in a validation worker."""
    for number, raw in lines:
        try:
            validate_resource(load_json(raw))
        except FhirValidationError as exc:
            return number, str(exc).splitlines()[0]
    return None


def _raise_invalid(path: Path, found: tuple[int, str] | None) -> None:
    if found is not None:
        raise ImportFormatError(f"{path.name} line {found[0]}: {found[1]}")


def _resources(
    path: Path, kind: str, validate: bool, pool: Executor | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, resource) of each line of ``path``: of type ``kind`` and valid R4, else
    ImportFormatError naming the first malformed line.

    With a ``pool`` the R4 validation runs in its worker processes, a chunk of lines at a time,
    while this process parses the next lines; a resource is yielded only once its chunk has
    validated, and the error raised is the one of the earliest malformed line, as when
    validating in this process.
    """
    if not validate or pool is None:
        for number, _, resource in _typed(path, kind):
            if validate:
                try:
                    validate_resource(resource)
                except FhirValidationError as exc:
                    where = f"{path.name} line {number}"
                    raise ImportFormatError(f"{where}: {str(exc).splitlines()[0]}") from None
            yield number, resource
        return
    pending: deque[tuple[Future[tuple[int, str] | None], list[tuple[int, dict[str, Any]]]]]
    pending = deque()
    raw: list[tuple[int, bytes]] = []
    parsed: list[tuple[int, dict[str, Any]]] = []
    lines = _typed(path, kind)
    while True:
        try:
            number, line, resource = next(lines)
        except StopIteration:
            break
        except ImportFormatError:  # an earlier line not valid R4 is the first malformed one
            for future, _ in pending:
                _raise_invalid(path, future.result())
            _raise_invalid(path, _first_invalid(raw))
            raise
        raw.append((number, line))
        parsed.append((number, resource))
        if len(raw) == VALIDATE_CHUNK:
            pending.append((pool.submit(_first_invalid, raw), parsed))
            raw, parsed = [], []
            while len(pending) > IN_FLIGHT:
                future, checked = pending.popleft()
                _raise_invalid(path, future.result())
                yield from checked
    if raw:
        pending.append((pool.submit(_first_invalid, raw), parsed))
    while pending:
        future, checked = pending.popleft()
        _raise_invalid(path, future.result())
        yield from checked


@contextmanager
def _validation_pool(folder: Path, validate: bool, jobs: int | None) -> Iterator[Executor | None]:
    """Worker processes for R4 validation (None: validate here): ``jobs`` of them (default:
    the machine's cores), used when validating more than one core's worth of a large export."""
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    size = sum(p.stat().st_size for p in folder.glob("*.ndjson"))
    if not validate or jobs < 2 or size < PARALLEL_MIN_BYTES:
        yield None
        return
    # fork: the workers inherit the imported models and never touch the parent's database
    # connection (they only parse and validate bytes, and exit without cleanup).
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


#: Parser and bundle list of each (resource type, kind).
_PARSERS: dict[str, tuple[Callable[[Mapping[str, Any], FhirCodes], Any], str]] = {
    "Consent": (parse_consent, "consents"),
    "Condition": (parse_condition, "diagnoses"),
    "episode": (parse_episode, "episodes"),
    "harvest": (parse_harvest, "harvests"),
    "injection": (parse_injection, "injections"),
    "prior_procedure": (parse_prior_treatment, "priors"),
    "prior_medication": (parse_prior_treatment, "priors"),
    "clinical_event": (parse_clinical_event, "events"),
    "product": (parse_product, "products"),
    "AdverseEvent": (parse_adverse_event, "adverse"),
    "QuestionnaireResponse": (parse_response, "responses"),
}


def _kind_of(resource: Mapping[str, Any], codes: FhirCodes) -> str | None:
    """Which parser a resource needs (None: a derived resource or a lot, handled apart)."""
    kind = str(resource["resourceType"])
    if kind == "Procedure":
        return procedure_kind(resource, codes) or "unknown_procedure"
    if kind == "MedicationStatement":
        found = medication_statement_kind(resource)
        return None if found == "opioid_use" else found
    if kind == "BiologicallyDerivedProduct":
        return "product"
    if kind in ("Observation", "Organization", "Patient"):
        return None
    return kind


def read_folder(
    folder: Path,
    codes: FhirCodes | None = None,
    *,
    validate: bool = True,
    report: ImportReport | None = None,
    jobs: int | None = None,
) -> _Folder:
    """Phase 1: every file read and parsed into per-patient bundles (no database access).

    Raises ImportFormatError naming file and line for the first malformed line. A resource that
    is well-formed but cannot be taken (ParseError) is recorded as a problem of its patient.
    ``report`` (when given) counts what was read per type. ``jobs``: processes validating R4
    (default: the machine's cores; see :func:`_validation_pool`).
    """
    codes = codes or fhir_codes()
    report = report if report is not None else ImportReport()
    if not (folder / "Patient.ndjson").is_file():
        raise ImportFormatError(f"{folder}: no Patient.ndjson")
    with _validation_pool(folder, validate, jobs) as pool:
        return _read(folder, codes, validate, report, pool)


def _read(
    folder: Path, codes: FhirCodes, validate: bool, report: ImportReport, pool: Executor | None
) -> _Folder:
    """:func:`read_folder` with its validation pool."""
    found = _Folder(bundles={}, lots={}, organizations=[], orphans=[])
    bundles = found.bundles
    for number, resource in _resources(folder / "Patient.ndjson", "Patient", validate, pool):
        report.tally("Patient").read += 1
        item = _Item("Patient", str(resource.get("id", "?")), number)
        ref = f"Patient/{item.rid}"
        if ref in bundles:
            raise ImportFormatError(f"Patient.ndjson line {number}: {ref} appears twice")
        bundle = PatientBundle(ref=ref, item=item)
        bundles[ref] = bundle
        try:
            bundle.patient = item.value = parse_patient(resource, codes)
        except ParseError as exc:
            bundle.problems.append((item, _first_line(exc)))
    for kind in RESOURCE_TYPES:
        path = folder / f"{kind}.ndjson"
        if kind == "Patient" or not path.is_file():
            continue
        for number, resource in _resources(path, kind, validate, pool):
            report.tally(kind).read += 1
            _place(found, _Item(kind, str(resource.get("id", "?")), number), resource, codes)
    return found


def _place(found: _Folder, item: _Item, resource: dict[str, Any], codes: FhirCodes) -> None:
    """Parse one non-Patient resource and put it in its patient's bundle (or with the lots,
    the organizations, or the orphans)."""
    if item.kind == "Organization":
        found.organizations.append(item)
        return
    if item.kind == "Questionnaire":  # an instrument definition: this registry's own is used
        item.value = _questionnaire_problem(resource)
        found.organizations.append(item)
        return
    if item.kind == "BiologicallyDerivedProduct":
        try:
            lot = parse_lot(resource, codes)
        except ParseError as exc:
            found.orphans.append((item, _first_line(exc)))
            return
        if lot is not None:
            found.lots[lot.source_ref] = lot
            item.value = lot
            found.organizations.append(item)  # shared reference data, like the clinics
            return
    kind = _kind_of(resource, codes)
    try:
        owner = (
            patient_reference(resource)
            if item.kind != "BiologicallyDerivedProduct"
            else _collection_source(resource)
        )
    except ParseError as exc:
        found.orphans.append((item, _first_line(exc)))
        return
    bundle = found.bundles.get(owner)
    if bundle is None:
        found.orphans.append((item, f"refers to {owner}, which is not in Patient.ndjson"))
        return
    if kind is None:  # derived from a response: recomputed, counted with it
        source = derived_from(resource)
        if source is None:
            bundle.problems.append((item, "derived resource without derivedFrom"))
        bundle.derived.append((item, source or ""))
        return
    if kind == "unknown_procedure":
        bundle.events.append(item)
        bundle.problems.append((item, "Procedure.code: none of Vertebra's procedure codes"))
        return
    parse, group = _PARSERS[kind]
    getattr(bundle, group).append(item)
    try:
        item.value = parse(resource, codes)
    except ParseError as exc:
        bundle.problems.append((item, _first_line(exc)))


def _questionnaire_problem(resource: Mapping[str, Any]) -> str:
    """Why a Questionnaire is not one this registry has ("" when it is: its ``url`` ends in an
    instrument id of this registry and its ``version`` is the one this registry scores)."""
    instrument_id = str(resource.get("url") or "").rsplit("/", 1)[-1]
    try:
        version = get_definition(instrument_id).version
    except UnknownInstrumentError:
        return "not an instrument of this registry (its responses are refused)"
    if str(resource.get("version")) != version:
        return f"{instrument_id}: this registry has version {version} (its answers are refused)"
    return ""


def _collection_source(resource: Mapping[str, Any]) -> str:
    source = (resource.get("collection") or {}).get("source") or {}
    reference = source.get("reference") if isinstance(source, Mapping) else None
    if not isinstance(reference, str):
        raise ParseError("BiologicallyDerivedProduct.collection.source is missing")
    return reference


# ------------------------------------------------------------------------ phase 2: writing


@dataclass
class _Context:
    """What every patient's write needs: actors, clinic map, lots, clock."""

    actor: Actor
    admin: Actor | None
    codes: FhirCodes
    clinic_for: Callable[[str], int | None]
    lots: dict[str, ImportedLot]
    lot_ids: dict[str, int]  # lot number -> id in this registry
    today: dt.date
    now: dt.datetime
    source: str
    point_ids: dict[tuple[int, str], int] = field(default_factory=dict)
    #: Lot number -> this registry's lot, read once after the import's lots (bulk path).
    known_lots: dict[str, AllogeneicLot] = field(default_factory=dict)


def _actors(username: str, clinic_ids: Sequence[int]) -> tuple[Actor, Actor | None]:
    """The importing user as a clinician of every receiving clinic (and as registry admin when
    they hold that role: needed only to register lots this registry lacks)."""
    known = set(Clinic.objects.filter(pk__in=list(clinic_ids)).values_list("pk", flat=True))
    for clinic_id in clinic_ids:
        if clinic_id not in known:
            raise ImportSetupError(f"--clinic: no clinic with id {clinic_id}")
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ImportSetupError(f"--as: no active user {username!r}")
    if not user.memberships.filter(role=IMPORT_ROLE).exists():
        raise ImportSetupError(f"--as: {username!r} is not a clinician of clinic {clinic_ids[0]}")
    actor = Actor.for_user(user, IMPORT_ROLE)
    missing = [c for c in clinic_ids if c not in actor.clinic_ids]
    if missing:
        raise ImportSetupError(f"--as: {username!r} is not a clinician of clinic {missing[0]}")
    admin = None
    if user.memberships.filter(role=Role.REGISTRY_ADMIN).exists():
        admin = Actor.for_user(user, Role.REGISTRY_ADMIN)
    return actor, admin


def _clinic_resolver(
    codes: FhirCodes, default: int | None, clinic_map: Mapping[str, int]
) -> Callable[[str], int | None]:
    """MRN system -> receiving clinic. ``clinic_map`` keys are a full system URL or a source
    clinic id (shorthand for Vertebra's ``sid/mrn/<id>``)."""
    by_system = {
        (key if "/" in key else codes.identifier_system("mrn", key)): value
        for key, value in clinic_map.items()
    }
    return lambda system: by_system.get(system, default)


def _identity(
    bundles: Sequence[PatientBundle], clinic_for: Callable[[str], int | None]
) -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
    """(patient ref -> (clinic, MRN)) for the patients that can be placed, and
    (patient ref -> reason) for those that cannot: unmapped system, or a second source
    system sharing an MRN value at one receiving clinic (first in file order wins)."""
    placed: dict[str, tuple[int, str]] = {}
    refused: dict[str, str] = {}
    owner: dict[tuple[int, str], str] = {}  # (clinic, MRN) -> source system that holds it
    for bundle in bundles:
        given = bundle.patient
        if given is None:
            continue
        clinic = clinic_for(given.mrn_system)
        if clinic is None:
            refused[bundle.ref] = (
                f"MRN system {given.mrn_system} is mapped to no clinic (--clinic-map)"
            )
            continue
        key = (clinic, given.mrn)
        holder = owner.setdefault(key, given.mrn_system)
        if holder != given.mrn_system:
            refused[bundle.ref] = (
                f"MRN value shared with another source system ({holder}) mapped to the same "
                "clinic: two different patients; map the systems to different clinics"
            )
            continue
        placed[bundle.ref] = key
    return placed, refused


def _present(placed: Mapping[str, tuple[int, str]]) -> dict[tuple[int, str], tuple[Any, str]]:
    """(clinic, MRN) -> (birth date, family name) of the patients already registered."""
    by_clinic: dict[int, list[str]] = defaultdict(list)
    for clinic, mrn in placed.values():
        by_clinic[clinic].append(mrn)
    found: dict[tuple[int, str], tuple[Any, str]] = {}
    for clinic, mrns in by_clinic.items():
        for start in range(0, len(mrns), 500):  # SQLite caps the parameters of one query
            rows = Patient.objects.filter(clinic_id=clinic, mrn__in=mrns[start : start + 500])
            for mrn, born, family in rows.values_list("mrn", "date_of_birth", "family_name"):
                found[(clinic, mrn)] = (born, family)
    return found


def _lot_id(context: _Context, link: ProductLink | None) -> int:
    """This registry's id of the lot a harvest or injection names (registered, and released,
    through the lot services when missing and the importing user is a registry admin)."""
    lot = _lot_of(context, link)
    if lot is None:
        raise _Refused("names an allogeneic lot that is not in the import")
    if lot.lot_number in context.lot_ids:
        return context.lot_ids[lot.lot_number]
    existing = AllogeneicLot.objects.filter(lot_number=lot.lot_number).first()
    if existing is None:
        if context.admin is None:
            raise _Refused(
                "allogeneic lot not in this registry: a registry admin must register it, or "
                "run the import as a user who is also a registry admin"
            )
        existing = registry_services.register_lot(
            actor=context.admin, lot_number=lot.lot_number, product=lot.product
        )
        if lot.released_on is not None:
            existing = registry_services.release_lot(
                actor=context.admin, lot_id=existing.pk, released_on=lot.released_on
            )
    context.lot_ids[lot.lot_number] = existing.pk
    return int(existing.pk)


def _import_lot(item: _Item, context: _Context, report: ImportReport) -> None:
    """An allogeneic lot: already present by lot number, else registered (and released) through
    the lot services, else refused (the patients who received it are refused with it)."""
    lot: ImportedLot = item.value
    tally = report.tally(item.kind)
    if AllogeneicLot.objects.filter(lot_number=lot.lot_number).exists():
        tally.present += 1
        return
    try:
        with transaction.atomic():
            _lot_id(context, ProductLink(reference=lot.source_ref))
    except (ValidationError, RegistryError, _Refused, DatabaseError) as exc:
        report.refuse(item.kind, item.rid, _reason(exc))
    else:
        tally.imported += 1


def _lot_of(context: _Context, link: ProductLink | None) -> ImportedLot | None:
    if link is None:
        return None
    if link.value and link.system == context.codes.identifier_system("allogeneic-lot"):
        return next((lot for lot in context.lots.values() if lot.lot_number == link.value), None)
    return context.lots.get(link.reference or "")


class _Writer:
    """Writes one patient's bundle through the services, remembering the item being written
    so that a refusal names the resource that caused it."""

    def __init__(self, bundle: PatientBundle, context: _Context, clinic_id: int) -> None:
        self.bundle = bundle
        self.context = context
        self.clinic_id = clinic_id
        self.current: _Item = bundle.item
        self.episodes: dict[str, int] = {}
        self.patient_id = 0
        self.withdrawals: list[tuple[int, dt.date]] = []  # (consent id, withdrawn on)

    def write(self) -> None:
        """Everything of the patient, in the order the services' checks need (consent before
        treatment, harvest before processing before injection; withdrawals last)."""
        self.register()
        self.rest(bulk_written=False)

    def register(self) -> None:
        """The patient, consents, diagnoses, prior treatments and episodes (with schedules)."""
        context, actor = self.context, self.context.actor
        given = self.bundle.patient
        assert given is not None
        patient = registry_services.register_patient(
            actor=actor, clinic_id=self.clinic_id, mrn=given.mrn, given_name=given.given_name,
            family_name=given.family_name, date_of_birth=given.date_of_birth, sex=given.sex,
            email=given.email, phone=given.phone,
        )  # fmt: skip
        self.patient_id = patient.pk
        withdrawals = self.withdrawals
        for item in self._each(self.bundle.consents):
            consent: ImportedConsent = item.value
            made = registry_services.record_consent(
                actor=actor, patient_id=patient.pk, kind=consent.kind,
                form_version=consent.form_version, signed_on=consent.signed_on,
            )  # fmt: skip
            if consent.withdrawn_on is not None:
                withdrawals.append((made.pk, consent.withdrawn_on))
        for item in self._each(self.bundle.diagnoses):
            diagnosis: ImportedDiagnosis = item.value
            fields = {k: getattr(diagnosis, k) for k in diagnosis.__dataclass_fields__}
            fields.pop("patient_ref")
            registry_services.record_diagnosis(actor=actor, patient_id=patient.pk, **fields)
        for item in self._each(self.bundle.priors):
            prior: ImportedPriorTreatment = item.value
            fields = {k: getattr(prior, k) for k in prior.__dataclass_fields__}
            for name in ("source_ref", "patient_ref"):
                fields.pop(name)
            registry_services.record_prior_treatment(actor=actor, patient_id=patient.pk, **fields)
        for item in self._each(self.bundle.episodes):
            episode: ImportedEpisode = item.value
            created = followup_services.start_episode_with_follow_up(
                actor=actor, patient_id=patient.pk, arm=episode.arm,
                start_date=episode.start_date, today=context.today, cost=episode.cost,
            )  # fmt: skip
            self.episodes[episode.source_ref] = created.pk

    def rest(self, *, bulk_written: bool) -> None:
        """After :meth:`register` (or the bulk path's equivalent): the pathway, clinical and
        adverse events and the answers (unless ``bulk_written``: the bulk path wrote them) and
        the consent withdrawals (always), through the services."""
        actor = self.context.actor
        if bulk_written:
            self._withdrawals()
            return
        self._pathway()
        for item in self._each(self.bundle.events):
            event: ImportedClinicalEvent = item.value
            registry_services.record_clinical_event(
                actor=actor, patient_id=self.patient_id, kind=event.kind,
                occurred_on=event.occurred_on, episode_id=self._episode(event.episode_ref),
                details=event.details,
            )  # fmt: skip
        for item in self._each(self.bundle.adverse):
            self._adverse_event(item.value)
        self._responses()
        self._withdrawals()

    def _withdrawals(self) -> None:
        """Consent withdrawals, last (a withdrawn treatment consent blocks later steps)."""
        actor = self.context.actor
        for consent_id, withdrawn_on in self.withdrawals:
            registry_services.withdraw_consent(
                actor=actor, consent_id=consent_id, withdrawn_on=withdrawn_on,
                reason="imported: withdrawn in the source registry",
            )  # fmt: skip

    def _each(self, items: Sequence[_Item]) -> Iterator[_Item]:
        for item in items:
            self.current = item
            yield item

    def _episode(self, source_ref: str | None) -> int | None:
        if source_ref is None:
            return None
        if source_ref not in self.episodes:
            raise _Refused(f"refers to {source_ref}, not a treatment episode of this patient")
        return self.episodes[source_ref]

    def _pathway(self) -> None:
        """Harvests, processed products (with sterility) and injections."""
        actor = self.context.actor
        harvest_episode: dict[dt.date, list[int]] = defaultdict(list)
        for item in self._each(self.bundle.harvests):
            harvest: ImportedHarvest = item.value
            episode_id = self._episode(harvest.episode_ref)
            assert episode_id is not None
            lot_id = None
            if harvest.source in ("umbilical_cord_allogeneic", "other_allogeneic"):
                lot_id = _lot_id(self.context, harvest.lot)
            registry_services.record_harvest(
                actor=actor, episode_id=episode_id, source=harvest.source,
                harvested_on=harvest.harvested_on, volume_ml=harvest.volume_ml,
                allogeneic_lot_id=lot_id,
            )  # fmt: skip
            harvest_episode[harvest.harvested_on].append(episode_id)
        products = {p.value.source_ref: p.value for p in self.bundle.products}
        used_in = self._product_episodes(products)
        for item in self._each(self.bundle.products):
            product: ImportedProduct = item.value
            episode_id = used_in.get(product.product_id)
            if episode_id is None:
                candidates = (
                    harvest_episode.get(product.harvested_on) if product.harvested_on else None
                )
                if not candidates or len(candidates) != 1:
                    raise _Refused("cannot tell which harvest the product was processed from")
                episode_id = candidates[0]
            registry_services.record_processing(
                actor=actor, episode_id=episode_id, method=product.method, lab=product.lab,
                processed_on=product.processed_on, product_id=product.product_id,
                tnc_per_ml=product.tnc_per_ml, cfu_f_per_ml=product.cfu_f_per_ml,
                cd34_pct=product.cd34_pct, viability_pct=product.viability_pct,
                sterility=product.sterility, adjunct_prp=product.adjunct_prp,
                adjunct_hyaluronic_acid=product.adjunct_hyaluronic_acid,
            )  # fmt: skip
        shots = sorted(self.bundle.injections, key=lambda i: (i.value.injected_on, i.line))
        for item in self._each(shots):
            shot: ImportedInjection = item.value
            product_id, lot_id = self._product_of(shot, products)
            registry_services.record_injection(
                actor=actor, episode_id=self._episode(shot.episode_ref) or 0, levels=shot.levels,
                target=shot.target, guidance=shot.guidance, volume_ml=shot.volume_ml,
                injected_on=shot.injected_on, product_id=product_id, allogeneic_lot_id=lot_id,
                cell_dose=shot.cell_dose, adjunct_prp=shot.adjunct_prp,
            )  # fmt: skip

    def _product_of(
        self, shot: ImportedInjection, products: Mapping[str, ImportedProduct]
    ) -> tuple[str | None, int | None]:
        """(product id, None) or (None, lot id) of the product an injection used."""
        link = shot.product
        if link is None:
            raise _Refused(
                "the injection names no product (usedReference, focalDevice or extension)"
            )
        codes = self.context.codes
        if link.system == codes.identifier_system("product") and link.value:
            return link.value, None
        if link.reference is not None and link.reference in products:
            return products[link.reference].product_id, None
        return None, _lot_id(self.context, link)

    def _product_episodes(self, products: Mapping[str, ImportedProduct]) -> dict[str, int]:
        """Product id -> the episode whose injection used it (places the processing)."""
        found: dict[str, int] = {}
        codes = self.context.codes
        for item in self.bundle.injections:
            shot: ImportedInjection = item.value
            link = shot.product
            if link is None or shot.episode_ref not in self.episodes:
                continue
            if link.system == codes.identifier_system("product") and link.value:
                found.setdefault(link.value, self.episodes[shot.episode_ref])
            elif link.reference is not None and link.reference in products:
                found.setdefault(
                    products[link.reference].product_id, self.episodes[shot.episode_ref]
                )
        return found

    def _adverse_event(self, event: ImportedAdverseEvent) -> None:
        graded = event.ctcae_grade is not None and bool(event.relatedness)
        if event.adjudicated != graded:
            raise _Refused(
                "adjudicated without both CTCAE grade and relatedness"
                if event.adjudicated
                else "pending, yet graded with both CTCAE grade and relatedness"
            )
        registry_services.record_adverse_event(
            actor=self.context.actor, patient_id=self.patient_id, description=event.description,
            category=event.category, onset=event.onset,
            episode_id=self._episode(event.episode_ref), serious=event.serious,
            ctcae_grade=event.ctcae_grade, relatedness=event.relatedness,
            expected=event.expected, outcome=event.outcome, resolved_on=event.resolved_on,
        )  # fmt: skip

    def _responses(self) -> None:
        """Answers grouped by (episode, time point), stored through the follow-up service."""
        grouped: dict[tuple[int, str], dict[str, followup_services.ImportedAnswers]] = defaultdict(
            dict
        )
        items: dict[tuple[int, str], dict[str, _Item]] = defaultdict(dict)
        for item in self._each(self.bundle.responses):
            response: ImportedResponse = item.value
            episode_id = self._episode(response.episode_ref)
            assert episode_id is not None
            key = (episode_id, response.time_point_key)
            items[key].setdefault(response.instrument_id, item)
            if response.instrument_id in grouped[key]:
                raise _Refused(f"a second {response.instrument_id} response at one time point")
            grouped[key][response.instrument_id] = followup_services.ImportedAnswers(
                instrument_version=response.instrument_version,
                answers=dict(response.answers),
                authored=response.authored,
                psfs_names=response.psfs_names,
            )
        if not grouped:
            return
        points = FollowUpTimePoint.objects.filter(
            schedule__episode_id__in={episode for episode, _ in grouped}
        ).values_list("schedule__episode_id", "key", "pk")
        ids = {(episode, key): pk for episode, key, pk in points}
        for key, answers in grouped.items():
            self.current = next(iter(items[key].values()))
            if key not in ids:
                raise _Refused("time point not in this registry's follow-up protocol")
            try:
                followup_services.record_imported_answers(
                    actor=self.context.actor, time_point_id=ids[key],
                    answers_by_instrument=answers, source=self.context.source,
                    now=self.context.now,
                )  # fmt: skip
            except SubmissionInvalid as exc:  # name the response of the instrument refused
                self.current = items[key].get(next(iter(exc.errors), ""), self.current)
                raise


def _reason(exc: Exception) -> str:
    """A refusal as one line (a ValidationError's field messages joined)."""
    if isinstance(exc, ValidationError) and hasattr(exc, "message_dict"):
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
    return _first_line(exc)


def _count(report: ImportReport, bundle: PatientBundle, column: str) -> None:
    """Count every resource of the patient as imported or already present."""
    for item in bundle.items():
        tally = report.tally(item.kind)
        if column == "imported":
            tally.imported += 1
        else:
            tally.present += 1


def _refuse(report: ImportReport, bundle: PatientBundle, culprit: _Item, reason: str) -> None:
    """Refuse the whole patient: the culprit (and the Patient) with the reason, the rest
    with :data:`WITH_PATIENT`."""
    report.patients_refused += 1
    for item in bundle.items():
        if item is culprit or item is bundle.item:
            report.refuse(item.kind, item.rid, reason)
        else:
            report.refuse(item.kind, item.rid, WITH_PATIENT)


def _derived_problem(bundle: PatientBundle) -> tuple[_Item, str] | None:
    """A derived resource whose response is not among the patient's responses."""
    responses = {f"QuestionnaireResponse/{item.rid}" for item in bundle.responses}
    for item, source in bundle.derived:
        if source not in responses:
            return item, f"derived from {source or 'nothing'}, not a response of this patient"
    return None


def import_fhir_folder(
    folder: Path,
    *,
    username: str,
    today: dt.date,
    clinic_id: int | None = None,
    clinic_map: Mapping[str, int] | None = None,
    now: dt.datetime | None = None,
    validate: bool = True,
    careful: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_patient: Callable[[], None] | None = None,
) -> ImportReport:
    """Import ``folder`` as ``username`` (see the module docstring).

    ``clinic_id`` receives the patients whose MRN system ``clinic_map`` does not name.
    ``careful``: every patient in its own transaction through the services (else the bulk path,
    :mod:`vertebra.interop.importbulk`: same rows, same audit records, same report, with the
    careful path deciding every patient the bulk checks do not pass).
    ``on_start(n_patients)`` is called once the files are read, ``on_patient()`` after each
    patient (a progress bar). Raises ImportSetupError (clinics, user) or ImportFormatError (a
    malformed line) before any write; otherwise returns the report.
    """
    clinic_map = dict(clinic_map or {})
    targets = sorted({*clinic_map.values(), *([clinic_id] if clinic_id is not None else [])})
    if not targets:
        raise ImportSetupError("--clinic: name the receiving clinic (or --clinic-map)")
    actor, admin = _actors(username, targets)
    codes = fhir_codes()
    report = ImportReport()
    found = read_folder(folder, codes, validate=validate, report=report)
    clinic_for = _clinic_resolver(codes, clinic_id, clinic_map)
    context = _Context(
        actor=actor, admin=admin, codes=codes, clinic_for=clinic_for, lots=found.lots,
        lot_ids={}, today=today, now=now or timezone.now(), source=f"fhir-import:{folder.name}",
    )  # fmt: skip
    for item in found.organizations:  # reference data: mapped or looked up, never duplicated
        if item.kind == "Organization" or (item.kind == "Questionnaire" and not item.value):
            report.tally(item.kind).present += 1
        elif item.kind == "Questionnaire":
            report.refuse(item.kind, item.rid, item.value)
        else:
            _import_lot(item, context, report)
    for item, reason in found.orphans:
        report.refuse(item.kind, item.rid, reason)
    numbers = sorted({lot.lot_number for lot in found.lots.values()})
    for start in range(0, len(numbers), 500):  # SQLite caps the parameters of one query
        for lot in AllogeneicLot.objects.filter(lot_number__in=numbers[start : start + 500]):
            context.known_lots[lot.lot_number] = lot
    bundles = list(found.bundles.values())
    placed, unplaced = _identity(bundles, clinic_for)
    present = _present(placed)
    if on_start is not None:
        on_start(len(bundles))
    done = on_patient or (lambda: None)
    todo: list[tuple[PatientBundle, int]] = []
    for bundle in bundles:
        clinic = _triage(bundle, placed, unplaced, present, report)
        if clinic is None:
            done()
        elif careful:
            _write_careful(bundle, context, clinic, report)
            done()
        else:
            todo.append((bundle, clinic))
    for start in range(0, len(todo), importbulk.BATCH_PATIENTS):
        _write_bulk(todo[start : start + importbulk.BATCH_PATIENTS], context, report, done)
    return report


def _triage(
    bundle: PatientBundle,
    placed: Mapping[str, tuple[int, str]],
    unplaced: Mapping[str, str],
    present: Mapping[tuple[int, str], tuple[Any, str]],
    report: ImportReport,
) -> int | None:
    """The receiving clinic of a patient to write, or None when the patient is decided here
    (refused, or counted as already present)."""
    problem = bundle.problems[0] if bundle.problems else _derived_problem(bundle)
    if problem is not None:
        _refuse(report, bundle, *problem)
        return None
    if bundle.ref in unplaced:
        _refuse(report, bundle, bundle.item, unplaced[bundle.ref])
        return None
    clinic, mrn = placed[bundle.ref]
    given = bundle.patient
    assert given is not None
    if (clinic, mrn) in present:
        born, family = present[(clinic, mrn)]
        if (born, family) != (given.date_of_birth, given.family_name):
            _refuse(report, bundle, bundle.item, "MRN already registered at the clinic for "
                    "another person (birth date or family name differs)")  # fmt: skip
        else:
            report.patients_present += 1
            _count(report, bundle, "present")
        return None
    return clinic


def _write_careful(
    bundle: PatientBundle, context: _Context, clinic: int, report: ImportReport
) -> None:
    """One patient in its own transaction through the services (imported, or refused whole)."""
    report.patients_careful += 1
    writer = _Writer(bundle, context, clinic)
    try:
        with transaction.atomic():
            writer.write()
    except (ValidationError, RegistryError, FollowUpError, _Refused, DatabaseError) as exc:
        _refuse(report, bundle, writer.current, _reason(exc))
    else:
        report.patients_imported += 1
        _count(report, bundle, "imported")


def _prepared(bundle: PatientBundle, context: _Context, clinic: int) -> importbulk.PreparedPatient:
    """The bundle's bulk-part rows (NotBulk: the careful path decides)."""
    given = bundle.patient
    assert given is not None
    names = ("mrn", "given_name", "family_name", "date_of_birth", "sex", "email", "phone")
    diagnoses = []
    for item in bundle.diagnoses:
        fields = {k: getattr(item.value, k) for k in item.value.__dataclass_fields__}
        fields.pop("patient_ref")
        diagnoses.append(fields)
    priors = []
    for item in bundle.priors:
        fields = {k: getattr(item.value, k) for k in item.value.__dataclass_fields__}
        for name in ("source_ref", "patient_ref"):
            fields.pop(name)
        priors.append(fields)
    prepared = importbulk.prepare(
        clinic_id=clinic, actor=context.actor,
        patient_fields={name: getattr(given, name) for name in names},
        consents=[i.value for i in bundle.consents], diagnoses=diagnoses, priors=priors,
        episodes=[i.value for i in bundle.episodes], responses=[i.value for i in bundle.responses],
        clinical_events=[i.value for i in bundle.events],
        adverse_events=[i.value for i in bundle.adverse], now=context.now,
    )  # fmt: skip
    shots = sorted(bundle.injections, key=lambda i: (i.value.injected_on, i.line))

    def lot_of(link: ProductLink | None) -> AllogeneicLot | None:
        lot = _lot_of(context, link)
        return None if lot is None else context.known_lots.get(lot.lot_number)

    pathway = importbulk.PathwayInput(
        harvests=[i.value for i in bundle.harvests], products=[i.value for i in bundle.products],
        injections=[i.value for i in shots],
        product_system=context.codes.identifier_system("product"), lot_of=lot_of,
    )  # fmt: skip
    importbulk.prepare_pathway(prepared, pathway, context.actor)
    prepared.extra = bundle
    return prepared


def _write_bulk(
    chunk: Sequence[tuple[PatientBundle, int]],
    context: _Context,
    report: ImportReport,
    done: Callable[[], None],
) -> None:
    """One batch through the bulk path; the patients its checks do not pass, and every patient
    of a sub-batch that fails while writing, through the careful path."""
    ready: list[importbulk.PreparedPatient] = []
    for bundle, clinic in chunk:
        try:
            ready.append(_prepared(bundle, context, clinic))
        except importbulk.NotBulk:
            _write_careful(bundle, context, clinic, report)
            done()
    _write_halving(ready, context, report, done)


def _write_halving(
    ready: Sequence[importbulk.PreparedPatient],
    context: _Context,
    report: ImportReport,
    done: Callable[[], None],
) -> None:
    """Write ``ready`` in one transaction; if that fails, each half again (a single patient:
    the careful path, which refuses it with the service's reason). A bad patient costs a few
    rolled-back transactions, never the batch's other patients."""
    if not ready:
        return
    lot_ids = dict(context.lot_ids)  # lots registered in a rolled-back batch are gone again

    def rest(prepared: importbulk.PreparedPatient) -> None:
        writer = _Writer(prepared.extra, context, prepared.clinic_id)
        writer.patient_id = int(prepared.patient.pk)
        writer.episodes = dict(prepared.episode_ids)
        writer.withdrawals = [(int(c.pk), w) for c, w in prepared.consents if w is not None]
        writer.rest(bulk_written=True)

    try:
        importbulk.write_batch(
            ready, actor=context.actor, today=context.today, now=context.now,
            source=context.source, rest=rest,
        )  # fmt: skip
    except (*importbulk.BATCH_FAILURES, _Refused):
        context.lot_ids = lot_ids
        if len(ready) == 1:
            _write_careful(ready[0].extra, context, ready[0].clinic_id, report)
            done()
            return
        middle = len(ready) // 2
        for half in (ready[:middle], ready[middle:]):
            # a fresh copy of each patient's rows: the failed attempt set their primary keys
            again = [_prepared(p.extra, context, p.clinic_id) for p in half]
            _write_halving(again, context, report, done)
        return
    for prepared in ready:
        report.patients_imported += 1
        _count(report, prepared.extra, "imported")
        done()
