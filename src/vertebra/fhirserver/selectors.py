"""Reads of the FHIR server: search and read, permission-checked, clinic-scoped and audited.

Contracts
---------
* Every read of patient data by a person calls :func:`verify_actor` for ``patient.read`` (the
  action the registry's own patient pages and API need) and sees only rows of patients at the
  clinics the actor verifiably belongs to. A SMART system client (:class:`SystemAccess`,
  from :func:`vertebra.fhirbulk.auth.authenticate`) reads only the types its token's scopes
  name, at its own clinic (a research client: nothing identified); a row elsewhere is "not found", with the same answer as a
  row that does not exist (existence is never revealed). Allogeneic lots (shared reference
  data, not patient data) are visible to every reader.
* Each call is one audited transaction (:func:`audited_transaction`): a search leaves one
  ``search`` row (object type ``fhir_search``: the type, the query, the ids returned and
  their patients), a read one ``read`` row on the registry object read (its clinic and
  patient), a refusal one ``denied`` row.
* Filtering and paging are done by the database: only the rows of the page (and one more, to
  know whether a ``next`` page exists) are read (``values_list`` into the export's records)
  and mapped by the same core builders the export uses, so a served resource equals the
  exported one.
* ``Bundle.total`` follows R4's ``_total`` (search.html#total; ADR 0023 §9): ``accurate`` counts
  every match (one COUNT per source table: seconds over millions of rows); ``none`` gives no
  total; ``estimate`` is exact up to :data:`EXACT_UP_TO` matches, beyond that the PostgreSQL
  planner's row estimate (SQLite: exact). Absent, the total is given when there are at most
  :data:`EXACT_UP_TO` matches (counted with a bounded COUNT) and left out otherwise, so a total
  is never approximate unless the client asked for an estimate. ``_count=0`` (asking for the
  count alone) counts accurately.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, models
from django.db.models import Q, QuerySet

from vertebra.core.fhir import FhirCodes, fhir_codes, pathway
from vertebra.core.fhir._base import Resource
from vertebra.core.fhir.questionnaires import questionnaires
from vertebra.core.fhir.rest import (
    DateRange,
    SearchError,
    date_range,
    parse_id,
    parse_reference,
    parse_token,
)
from vertebra.core.fhir.smart import Grant
from vertebra.core.instruments.registry import builtin_definitions
from vertebra.fhirserver.resources import LOTS, BuildContext, Source, TypeSpec
from vertebra.fhirserver.search import EXACT_UP_TO, Search
from vertebra.interop.selectors import TABLES, exported
from vertebra.registry.audit import audited_transaction, record_audit
from vertebra.registry.errors import NotFound, PermissionDeniedError
from vertebra.registry.models import AllogeneicLot
from vertebra.registry.permissions import Action, Actor, verify_actor

__all__ = [
    "Page",
    "SystemAccess",
    "read_questionnaire",
    "read_resource",
    "search_questionnaires",
    "search_resources",
]


@dataclass(frozen=True)
class Page:
    """One page of a search: the resources, how many match in all (None: not counted, see
    ``_total``) and whether more follow this page."""

    resources: list[Resource]
    total: int | None
    more: bool = False


@dataclass(frozen=True)
class SystemAccess:
    """What a SMART Backend Services access token grants, as :func:`vertebra.fhirbulk.auth.
    authenticate` found it: the clinics whose patients it may read (empty: none, ``refusal``
    says why) and the resource types of its scopes."""

    clinic_ids: frozenset[int]
    grant: Grant
    refusal: str = ""


def _clinics(actor: Actor, spec: TypeSpec, system: SystemAccess | None) -> frozenset[int]:
    """The clinics whose ``spec`` resources the caller may read, or PermissionDeniedError."""
    if system is None:
        return verify_actor(actor, Action.PATIENT_READ)
    if not system.grant.allows(spec.name):
        raise PermissionDeniedError(
            f"The access token's scope ({system.grant.scope}) does not include {spec.name}: "
            f"request system/{spec.name}.rs (or .read).",
            action="fhir.read",
        )
    if not system.clinic_ids:
        raise PermissionDeniedError(system.refusal or "No clinic to read.", action="fhir.read")
    return system.clinic_ids


# ------------------------------------------------------------------------------ filtering


def _ceil_date(moment: dt.datetime) -> dt.date:
    """The first date whose midnight (UTC) is not before ``moment``."""
    day = moment.date()
    return day if moment.time() == dt.time(0) else day + dt.timedelta(days=1)


def _date_q(field: models.Field[Any, Any], wanted: DateRange) -> Q:
    """Rows whose date (a date is its midnight, UTC) is in the relation ``wanted`` asks for."""
    lo: dt.date | dt.datetime = wanted.start
    hi: dt.date | dt.datetime = wanted.end
    if not isinstance(field, models.DateTimeField):
        lo, hi = _ceil_date(wanted.start), _ceil_date(wanted.end)
    name = field.name
    inside = Q(**{f"{name}__gte": lo, f"{name}__lt": hi})
    return {
        "eq": inside,
        "ne": ~inside & Q(**{f"{name}__isnull": False}),
        "lt": Q(**{f"{name}__lt": lo}),
        "le": Q(**{f"{name}__lt": hi}),
        "gt": Q(**{f"{name}__gte": hi}),
        "ge": Q(**{f"{name}__gte": lo}),
    }[wanted.prefix]


def _any(parts: Sequence[Q | None]) -> Q | None:
    """The OR of the parts that can match, or None when none can."""
    found = [p for p in parts if p is not None]
    if not found:
        return None
    combined = found[0]
    for part in found[1:]:
        combined |= part
    return combined


def _questionnaire_q(raw: str, codes: FhirCodes) -> Q | None:
    """``<base>/Questionnaire/<instrument>[|version]`` -> the responses to that form."""
    url, _, version = raw.partition("|")
    prefix = f"{codes.base}/Questionnaire/"
    if not url.startswith(prefix):
        return None
    found = Q(instrument_id=url.removeprefix(prefix))
    return found & Q(instrument_version=version) if version else found


def _filter(spec: TypeSpec, source: Source, name: str, raw: str, codes: FhirCodes) -> Q | None:
    """One occurrence of parameter ``name`` as a filter on ``source`` (None: cannot match)."""
    param = spec.param(name)
    assert param is not None  # parse_search admitted only declared parameters
    values = raw.split(",")
    if name == "_id":
        ids = [found for v in values if (found := parse_id(spec.name, v)) is not None]
        pks = [pk for kind, pk in ids if kind == source.kind]
        return Q(pk__in=pks) if pks else None
    if param.type == "reference" and name in ("patient", "subject"):
        pks = [pk for v in values if (pk := parse_reference(v)) is not None]
        if not pks or not source.patient:
            return None
        return Q(**{f"{source.patient}_id__in": pks})
    if name == "code":
        if source.code is None:
            return None
        return _any([source.code(*parse_token(v), codes) for v in values])
    if name == "identifier":
        if source.identifier is None:
            return None
        return _any([source.identifier(*parse_token(v), codes) for v in values])
    if name == "questionnaire":
        return _any([_questionnaire_q(v, codes) for v in values])
    if name == "_lastUpdated":  # every table behind a served type keeps updated_at
        field = source.table.model._meta.get_field("updated_at")
        return _date_q(field, date_range(raw))  # type: ignore[arg-type]
    if param.type == "date":
        if source.date is None:
            return None
        field = source.table.model._meta.get_field(source.date)
        return _date_q(field, date_range(raw))  # type: ignore[arg-type]
    raise SearchError(f"{name} is declared but not implemented")  # pragma: no cover


def _scoped(source: Source, clinics: frozenset[int]) -> QuerySet[Any]:
    """The rows of ``source`` the export writes, at the actor's clinics."""
    rows = exported(source.table).filter(source.where)
    if source.clinic is not None:
        return rows.filter(**{f"{source.clinic}__in": clinics})
    if source.patient == "":
        return rows.filter(clinic_id__in=clinics)
    if source.patient is not None:
        return rows.filter(**{f"{source.patient}__clinic_id__in": clinics})
    return rows  # allogeneic lots: shared reference data


