"""The registry's JSON API (mounted at ``/api/v1/``): patients and their treatment pathway.

Contracts
---------
* Bearer-token authentication (:class:`TokenAuth`); a token acts as one user in one role.
  Missing, unknown, expired or revoked token → 401.
* Same selectors and services as the pages, so the same permission matrix, clinic scoping and
  audit rows apply. Errors are RFC 9457 problems (``application/problem+json`` with ``type``,
  ``title``, ``status``, ``detail``; see docs/perimeter.md "API errors"):

  - 403: the token's role may not do this;
  - 404: no such object *for this caller* — another clinic's id gets exactly the same body as
    an id that does not exist;
  - 409: stale edit (optimistic locking), nothing written; ``type``
    ``urn:vertebra:problem:stale-edit``;
  - 422: invalid input (``type`` ``urn:vertebra:problem:validation-error``), ``errors`` lists
    ``{field, loc, msg, type}`` per problem, like ninja's own validation errors;
    chain-of-custody refusals are 422 too, ``type`` ``urn:vertebra:problem:chain-of-custody``
    (``errors[0].type``: ``chain_of_custody``); a missing pathway step is 422 with ``type``
    naming what is missing (``urn:vertebra:problem:treatment-consent``, ...), ``remedy`` (the
    code, also ``errors[0].type``) and ``next_step`` (the call that supplies it);
  - 401 carries ``WWW-Authenticate: Bearer``; 429 (rate limit) carries ``Retry-After``.
* Lists are paginated (``limit`` 1–100, ``offset``) and sort only by :data:`SORT_VALUES`.
* Inputs are bounded (ids fit a 64-bit integer, strings their column and without NUL, numbers
  finite), so nothing a client sends can reach the database as an error of its own.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Path, Query, Router, Schema
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.responses import Status
from ninja.security import HttpBearer

from vertebra.followup.services import (
    start_episode_with_follow_up,
    withdraw_consent_and_stop_invitations,
)
from vertebra.perimeter.problems import ProblemError, field_errors
from vertebra.registry import selectors, services
from vertebra.registry.errors import (
    ChainOfCustodyError,
    MissingStepError,
    NotFound,
    PermissionDeniedError,
    StaleEditError,
)
from vertebra.registry.guidance import api_next_step
from vertebra.registry.models import (
    EPISODE_COST_FIELDS,
    AdverseEventCategory,
    AdverseEventOutcome,
    Arm,
    BilledTo,
    CellSource,
    Condition,
    ConsentKind,
    Guidance,
    InjectionTarget,
    Laterality,
    ProcessingMethod,
    Relatedness,
    Sex,
    SpinalLevel,
    Stenosis,
    Sterility,
)
from vertebra.registry.permissions import Actor

NOT_FOUND = "Not found."
MAX_ID = 2**63 - 1
SORT_VALUES = tuple(selectors.SORTS)

# ------------------------------------------------------------------------ input types

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
# No NUL (PostgreSQL text cannot hold it); length as the column allows.
_NO_NUL = r"^[^\x00]*$"


def Text(max_length: int, *, min_length: int = 0) -> Any:
    """A string field bounded like its column, without NUL characters."""
    return Annotated[str, Field(max_length=max_length, min_length=min_length, pattern=_NO_NUL)]


def Amount(*, le: float | None = None) -> Any:
    """A finite, non-negative number (optionally capped)."""
    return Annotated[float, Field(ge=0, le=le, allow_inf_nan=False)]


def _choices(enum: Any, *, blank: bool = False) -> Any:
    """``Literal`` of an enum's values (plus "" when the field may be left blank), so the
    OpenAPI document lists the allowed values."""
    values = ("", *enum.values) if blank else tuple(enum.values)
    return Literal[values]


SexChoice = _choices(Sex)
ConditionChoice = _choices(Condition)
ArmChoice = _choices(Arm)
LevelChoice = _choices(SpinalLevel)
# Choice fields that may be left blank ("not recorded").
LevelOrBlank = _choices(SpinalLevel, blank=True)
LateralityOrBlank = _choices(Laterality, blank=True)
StenosisOrBlank = _choices(Stenosis, blank=True)
ConditionOrBlank = _choices(Condition, blank=True)
ArmOrBlank = _choices(Arm, blank=True)
RelatednessOrBlank = _choices(Relatedness, blank=True)
BilledToOrBlank = _choices(BilledTo, blank=True)
SortChoice: Any = Literal[SORT_VALUES]

# ------------------------------------------------------------------------ output schemas


class ErrorOut(Schema):
    """Every refusal: an RFC 9457 problem (``application/problem+json``, docs/perimeter.md "API errors")."""

    type: str = Field(description="about:blank, or urn:vertebra:problem:<kind>")
    title: str
    status: int
    detail: str


class FieldError(Schema):
    field: str = Field(description="The field the problem is about.")
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(ErrorOut):
    """Invalid input: one entry per problem in ``errors``, each naming its ``field``."""

    errors: list[FieldError]
    remedy: str | None = Field(
        None, description="Only when a pathway step is missing: what (also errors[0].type)."
    )
    next_step: str | None = Field(
        None, description="Only when a pathway step is missing: the call that supplies it."
    )


class PatientOut(Schema):
    id: int
    clinic_id: int
    mrn: str
    given_name: str
    family_name: str
    date_of_birth: dt.date
    sex: str
    email: str
    phone: str
    created_at: dt.datetime
    version: int = Field(description="Send back as expected_version when editing.")
    voided_at: dt.datetime | None = Field(None, description="Set when voided (entered in error).")
    void_reason: str = ""


class PatientPageOut(Schema):
    items: list[PatientOut]
    total: int
    limit: int
    offset: int


class DiagnosisOut(Schema):
    id: int
    patient_id: int
    condition: str
    icd10: str
    diagnosed_on: dt.date
    level: str
    laterality: str
    pfirrmann_grade: int | None = Field(description="Classic Pfirrmann scale (2001), 1-5.")
    modified_pfirrmann_grade: int | None = Field(
        description="Modified Pfirrmann scale (Griffith 2007), 1-8."
    )
    modic_type: int | None
    disc_height_pct: float | None
    spondylolisthesis_grade: int | None
    stenosis: str
    version: int = Field(description="Send back as expected_version when correcting.")
    voided_at: dt.datetime | None = Field(description="Set when voided (entered in error).")
    void_reason: str


class HarvestOut(Schema):
    id: int
    episode_id: int
    source: str
    allogeneic_lot_id: int | None
    volume_ml: float | None
    harvested_on: dt.date
    operator_id: int
    version: int = Field(description="Send back as expected_version when correcting.")
    voided_at: dt.datetime | None = Field(description="Set when voided (entered in error).")
    void_reason: str


class ProcessingOut(Schema):
    id: int
    harvest_id: int
    method: str
    lab: str
    processed_on: dt.date
    product_id: str
    tnc_per_ml: float | None = Field(description="Total nucleated cells, million cells per mL.")
    cfu_f_per_ml: float | None = Field(description="CFU-F, colonies per mL.")
    cd34_pct: float | None
    viability_pct: float | None
    sterility: str
    adjunct_prp: bool
    adjunct_hyaluronic_acid: bool
    version: int = Field(description="Send back as expected_version when correcting.")
    voided_at: dt.datetime | None = Field(description="Set when voided (entered in error).")
    void_reason: str


class InjectionOut(Schema):
    id: int
    episode_id: int
    processing_id: int | None
    allogeneic_lot_id: int | None
    levels: list[str]
    target: str
    guidance: str
    volume_ml: float = Field(description="Millilitres injected in total, across every level.")
    cell_dose: float | None = Field(description="Cells given, in million cells (20 = 20 × 10⁶).")
    adjunct_prp: bool
    injected_on: dt.date
    operator_id: int
    version: int = Field(description="Send back as expected_version when correcting.")
    voided_at: dt.datetime | None = Field(description="Set when voided (entered in error).")
    void_reason: str


class EpisodeOut(Schema):
    id: int
    patient_id: int
    arm: str
    start_date: dt.date
    version: int
    voided_at: dt.datetime | None = None
    void_reason: str = ""
    harvest_id: int | None = None
    processing_id: int | None = None
    injection_ids: list[int] = []
    price: str | None = Field(None, description="Price charged (decimal string), in currency.")
    currency: str = ""
    billed_to: str = ""
    patient_paid: str | None = Field(None, description="Paid out of pocket (decimal string).")
    cost_note: str = ""


class AdverseEventOut(Schema):
    id: int
    patient_id: int
    episode_id: int | None
    description: str
    category: str
    onset: dt.date
    ctcae_grade: int | None
    serious: bool
    relatedness: str
    expected: bool | None
    outcome: str
    resolved_on: dt.date | None
    status: str
    version: int = Field(description="Send back as expected_version when correcting.")
    voided_at: dt.datetime | None = Field(description="Set when voided (entered in error).")
    void_reason: str


# ------------------------------------------------------------------------ input schemas


class PatientIn(Schema):
    clinic_id: int = Field(ge=1, le=MAX_ID)
    mrn: Text(64, min_length=1)  # type: ignore[valid-type]
    given_name: Text(150, min_length=1)  # type: ignore[valid-type]
    family_name: Text(150, min_length=1)  # type: ignore[valid-type]
    date_of_birth: dt.date
    sex: SexChoice  # type: ignore[valid-type]
    email: Text(254) = ""  # type: ignore[valid-type]
    phone: Text(40) = ""  # type: ignore[valid-type]


class PatientPatch(Schema):
    """Changed fields only, with the version you loaded and why you change it."""

    expected_version: int = Field(ge=1, le=MAX_ID)
    reason: Text(500, min_length=1)  # type: ignore[valid-type]
    mrn: Text(64, min_length=1) | None = None  # type: ignore[valid-type]
    given_name: Text(150, min_length=1) | None = None  # type: ignore[valid-type]
    family_name: Text(150, min_length=1) | None = None  # type: ignore[valid-type]
    date_of_birth: dt.date | None = None
    sex: SexChoice | None = None  # type: ignore[valid-type]
    email: Text(254) | None = None  # type: ignore[valid-type]
    phone: Text(40) | None = None  # type: ignore[valid-type]


class DiagnosisIn(Schema):
    condition: ConditionChoice  # type: ignore[valid-type]
    icd10: Text(8, min_length=1)  # type: ignore[valid-type]
    diagnosed_on: dt.date
    level: LevelOrBlank = ""  # type: ignore[valid-type]
    laterality: LateralityOrBlank = ""  # type: ignore[valid-type]
    pfirrmann_grade: int | None = Field(
        None, ge=1, le=5, description="Classic Pfirrmann scale (2001), 1-5."
    )
    modified_pfirrmann_grade: int | None = Field(
        None, ge=1, le=8, description="Modified Pfirrmann scale (Griffith 2007), 1-8."
    )
    modic_type: int | None = Field(None, ge=0, le=3)
    disc_height_pct: Amount(le=100) | None = None  # type: ignore[valid-type]
    spondylolisthesis_grade: int | None = Field(None, ge=0, le=5)
    stenosis: StenosisOrBlank = ""  # type: ignore[valid-type]


class EpisodeIn(Schema):
    arm: ArmChoice  # type: ignore[valid-type]
    start_date: dt.date
    # Cost and coverage (optional; docs/algorithms/cost.md). Amounts in `currency` (ISO 4217).
    price: Amount(le=1e9) | None = None  # type: ignore[valid-type]
    currency: str = Field("", max_length=3)
    billed_to: BilledToOrBlank = ""  # type: ignore[valid-type]
    patient_paid: Amount(le=1e9) | None = None  # type: ignore[valid-type]
    cost_note: str = Field("", max_length=200)


class HarvestIn(Schema):
    source: _choices(CellSource)  # type: ignore[valid-type]
    harvested_on: dt.date
    volume_ml: Amount(le=1e6) | None = None  # type: ignore[valid-type]
    allogeneic_lot_id: int | None = Field(None, ge=1, le=MAX_ID)


class ProcessingIn(Schema):
    method: _choices(ProcessingMethod)  # type: ignore[valid-type]
    lab: Text(200, min_length=1)  # type: ignore[valid-type]
    processed_on: dt.date
    product_id: Text(64, min_length=1)  # type: ignore[valid-type]
    tnc_per_ml: Amount(le=1e15) | None = Field(  # type: ignore[valid-type]
        None, description="Total nucleated cells, million cells per mL (121 = 121 × 10⁶/mL)."
    )
    cfu_f_per_ml: Amount(le=1e15) | None = Field(  # type: ignore[valid-type]
        None, description="CFU-F, colonies per mL."
    )
    cd34_pct: Amount(le=100) | None = None  # type: ignore[valid-type]
    viability_pct: Amount(le=100) | None = None  # type: ignore[valid-type]
    sterility: _choices(Sterility) = Sterility.PENDING.value  # type: ignore[valid-type]
    adjunct_prp: bool = False
    adjunct_hyaluronic_acid: bool = False


class InjectionIn(Schema):
    """Exactly one of ``product_id`` (a processed product) or ``allogeneic_lot_id``."""

    levels: list[LevelChoice] = Field(min_length=1, max_length=5)  # type: ignore[valid-type]
    target: _choices(InjectionTarget)  # type: ignore[valid-type]
    guidance: _choices(Guidance)  # type: ignore[valid-type]
    volume_ml: Amount(le=1e4)  # type: ignore[valid-type]
    injected_on: dt.date
    product_id: Text(64, min_length=1) | None = None  # type: ignore[valid-type]
    allogeneic_lot_id: int | None = Field(None, ge=1, le=MAX_ID)
    cell_dose: Amount(le=1e15) | None = Field(  # type: ignore[valid-type]
        None, description="Cells given, in million cells (20 = 20 × 10⁶ cells)."
    )
    adjunct_prp: bool = Field(
        False,
        description="PRP given with this injection (the place to record it for an allogeneic lot).",
    )


class ConsentOut(Schema):
    id: int
    patient_id: int
    kind: str
    form_version: str
    signed_on: dt.date
    withdrawn_on: dt.date | None


class ConsentIn(Schema):
    kind: _choices(ConsentKind)  # type: ignore[valid-type]
    form_version: Text(40, min_length=1)  # type: ignore[valid-type]
    signed_on: dt.date


class ConsentWithdrawIn(Schema):
    """The day the patient withdrew; ``reason``: how it was received (optional)."""

    withdrawn_on: dt.date
    reason: Text(500) = ""  # type: ignore[valid-type]


class SterilityIn(Schema):
    """The lab's result; changing a result already recorded needs ``reason``."""

    sterility: Literal["pass", "fail"]
    reason: Text(500) = ""  # type: ignore[valid-type]


