"""Reads behind the public clinic directory and the clinic admin's directory page.

Contracts
---------
* Only published clinics are shown (:class:`~vertebra.directory.models.ClinicListing` with
  ``published``); every other clinic of the registry is **counted**, never named
  (:attr:`Directory.unpublished`). A clinic that is missing or unpublished raises NotFound,
  so the two cannot be told apart.
* Outcome figures come from the analysis snapshot (:mod:`vertebra.directory.figures`: the
  registry's de-identified tables, the minimum cell of :mod:`vertebra.core.disclosure`, built
  by the worker with each refresh): a visitor's page never reads the registry. Each entry
  carries the snapshot's status ("as of") and whether its figures are being prepared.
  Consent and answers are read live: unpublishing takes effect at once.
* :func:`registry_is_synthetic` is True when the synthetic-cohort loader wrote into this
  registry (its system account exists): every page with registry figures then says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from vertebra.cohort.sink import LOADER_USERNAME
from vertebra.core.directory import ClinicFigures
from vertebra.core.knowledge import Question, Source
from vertebra.core.yamltext import load_yaml
from vertebra.directory.figures import published_figures
from vertebra.directory.models import ClinicAnswer, ClinicListing
from vertebra.outcomes.snapshot import Status
from vertebra.registry.errors import NotFound
from vertebra.registry.models import Clinic
from vertebra.web.knowledge_selectors import knowledge_base, questions_to_ask

__all__ = [
    "MAX_COMPARED",
    "ClinicEntry",
    "Directory",
    "StatusText",
    "clinic_entry",
    "compared",
    "directory",
    "registry_is_synthetic",
    "texts",
]

#: Clinics one comparison shows (a phone reads four stacked cards comfortably).
MAX_COMPARED = 4


@dataclass(frozen=True)
class StatusText:
    """A regulatory status in words: title, what it means, its sources."""

    code: str
    title: str
    meaning: str
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class Texts:
    """The words of ``data/directory.yaml``."""

    version: str
    statuses: Mapping[str, StatusText]
    fields: Mapping[str, str]
    field_sources: Mapping[str, tuple[Source, ...]]


@cache
def texts() -> Texts:
    """The directory's words (``data/directory.yaml``), every source resolved (KeyError on an
    unknown source id: the data file and the bibliography must agree)."""
    raw: Any = load_yaml(
        files("vertebra").joinpath("data", "directory.yaml").read_text(encoding="utf-8")
    )
    bib = knowledge_base().sources

    def resolve(ids: Iterable[str]) -> tuple[Source, ...]:
        return tuple(bib[i] for i in ids)

    statuses = {
        code: StatusText(
            code,
            str(item["title"]),
            " ".join(str(item["meaning"]).split()),
            resolve(item.get("sources", ())),
        )
        for code, item in raw["regulatory_status"].items()
    }
    return Texts(
        version=str(raw["version"]),
        statuses=statuses,
        fields={k: " ".join(str(v).split()) for k, v in raw["fields"].items()},
        field_sources={k: resolve(v) for k, v in (raw.get("field_sources") or {}).items()},
    )


def registry_is_synthetic() -> bool:
    """True when the synthetic-cohort loader has written into this registry (the demo)."""
    return get_user_model()._default_manager.filter(username=LOADER_USERNAME).exists()


# ------------------------------------------------------------------------------ clinics


@dataclass(frozen=True)
class ClinicEntry:
    """One published clinic as the directory shows it."""

    id: int
    name: str
    status: StatusText
    nct_id: str
    irb: str
    ind_number: str
    lab_accreditation: str
    published_on: Any  # datetime.date
    figures: ClinicFigures | None
    answers: tuple[tuple[Question, str], ...]
    #: the analysis snapshot the figures come from (None: no snapshot yet)
    figures_status: Status | None = None
    #: the figures are being prepared (no snapshot yet, or a newly published clinic's)
    figures_pending: bool = False

    @property
    def cell_group(self) -> Any:
        """The figures of cell therapy (all sources) at this clinic, or None."""
        if self.figures is None:
            return None
        return next((g for g in self.figures.groups if g.code == "cell_therapy"), None)

    @property
    def unanswered(self) -> int:
        """How many of the questions the clinic has not answered."""
        return len(questions_to_ask()) - len(self.answers)


@dataclass(frozen=True)
class Directory:
    """The published clinics and how many clinics of the registry have not published."""

    clinics: tuple[ClinicEntry, ...]
    unpublished: int
    synthetic: bool


def _answers(clinic_ids: Sequence[int]) -> dict[int, tuple[tuple[Question, str], ...]]:
    """clinic id -> (question, answer) in the order of the questions, answered ones only."""
    order = questions_to_ask()
    rows: dict[int, dict[str, str]] = {}
    for cid, qid, text in ClinicAnswer.objects.filter(clinic_id__in=clinic_ids).values_list(
        "clinic_id", "question_id", "text"
    ):
        rows.setdefault(cid, {})[qid] = text
    return {
        cid: tuple((q, given[q.id]) for q in order if given.get(q.id, "").strip())
        for cid, given in rows.items()
    }


def _entries(listings: Sequence[ClinicListing]) -> tuple[ClinicEntry, ...]:
    figures, status = published_figures(timezone.localdate()) if listings else ({}, None)
    answers = _answers([x.clinic_id for x in listings])
    statuses = texts().statuses
    out = []
    for listing in listings:
        c = listing.clinic
        out.append(
            ClinicEntry(
                id=c.pk,
                name=c.name,
                status=statuses.get(c.regulatory_status, statuses["none"]),
                nct_id=c.nct_id,
                irb=c.irb,
                ind_number=c.ind_number,
                lab_accreditation=c.lab_accreditation,
                published_on=listing.published_on,
                figures=None if figures is None else figures.get(str(c.pk)),
                answers=answers.get(c.pk, ()),
                figures_status=status,
                # missing from figures built before it was published: its own are on the way
                figures_pending=figures is None or str(c.pk) not in figures,
            )
        )
    return tuple(out)


def _published() -> Any:
    return ClinicListing.objects.filter(published=True).select_related("clinic")


def directory() -> Directory:
    """Every published clinic (by name) and the count of the others."""
    listings = list(_published().order_by("clinic__name"))
    total = Clinic.objects.count()
    return Directory(
        clinics=_entries(listings),
        unpublished=total - len(listings),
        synthetic=registry_is_synthetic(),
    )


def clinic_entry(clinic_id: int) -> ClinicEntry:
    """The published clinic ``clinic_id``; NotFound when it is missing or not published."""
    listing = _published().filter(clinic_id=clinic_id).first()
    if listing is None:
        raise NotFound("clinic", clinic_id)
    return _entries([listing])[0]


def compared(clinic_ids: Iterable[Any]) -> tuple[ClinicEntry, ...]:
    """The published clinics among ``clinic_ids`` (text or numbers; others are ignored), in
    the order asked, at most :data:`MAX_COMPARED`."""
    wanted: list[int] = []
    for raw in clinic_ids:
        text = str(raw).strip()
        if text.isdigit() and int(text) not in wanted:
            wanted.append(int(text))
    by_id = {x.clinic_id: x for x in _published().filter(clinic_id__in=wanted)}
    return _entries([by_id[i] for i in wanted if i in by_id][:MAX_COMPARED])


def listing_of(clinic_id: int) -> ClinicListing | None:
    """The clinic's listing row (None until its admin first decided). For the staff page."""
    return ClinicListing.objects.filter(clinic_id=clinic_id).first()


def answers_of(clinic_id: int) -> dict[str, str]:
    """question id -> the clinic's answer (every stored one). For the staff page's form."""
    return dict(ClinicAnswer.objects.filter(clinic_id=clinic_id).values_list("question_id", "text"))