def _rows(
    spec: TypeSpec, source: Source, clinics: frozenset[int], search: Search, codes: FhirCodes
) -> QuerySet[Any] | None:
    """The rows of ``source`` matching every filter of ``search`` (None: none can)."""
    rows = _scoped(source, clinics)
    for name, occurrences in search.filters:
        for raw in occurrences:  # repeated parameter = AND
            where = _filter(spec, source, name, raw, codes)
            if where is None:
                return None
            rows = rows.filter(where)
    return rows


# ------------------------------------------------------------------------------- building


def _context(source: Source, records: Sequence[Any], codes: FhirCodes) -> BuildContext:
    """What ``source``'s builder needs for these records (lots, an adverse event's links)."""
    context = BuildContext(codes=codes)
    if source.kind == "harvest" and any(r.lot_id is not None for r in records):
        lots = LOTS.records(AllogeneicLot.objects.filter(pk__in={r.lot_id for r in records}))
        context.lots = {lot.id: lot for lot in lots}
    if source.kind == "adverse_event":
        episodes = {r.episode_id for r in records if r.episode_id is not None}
        harvests = TABLES["harvests"].records(
            exported(TABLES["harvests"]).filter(episode_id__in=episodes)
        )
        injections = TABLES["injections"].records(
            exported(TABLES["injections"]).filter(episode_id__in=episodes)
        )
        context.links = pathway.episode_links(harvests, injections)
    return context