class AdverseEventIn(Schema):
    """A report; grading (``ctcae_grade`` with ``relatedness``) needs the adjudicate right."""

    description: Text(5000, min_length=1)  # type: ignore[valid-type]
    category: _choices(AdverseEventCategory)  # type: ignore[valid-type]
    onset: dt.date
    episode_id: int | None = Field(None, ge=1, le=MAX_ID)
    serious: bool = False
    ctcae_grade: int | None = Field(None, ge=1, le=5)
    relatedness: RelatednessOrBlank = ""  # type: ignore[valid-type]
    expected: bool | None = None
    outcome: _choices(AdverseEventOutcome) = AdverseEventOutcome.UNKNOWN.value  # type: ignore[valid-type]
    resolved_on: dt.date | None = None


# ------------------------------------------------------------------------ authentication


class TokenAuth(HttpBearer):
    """``Authorization: Bearer <token>``; ``request.auth`` becomes the token's Actor."""

    def authenticate(self, request: HttpRequest, token: str) -> Actor | None:
        request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        return services.authenticate_api_token(token, request_id=request_id)


router = Router(auth=TokenAuth(), tags=["registry"])

#: Responses every endpoint may give besides its success.
ERRORS: dict[int, Any] = {
    400: ErrorOut,  # a body that is not JSON at all (or not UTF-8, or nested too deeply)
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    413: ErrorOut,  # a body over MAX_REQUEST_BODY_BYTES
    422: ValidationErrorOut,
    429: ErrorOut,  # over a rate limit; Retry-After says when to try again
}

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _field_errors(exc: DjangoValidationError) -> list[dict[str, Any]]:
    """A Django ValidationError as ninja-style 422 entries, keyed by field name."""
    if hasattr(exc, "error_dict"):
        return [
            {"loc": ["body", name], "msg": message, "type": "value_error"}
            for name, errors in exc.message_dict.items()
            for message in errors
        ]
    return [{"loc": ["body"], "msg": message, "type": "value_error"} for message in exc.messages]