def _build(source: Source, rows: QuerySet[Any], codes: FhirCodes) -> list[Resource]:
    """The resources of ``rows`` (already ordered and sliced)."""
    records = source.table.records(rows)
    return source.build(records, _context(source, records, codes))


def _patient_ids(resources: Sequence[Resource]) -> list[int]:
    """The registry patients the resources are about (for the audit row)."""
    found: set[int] = set()
    for item in resources:
        if item["resourceType"] == "Patient":
            found.add(int(item["id"].rsplit("-", 1)[1]))
            continue
        for key in ("subject", "patient"):
            ref = item.get(key)
            if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("Patient/"):
                found.add(int(ref["reference"].rsplit("-", 1)[1]))
    return sorted(found)


# ---------------------------------------------------------------------------------- reads


def _bounded_counts(matching: Sequence[tuple[Source, QuerySet[Any]]]) -> list[int] | None:
    """Each source's exact count when all together match at most :data:`EXACT_UP_TO` rows,
    else None; never counts more than ``EXACT_UP_TO + 1`` rows in all."""
    counts, budget = [], EXACT_UP_TO + 1
    for _, rows in matching:
        n = rows.order_by()[:budget].count()
        budget -= n
        if budget <= 0:
            return None
        counts.append(n)
    return counts


def _estimate(rows: QuerySet[Any]) -> int:
    """The PostgreSQL planner's estimate of how many rows ``rows`` has (no row is read)."""
    plan = json.loads(rows.order_by().values("pk").explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


def _counts(search: Search, matching: Sequence[tuple[Source, QuerySet[Any]]]) -> tuple[
    list[int] | None, int | None
]:  # fmt: skip
    """(each source's exact count if known, the Bundle's total if given) for ``search._total``
    (see the module docstring)."""
    if search.total == "accurate" or (search.count == 0 and search.total != "none"):
        exact = [rows.count() for _, rows in matching]
        return exact, sum(exact)
    if search.total == "none":
        return None, None
    bounded = _bounded_counts(matching)
    if bounded is not None:
        return bounded, sum(bounded)
    if search.total == "estimate":
        if connection.vendor != "postgresql":
            exact = [rows.count() for _, rows in matching]
            return exact, sum(exact)
        return None, max(EXACT_UP_TO + 1, sum(_estimate(rows) for _, rows in matching))
    return None, None


def _page(
    matching: Sequence[tuple[Source, QuerySet[Any]]],
    counts: list[int] | None,
    search: Search,
    codes: FhirCodes,
) -> tuple[list[Resource], bool]:
    """The resources of the page ``search`` asks for (sources in order, each by id), and
    whether any match follows the page. Without ``counts``, a source the offset passes is
    counted only up to the offset (bounded), and one row beyond the page is read."""
    resources: list[Resource] = []
    skip, room = search.offset, search.count
    for index, (source, rows) in enumerate(matching):
        n = None if counts is None else counts[index]
        if room <= 0:  # the page is full: does any match follow it?
            if n if n is not None else rows.exists():
                return resources, True
            continue
        if n is not None and skip >= n:
            skip -= n
            continue
        built = _build(source, rows.order_by("pk")[skip : skip + room + 1], codes)
        if not built and skip:
            skip -= rows.order_by()[:skip].count()  # the whole source lies before the page
            continue
        if len(built) > room:
            resources.extend(built[:room])
            return resources, True
        resources.extend(built)
        room -= len(built)
        skip = 0
    return resources, False


@audited_transaction
def search_resources(
    *, actor: Actor, spec: TypeSpec, search: Search, system: SystemAccess | None = None
) -> Page:
    """One page of the ``spec`` resources matching ``search`` (see the module docstring);
    ``system`` for a system client (``actor`` is then its audit actor)."""
    clinics = _clinics(actor, spec, system)
    codes = fhir_codes()
    matching = [
        (source, rows)
        for source in spec.sources
        if (rows := _rows(spec, source, clinics, search, codes)) is not None
    ]
    counts, total = _counts(search, matching)
    resources, more = _page(matching, counts, search, codes)
    record_audit(
        actor=actor,
        action="search",
        object_type="fhir_search",
        new_values={
            "type": spec.name,
            "query": [[name, list(values)] for name, values in search.filters],
            "count": search.count,
            "offset": search.offset,
            "ids": [item["id"] for item in resources],
            "patient_ids": _patient_ids(resources),
        },
    )
    return Page(resources=resources, total=total, more=more)


@audited_transaction
def read_resource(
    *, actor: Actor, spec: TypeSpec, resource_id: str, system: SystemAccess | None = None
) -> Resource:
    """The ``spec`` resource ``resource_id`` if the actor may read it; else NotFound (also for
    another clinic's) or PermissionDeniedError (role, or a system client's scope)."""
    clinics = _clinics(actor, spec, system)
    codes = fhir_codes()
    found = parse_id(spec.name, resource_id)
    source = next((s for s in spec.sources if found and s.kind == found[0]), None)
    if found is None or source is None:
        raise NotFound(spec.name, resource_id)
    rows = _scoped(source, clinics).filter(pk=found[1])
    built = _build(source, rows, codes)
    if not built:
        raise NotFound(spec.name, resource_id)
    clinic_id: int | None = None
    if source.clinic is not None:
        clinic_id = found[1]
    elif source.patient is not None:
        path = "clinic_id" if source.patient == "" else f"{source.patient}__clinic_id"
        clinic_id = rows.values_list(path, flat=True).first()
    patients = _patient_ids(built)
    record_audit(
        actor=actor,
        action="read",
        object_type=source.table.model._meta.model_name or "",
        object_id=found[1],
        clinic_id=clinic_id,
        patient_id=patients[0] if patients else None,
        new_values={"fhir": f"{spec.name}/{resource_id}"},
    )
    return built[0]


# ---------------------------------------------------------------------- questionnaires


def _questionnaires() -> list[Resource]:
    """Every instrument's Questionnaire (shipped wording only; see core.fhir.questionnaires)."""
    return questionnaires(dict(builtin_definitions()), fhir_codes())


def search_questionnaires(search: Search) -> Page:
    """Questionnaires matching ``_id`` and ``url`` (``url|version`` too). Not patient data:
    no permission, no audit; a dozen resources, filtered in memory."""
    found = _questionnaires()
    for name, occurrences in search.filters:
        for raw in occurrences:
            values = raw.split(",")
            if name == "_id":
                found = [q for q in found if q["id"] in values]
            else:  # url
                found = [
                    q for q in found if q["url"] in values or f"{q['url']}|{q['version']}" in values
                ]
    end = search.offset + search.count
    return Page(resources=found[search.offset : end], total=len(found), more=end < len(found))


def read_questionnaire(resource_id: str) -> Resource:
    """The Questionnaire ``resource_id`` (NotFound when there is none)."""
    for item in _questionnaires():
        if item["id"] == resource_id:
            return item
    raise NotFound("Questionnaire", resource_id)