def registry_errors(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn the registry's refusals into the HTTP answers of the module docstring."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except PermissionDeniedError as exc:
            raise HttpError(403, str(exc)) from None
        except NotFound:
            raise HttpError(404, NOT_FOUND) from None
        except StaleEditError as exc:
            raise HttpError(409, str(exc)) from None
        except MissingStepError as exc:
            # What is missing, as ``type``, and the call that supplies it, in the message.
            step = api_next_step(exc)
            message = f"{exc} Next: {step}." if step else str(exc)
            raise ProblemError(
                422,
                message,
                slug=exc.remedy.replace("_", "-"),
                errors=field_errors([{"loc": ["body"], "msg": message, "type": exc.remedy}]),
                remedy=exc.remedy,
                next_step=step,
            ) from None
        except ChainOfCustodyError as exc:
            raise ProblemError(
                422,
                str(exc),
                slug="chain-of-custody",
                errors=field_errors(
                    [{"loc": ["body"], "msg": str(exc), "type": "chain_of_custody"}]
                ),
            ) from None
        except DjangoValidationError as exc:
            raise NinjaValidationError(_field_errors(exc)) from None

    return wrapper


def _actor(request: HttpRequest) -> Actor:
    auth = getattr(request, "auth", None)
    assert isinstance(auth, Actor)  # TokenAuth admitted the request
    return auth


def _episode_out(episode: Any) -> EpisodeOut:
    harvest = getattr(episode, "harvest", None)
    processing = getattr(harvest, "processing", None) if harvest is not None else None
    return EpisodeOut(
        id=episode.pk,
        patient_id=episode.patient_id,
        arm=episode.arm,
        start_date=episode.start_date,
        version=episode.version,
        voided_at=episode.voided_at,
        void_reason=episode.void_reason,
        harvest_id=harvest.pk if harvest is not None else None,
        processing_id=processing.pk if processing is not None else None,
        injection_ids=[injection.pk for injection in episode.injections.all()],
        price=None if episode.price is None else f"{Decimal(episode.price):.2f}",
        currency=episode.currency,
        billed_to=episode.billed_to,
        patient_paid=(
            None if episode.patient_paid is None else f"{Decimal(episode.patient_paid):.2f}"
        ),
        cost_note=episode.cost_note,
    )


# ------------------------------------------------------------------------ patients


class PatientQuery(Schema):
    search: Text(100) = ""  # type: ignore[valid-type]
    condition: ConditionOrBlank = ""  # type: ignore[valid-type]
    arm: ArmOrBlank = ""  # type: ignore[valid-type]
    sort: SortChoice = "name"
    limit: int = Field(25, ge=1, le=selectors.MAX_RESULTS)
    offset: int = Field(0, ge=0, le=10_000_000)


@router.get("/patients", response={200: PatientPageOut, **ERRORS}, summary="Search your patients")
@registry_errors
def list_patients(request: HttpRequest, filters: Query[PatientQuery]) -> PatientPageOut:
    """Patients of your clinics: ``search`` (MRN prefix or part of a name), filter by
    diagnosis ``condition`` and treatment ``arm``, ``sort`` from an allow-list, paginated."""
    page = selectors.search_patients(actor=_actor(request), **filters.dict())
    return PatientPageOut(
        items=[PatientOut.from_orm(patient) for patient in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("/patients", response={201: PatientOut, **ERRORS}, summary="Register a patient")
@registry_errors
def create_patient(request: HttpRequest, payload: PatientIn) -> Any:
    """Register a patient at one of your clinics (MRN unique per clinic)."""
    patient = services.register_patient(actor=_actor(request), **payload.dict())
    return Status(201, patient)


@router.get("/patients/{patient_id}", response={200: PatientOut, **ERRORS}, summary="One patient")
@registry_errors
def get_patient(request: HttpRequest, patient_id: Id) -> Any:
    """The patient, if at one of your clinics."""
    return selectors.get_patient_for(actor=_actor(request), patient_id=patient_id)


# PATCH /patients/{id} (correct a patient's details) is one of the correction routes every
# record type has: see vertebra.registry.api_corrections.


# ------------------------------------------------------------------------ diagnoses


@router.get(
    "/patients/{patient_id}/diagnoses",
    response={200: list[DiagnosisOut], **ERRORS},
    summary="A patient's diagnoses",
)
@registry_errors
def list_diagnoses(request: HttpRequest, patient_id: Id) -> Any:
    return selectors.patient_items(actor=_actor(request), patient_id=patient_id, kind="diagnoses")


@router.post(
    "/patients/{patient_id}/diagnoses",
    response={201: DiagnosisOut, **ERRORS},
    summary="Record a diagnosis",
)
@registry_errors
def create_diagnosis(request: HttpRequest, patient_id: Id, payload: DiagnosisIn) -> Any:
    diagnosis = services.record_diagnosis(
        actor=_actor(request), patient_id=patient_id, **payload.dict()
    )
    return Status(201, diagnosis)


# ------------------------------------------------------------------------ episodes, pathway


@router.get(
    "/patients/{patient_id}/episodes",
    response={200: list[EpisodeOut], **ERRORS},
    summary="A patient's treatment episodes",
)
@registry_errors
def list_episodes(request: HttpRequest, patient_id: Id) -> Any:
    episodes = selectors.patient_items(
        actor=_actor(request), patient_id=patient_id, kind="episodes"
    )
    return [_episode_out(episode) for episode in episodes]


@router.post(
    "/patients/{patient_id}/episodes",
    response={201: EpisodeOut, **ERRORS},
    summary="Start a treatment episode",
)
@registry_errors
def create_episode(request: HttpRequest, patient_id: Id, payload: EpisodeIn) -> Any:
    data = payload.dict()
    cost = {name: data.pop(name) for name in EPISODE_COST_FIELDS}
    for name in ("price", "patient_paid"):  # exact decimals, as stored (never binary floats)
        cost[name] = None if cost[name] is None else Decimal(str(cost[name]))
    episode = start_episode_with_follow_up(
        actor=_actor(request), patient_id=patient_id, cost=cost, **data
    )
    return Status(201, _episode_out(episode))


@router.post(
    "/episodes/{episode_id}/harvest",
    response={201: HarvestOut, **ERRORS},
    summary="Record the harvest (step 1)",
)
@registry_errors
def create_harvest(request: HttpRequest, episode_id: Id, payload: HarvestIn) -> Any:
    harvest = services.record_harvest(
        actor=_actor(request), episode_id=episode_id, **payload.dict()
    )
    return Status(201, harvest)


@router.post(
    "/harvests/{harvest_id}/processing",
    response={201: ProcessingOut, **ERRORS},
    summary="Record the processing of a harvest (step 2)",
)
@registry_errors
def create_processing(request: HttpRequest, harvest_id: Id, payload: ProcessingIn) -> Any:
    processing = services.record_processing_for_harvest(
        actor=_actor(request), harvest_id=harvest_id, **payload.dict()
    )
    return Status(201, processing)


@router.post(
    "/episodes/{episode_id}/injections",
    response={201: InjectionOut, **ERRORS},
    summary="Record an injection (step 3; chain of custody enforced)",
)
@registry_errors
def create_injection(request: HttpRequest, episode_id: Id, payload: InjectionIn) -> Any:
    injection = services.record_injection(
        actor=_actor(request), episode_id=episode_id, **payload.dict()
    )
    return Status(201, injection)


@router.post(
    "/episodes/{episode_id}/sterility",
    response={200: ProcessingOut, **ERRORS},
    summary="Record the sterility result of the episode's product",
)
@registry_errors
def record_sterility(request: HttpRequest, episode_id: Id, payload: SterilityIn) -> Any:
    """Pending → pass or fail (no reason needed); changing a recorded result needs ``reason``.
    An injection of the product is refused until the result is "pass"."""
    return services.record_sterility_result(
        actor=_actor(request), episode_id=episode_id, **payload.dict()
    )


# ------------------------------------------------------------------------ consents


@router.get(
    "/patients/{patient_id}/consents",
    response={200: list[ConsentOut], **ERRORS},
    summary="A patient's consents (withdrawn ones included)",
)
@registry_errors
def list_consents(request: HttpRequest, patient_id: Id) -> Any:
    return selectors.patient_items(actor=_actor(request), patient_id=patient_id, kind="consents")


@router.post(
    "/patients/{patient_id}/consents",
    response={201: ConsentOut, **ERRORS},
    summary="Record a signed consent (treatment or registry participation)",
)
@registry_errors
def create_consent(request: HttpRequest, patient_id: Id, payload: ConsentIn) -> Any:
    consent = services.record_consent(
        actor=_actor(request), patient_id=patient_id, **payload.dict()
    )
    return Status(201, consent)


@router.post(
    "/consents/{consent_id}/withdraw",
    response={200: ConsentOut, **ERRORS},
    summary="Record the withdrawal of a consent (kept, never deleted)",
)
@registry_errors
def withdraw_consent(request: HttpRequest, consent_id: Id, payload: ConsentWithdrawIn) -> Any:
    """A withdrawn treatment consent blocks further harvest, processing and injection; a
    withdrawn registry consent stops follow-up invitations at once."""
    return withdraw_consent_and_stop_invitations(
        actor=_actor(request), consent_id=consent_id, **payload.dict()
    )


# ------------------------------------------------------------------------ adverse events


@router.get(
    "/patients/{patient_id}/adverse-events",
    response={200: list[AdverseEventOut], **ERRORS},
    summary="A patient's adverse events",
)
@registry_errors
def list_adverse_events(request: HttpRequest, patient_id: Id) -> Any:
    return selectors.patient_items(
        actor=_actor(request), patient_id=patient_id, kind="adverse_events"
    )


@router.post(
    "/patients/{patient_id}/adverse-events",
    response={201: AdverseEventOut, **ERRORS},
    summary="Report an adverse event",
)
@registry_errors
def create_adverse_event(request: HttpRequest, patient_id: Id, payload: AdverseEventIn) -> Any:
    event = services.record_adverse_event(
        actor=_actor(request), patient_id=patient_id, **payload.dict()
    )
    return Status(201, event)


# ------------------------------------------------------------------------ screening, adjudication
# The two steps of a clinic day the pages offered without an API (issue 12: "every step the
# pages offer is in the API"). Same services, permissions and audit rows as the pages.


class ScreeningIn(Schema):
    """The screening engine's facts (``GET /api/v1/screening/facts-schema``); unknowns left out."""

    facts: dict[str, Any]


class ScreeningOut(Schema):
    id: int
    patient_id: int
    verdict: str
    fired_rules: list[Any]
    ruleset_id: str
    ruleset_version: str
    evaluated_at: dt.datetime


class AdjudicationIn(Schema):
    """A clinician's adjudication; changing an earlier adjudication needs ``reason``."""

    ctcae_grade: int = Field(ge=1, le=5)
    serious: bool
    relatedness: _choices(Relatedness)  # type: ignore[valid-type]
    expected: bool | None
    outcome: _choices(AdverseEventOutcome) = AdverseEventOutcome.UNKNOWN.value  # type: ignore[valid-type]
    resolved_on: dt.date | None = None
    reason: Text(500) = ""  # type: ignore[valid-type]


class QueueItemOut(Schema):
    """One adverse event waiting for adjudication, with who reported it and since when."""

    event: AdverseEventOut
    reported_by: str
    reported_on: dt.date
    days_waiting: int
    red_flag: bool


class AdjudicationQueueOut(Schema):
    """Serious first, then patient-reported red flags, then the rest (oldest onset first)."""

    items: list[QueueItemOut]
    total: int
    serious: int
    red_flags: int


@router.post(
    "/patients/{patient_id}/screenings",
    response={201: ScreeningOut, **ERRORS},
    summary="Evaluate the screening rules for a patient and store the evaluation",
)
@registry_errors
def create_screening(request: HttpRequest, patient_id: Id, payload: ScreeningIn) -> Any:
    """Inputs, verdict, fired rules and the rule-set version are stored, attributed to you."""
    evaluation = services.record_screening(
        actor=_actor(request), patient_id=patient_id, facts=payload.facts
    )
    return Status(201, evaluation)


@router.get(
    "/adverse-events",
    response={200: AdjudicationQueueOut, **ERRORS},
    summary="Adverse events awaiting adjudication at your clinics (serious first)",
)
@registry_errors
def adjudication_queue(request: HttpRequest) -> Any:
    queue = selectors.adjudication_queue(actor=_actor(request), today=timezone.localdate())
    return AdjudicationQueueOut(
        items=[
            QueueItemOut(
                event=AdverseEventOut.from_orm(item.event),
                reported_by=item.reported_by,
                reported_on=item.reported_on,
                days_waiting=item.days_waiting,
                red_flag=item.red_flag,
            )
            for item in queue.items
        ],
        total=queue.total,
        serious=queue.serious,
        red_flags=queue.red_flags,
    )


@router.post(
    "/adverse-events/{adverse_event_id}/adjudicate",
    response={200: AdverseEventOut, **ERRORS},
    summary="Adjudicate an adverse event (CTCAE grade, seriousness, relatedness, expectedness)",
)
@registry_errors
def adjudicate_adverse_event(
    request: HttpRequest, adverse_event_id: Id, payload: AdjudicationIn
) -> Any:
    return services.adjudicate_adverse_event(
        actor=_actor(request), adverse_event_id=adverse_event_id, **payload.dict()
    )


# ------------------------------------------------------------------------ corrections
# PATCH /<records>/{id}, POST /<records>/{id}/void, GET /<records>/{id}/history for every
# record type (ADR 0009); added last, as they build on the schemas above.
from vertebra.registry import api_corrections  # noqa: E402

api_corrections.add_routes()
