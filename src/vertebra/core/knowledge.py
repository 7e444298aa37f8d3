"""Knowledge base loader: patient-facing pages under ``/learn/`` as versioned data.

The content lives in ``vertebra/data/learn/`` as markdown files with YAML front matter, one
shared bibliography (``sources.yaml``) and the structured list of questions to ask a clinic
(``questions_to_ask.yaml``). This module turns that folder into typed, immutable values.

Contracts
---------
* Pure: no Django, no network, no clock. Reads files only (package data through
  :mod:`importlib.resources`, or any folder passed as ``root``).
* Strict: :func:`load_knowledge_base` validates everything before returning and raises
  :class:`KnowledgeBaseError` listing *every* problem as ``"<file>: <problem>"``:

  - every citation marker ``[^source-id]`` (in bodies) and every ``sources``/``source`` field (in
    front matter) resolves to an entry in ``sources.yaml``;
  - every page cites at least one source;
  - front-matter keys are known (unknown keys are rejected, also in nested objects) and typed;
  - ``causes`` pages carry ICD-10-CM codes matching the ICD-10-CM pattern, ``treatments`` pages
    carry the comparison block, other pages carry neither;
  - no patient-facing text contains promising wording (see :data:`PROMISE_PATTERNS`);
  - internal links ``[text](learn:slug)`` point at an existing page.

* Safe rendering: markdown is rendered with markdown-it's ``commonmark`` preset with raw HTML
  **disabled**, so any HTML in the content is escaped. Citation markers become numbered links
  (``<sup class="cite"><a href="#src-ID">[n]</a></sup>``) to a sources list appended to the page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

from vertebra.core.yamltext import load_yaml

__all__ = [
    "CELL_THERAPY_LEVELS",
    "CERTAINTY_LEVELS",
    "ICD10_CM_PATTERN",
    "INVASIVENESS_LEVELS",
    "PROMISE_PATTERNS",
    "SECTIONS",
    "CellTherapyStatus",
    "Certainty",
    "ChecklistItem",
    "ComparisonRow",
    "Icd10Code",
    "Invasiveness",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "Outcome",
    "Page",
    "Question",
    "Source",
    "SourcedText",
    "TreatmentComparison",
    "find_promising_language",
    "load_knowledge_base",
]

# --------------------------------------------------------------------------- vocabularies

#: Page sections, in display order. ``causes`` and ``treatments`` live in sub-folders of the
#: same name; ``overview`` and ``cell-therapy`` pages live at the top of the folder.
SECTIONS: tuple[str, ...] = ("overview", "causes", "treatments", "cell-therapy")
_FOLDER_SECTIONS = frozenset({"causes", "treatments"})
_TOP_SECTIONS = frozenset({"overview", "cell-therapy"})

#: GRADE-style certainty of evidence, highest first.
CERTAINTY_LEVELS: tuple[str, ...] = ("high", "moderate", "low", "very low")
#: How invasive a treatment is, least first.
INVASIVENESS_LEVELS: tuple[str, ...] = ("none", "minimal", "moderate", "major")
#: Whether cell therapy has been studied for a cause.
CELL_THERAPY_LEVELS: tuple[str, ...] = ("studied", "limited", "not studied")
#: Verification status of a source, as in ``reference/clinical.md``: V = read, U = unverified.
SOURCE_STATUSES: tuple[str, ...] = ("V", "U")

#: ICD-10-CM code: letter, digit, digit-or-letter, then optionally a dot and 1-4 more
#: characters (``M51.360``, ``M51.A0``, ``S39.012A``).
ICD10_CM_PATTERN = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")
_SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SOURCE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?$")
_MARKER_RE = re.compile(r"\[\^([^\]\s]*)\]")
_VALID_MARKER_RE = re.compile(r"\[\^([a-z0-9][a-z0-9_.-]*)\]")
_LEARN_LINK_RE = re.compile(r"\]\(learn:([^)\s]*)\)")

#: Wording that promises benefit. Patient-facing text must not match any of these
#: (case-insensitive). Warnings are phrased without them ("be careful if results are described
#: as certain"), which keeps the rule simple and checkable.
PROMISE_PATTERNS: tuple[str, ...] = (
    r"\bcur(?:e|es|ed|ing)\b",
    r"\bguarantee(?:s|d)?\b",
    r"\bwill (?:heal|repair|regenerate|regrow|fix|restore|cure|end|eliminate)\b",
    r"\bproven to (?:regenerate|repair|heal|work|fix|restore|regrow)\b",
    r"\bregrow(?:s|n|ing)?\b",
    r"\bmiracle\b",
    r"\brisk[- ]free\b",
    r"\bno side effects\b",
    r"\bpermanent (?:fix|relief|solution)\b",
    r"\bbreakthrough\b",
    r"\b100 ?% (?:safe|effective|success)",
    r"\breverses? (?:disc )?degeneration\b",
    r"\bpain[- ]free for life\b",
)
_PROMISE_RES = tuple(re.compile(p, re.IGNORECASE) for p in PROMISE_PATTERNS)

_PAGE_REQUIRED = ("slug", "title", "summary", "section", "order", "updated", "version")
_PAGE_OPTIONAL = ("icd10", "cell_therapy", "comparison", "related")


class KnowledgeBaseError(ValueError):
    """Raised when the knowledge folder is invalid.

    ``problems`` holds one ``"<file>: <problem>"`` string per problem found; ``str(error)``
    lists them all, one per line.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("invalid knowledge base:\n" + "\n".join(f"  - {p}" for p in self.problems))


def find_promising_language(text: str) -> list[str]:
    """Return the promising phrases found in ``text`` (empty list when the text is clean)."""
    return [m.group(0) for rx in _PROMISE_RES for m in rx.finditer(text)]


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class Source:
    """One bibliography entry. ``status`` is ``"V"`` (read in the named source) or ``"U"``."""

    id: str
    citation: str
    status: str
    url: str | None = None
    note: str | None = None

    @property
    def verified(self) -> bool:
        """True when Vertebra's editors read the claim in this source."""
        return self.status == "V"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "id": self.id,
            "citation": self.citation,
            "status": self.status,
            "verified": self.verified,
            "url": self.url,
            "note": self.note,
        }


@dataclass(frozen=True)
class SourcedText:
    """A short claim with the ids of the sources that support it (at least one)."""

    text: str
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"text": self.text, "sources": list(self.sources)}


@dataclass(frozen=True)
class Icd10Code:
    """An ICD-10-CM code; ``verified`` is False for codes marked (U) in the reference notes."""

    code: str
    description: str
    verified: bool
    source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "code": self.code,
            "description": self.description,
            "verified": self.verified,
            "source": self.source,
        }


@dataclass(frozen=True)
class CellTherapyStatus:
    """Whether cell therapy has been studied for a cause (``level`` in CELL_THERAPY_LEVELS)."""

    level: str
    text: str
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"level": self.level, "text": self.text, "sources": list(self.sources)}


@dataclass(frozen=True)
class Outcome:
    """A typical outcome: plain-words ``text``, the headline ``number`` and its ``source`` id."""

    text: str
    number: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"text": self.text, "number": self.number, "source": self.source}


@dataclass(frozen=True)
class Certainty:
    """Certainty of evidence (``level`` in CERTAINTY_LEVELS) with the reason in plain words."""

    level: str
    reason: str
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"level": self.level, "reason": self.reason, "sources": list(self.sources)}


@dataclass(frozen=True)
class Invasiveness:
    """How invasive a treatment is (``level`` in INVASIVENESS_LEVELS) and what that means."""

    level: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"level": self.level, "text": self.text}


@dataclass(frozen=True)
class TreatmentComparison:
    """The structured side-by-side fields of one treatment page."""

    label: str
    pros: tuple[SourcedText, ...]
    cons: tuple[SourcedText, ...]
    typical_outcomes: tuple[Outcome, ...]
    certainty: Certainty
    invasiveness: Invasiveness
    time_to_effect: SourcedText
    main_risks: tuple[SourcedText, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "label": self.label,
            "pros": [p.to_dict() for p in self.pros],
            "cons": [c.to_dict() for c in self.cons],
            "typical_outcomes": [o.to_dict() for o in self.typical_outcomes],
            "certainty": self.certainty.to_dict(),
            "invasiveness": self.invasiveness.to_dict(),
            "time_to_effect": self.time_to_effect.to_dict(),
            "main_risks": [r.to_dict() for r in self.main_risks],
        }


@dataclass(frozen=True)
class ComparisonRow:
    """One row of :meth:`KnowledgeBase.comparison_table`: a treatment page's comparison."""

    slug: str
    path: str
    title: str
    comparison: TreatmentComparison

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (comparison fields flattened beside slug/path/title)."""
        return {"slug": self.slug, "path": self.path, "title": self.title} | (
            self.comparison.to_dict()
        )


@dataclass(frozen=True)
class Page:
    """A validated knowledge-base page.

    ``path`` is the page's location inside the knowledge folder without ``.md``
    (``"causes/sciatica"``; ``""`` for the index page). ``url`` is ``url_prefix + path + "/"``.
    ``citations`` lists every cited source id in first-use order (body first, then front
    matter); citation numbers in ``html`` follow that order (1-based).
    """

    slug: str
    path: str
    url: str
    section: str
    title: str
    summary: str
    order: int
    updated: dt.date
    version: str
    body: str
    html: str
    citations: tuple[str, ...]
    source_file: str
    icd10: tuple[Icd10Code, ...] = ()
    cell_therapy: CellTherapyStatus | None = None
    comparison: TreatmentComparison | None = None
    related: tuple[str, ...] = ()

    def citation_number(self, source_id: str) -> int:
        """1-based number of ``source_id`` on this page; KeyError when the page doesn't cite it."""
        try:
            return self.citations.index(source_id) + 1
        except ValueError:
            raise KeyError(source_id) from None

    def to_dict(self, *, include_body: bool = True) -> dict[str, Any]:
        """JSON-ready representation; ``include_body=False`` drops markdown and HTML."""
        data: dict[str, Any] = {
            "slug": self.slug,
            "path": self.path,
            "url": self.url,
            "section": self.section,
            "title": self.title,
            "summary": self.summary,
            "order": self.order,
            "updated": self.updated.isoformat(),
            "version": self.version,
            "citations": list(self.citations),
            "icd10": [c.to_dict() for c in self.icd10],
            "cell_therapy": self.cell_therapy.to_dict() if self.cell_therapy else None,
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "related": list(self.related),
        }
        if include_body:
            data["body"] = self.body
            data["html"] = self.html
        return data


@dataclass(frozen=True)
class Question:
    """A question to ask a clinic, with why it matters and its sources."""

    id: str
    group: str
    text: str
    why: str
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "id": self.id,
            "group": self.group,
            "text": self.text,
            "why": self.why,
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class ChecklistItem:
    """A sign of a well-regulated clinic (Vertebra's synthesis; see its sources)."""

    id: str
    text: str
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"id": self.id, "text": self.text, "sources": list(self.sources)}


@dataclass(frozen=True)
class KnowledgeBase:
    """The whole validated knowledge base.

    ``pages`` are ordered by section (see :data:`SECTIONS`), then ``order``, then slug.
    ``digest`` is a short SHA-256 over every file read, so a change to any content changes it.
    """

    pages: tuple[Page, ...]
    sources: Mapping[str, Source]
    questions: tuple[Question, ...]
    checklist: tuple[ChecklistItem, ...]
    questions_version: str
    digest: str
    _index: Mapping[str, Page] = field(repr=False, compare=False, default_factory=dict)

    def get_page(self, slug: str) -> Page:
        """Page by slug (``"sciatica"``) or path (``"causes/sciatica"``, ``""`` for the index).

        Raises KeyError when there is no such page.
        """
        try:
            return self._index[slug]
        except KeyError:
            raise KeyError(f"no knowledge-base page {slug!r}") from None

    def pages_in(self, section: str) -> tuple[Page, ...]:
        """Pages of one section, in display order."""
        return tuple(p for p in self.pages if p.section == section)

    def comparison_table(self) -> tuple[ComparisonRow, ...]:
        """The structured treatment comparison: one row per ``treatments`` page, in order."""
        return tuple(
            ComparisonRow(p.slug, p.path, p.title, p.comparison)
            for p in self.pages_in("treatments")
            if p.comparison is not None
        )

    def questions_to_ask(self) -> tuple[Question, ...]:
        """The questions to ask a clinic, in file order."""
        return self.questions

    def clinic_checklist(self) -> tuple[ChecklistItem, ...]:
        """Signs of a well-regulated clinic (Vertebra's synthesis), in file order."""
        return self.checklist

    def cited_sources(self, page: Page) -> tuple[Source, ...]:
        """The sources a page cites, in citation-number order."""
        return tuple(self.sources[s] for s in page.citations)

    def to_dict(self, *, include_body: bool = False) -> dict[str, Any]:
        """JSON-ready representation of the whole knowledge base."""
        return {
            "digest": self.digest,
            "pages": [p.to_dict(include_body=include_body) for p in self.pages],
            "sources": [s.to_dict() for s in self.sources.values()],
            "questions_version": self.questions_version,
            "questions": [q.to_dict() for q in self.questions],
            "checklist": [c.to_dict() for c in self.checklist],
        }


# --------------------------------------------------------------------------- markdown


def _citation_rule(state: StateInline, silent: bool) -> bool:
    """Inline rule: ``[^id]`` becomes a ``citation`` token (id in ``meta``)."""
    if state.src[state.pos] != "[":
        return False
    match = _VALID_MARKER_RE.match(state.src, state.pos)
    if match is None:
        return False
    if not silent:
        token = state.push("citation", "", 0)
        token.meta = {"id": match.group(1)}
    state.pos = match.end()
    return True


def _render_citation(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    source_id = str(tokens[idx].meta["id"])
    number = env["cite_numbers"][source_id]
    anchor = html.escape(source_id, quote=True)
    return f'<sup class="cite"><a href="#src-{anchor}">[{number}]</a></sup>'


def _make_markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.inline.ruler.before("link", "citation", _citation_rule)
    md.add_render_rule("citation", _render_citation)
    return md


def _walk(tokens: Iterable[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        if token.children:
            yield from _walk(token.children)


def _sources_html(cited: Sequence[Source]) -> str:
    items = []
    for src in cited:
        parts = [html.escape(src.citation)]
        if src.url and src.url.startswith(("https://", "http://")):
            url = html.escape(src.url, quote=True)
            parts.append(f'<a href="{url}" rel="noopener noreferrer">{html.escape(src.url)}</a>')
        badge = (
            "checked against the source"
            if src.verified
            else "not yet verified by Vertebra: treat with caution"
        )
        parts.append(f'<span class="source-status source-{src.status}">({badge})</span>')
        items.append(f'<li id="src-{html.escape(src.id, quote=True)}">{" ".join(parts)}</li>')
    return (
        '<section class="sources" id="sources"><h2>Sources</h2><ol>\n'
        + "\n".join(items)
        + "\n</ol></section>\n"
    )


# --------------------------------------------------------------------------- parsing helpers


class _Problems:
    """Collects problems, each prefixed with the file it belongs to."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, problem: str) -> None:
        self.items.append(f"{where}: {problem}")


def _split_front_matter(text: str) -> tuple[str, str] | None:
    """Return (yaml, body) for text starting with a ``---`` fenced YAML block, else None."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    return None


class _Reader:
    """Typed access to one YAML mapping, reporting problems with a location prefix."""

    def __init__(self, data: Mapping[str, Any], where: str, ctx: str, problems: _Problems) -> None:
        self.data = data
        self.where = where
        self.ctx = ctx
        self.problems = problems
        self.ok = True

    def _fail(self, msg: str) -> None:
        self.ok = False
        self.problems.add(self.where, f"{self.ctx}{msg}")

    def check_keys(self, required: Iterable[str], optional: Iterable[str] = ()) -> None:
        req = tuple(required)
        allowed = set(req) | set(optional)
        for key in self.data:
            if key not in allowed:
                self._fail(f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
        for key in req:
            if key not in self.data:
                self._fail(f"missing required key {key!r}")

    def text(self, key: str, *, required: bool = True) -> str:
        value = self.data.get(key)
        if value is None:
            if required and key in self.data:
                self._fail(f"{key!r} must be non-empty text")
            return ""
        if not isinstance(value, str) or not value.strip():
            self._fail(f"{key!r} must be non-empty text")
            return ""
        return value.strip()

    def choice(self, key: str, options: Sequence[str]) -> str:
        value = self.text(key)
        if value and value not in options:
            self._fail(f"{key!r} must be one of {', '.join(map(repr, options))}, not {value!r}")
        return value

    def ids(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._fail(f"{key!r} must be a list of source ids")
            return ()
        return tuple(value)

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        value = self.data.get(key)
        if not isinstance(value, dict):
            self._fail(f"{key!r} must be a mapping")
            return None
        return value

    def items(self, key: str, *, min_items: int = 1) -> list[Any]:
        value = self.data.get(key)
        if not isinstance(value, list) or len(value) < min_items:
            self._fail(f"{key!r} must be a list with at least {min_items} item(s)")
            return []
        return value

    def sub(self, value: Any, ctx: str) -> _Reader | None:
        if not isinstance(value, dict):
            self._fail(f"{ctx} must be a mapping")
            return None
        return _Reader(value, self.where, f"{self.ctx}{ctx}: ", self.problems)


class _Loader:
    def __init__(self, root: Traversable, url_prefix: str) -> None:
        self.root = root
        self.url_prefix = url_prefix
        self.problems = _Problems()
        self.hasher = hashlib.sha256()
        self.sources: dict[str, Source] = {}
        # (where, source id) pairs to resolve once the bibliography is known
        self.references: list[tuple[str, str]] = []
        # (where, text) pairs to scan for promising wording
        self.texts: list[tuple[str, str]] = []

    # -- files -------------------------------------------------------------------------------

    def _read(self, node: Traversable, rel: str) -> str | None:
        try:
            text = node.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.add(rel, f"cannot read file ({exc})")
            return None
        self.hasher.update(rel.encode() + b"\0" + text.encode() + b"\0")
        return text

    def _yaml(self, text: str, rel: str) -> Any:
        try:
            return load_yaml(text)
        except yaml.YAMLError as exc:
            self.problems.add(rel, f"invalid YAML ({exc})")
            return None

    def _page_files(self) -> list[tuple[Traversable, str, str | None]]:
        """(node, relative path, folder section or None) for every ``.md`` file."""
        found: list[tuple[Traversable, str, str | None]] = []
        for node in sorted(self.root.iterdir(), key=lambda n: n.name):
            if node.is_file() and node.name.endswith(".md"):
                found.append((node, node.name, None))
            elif node.is_dir() and not node.name.startswith(("_", ".")):
                if node.name not in _FOLDER_SECTIONS:
                    self.problems.add(
                        node.name + "/",
                        f"unknown folder (allowed: {', '.join(sorted(_FOLDER_SECTIONS))})",
                    )
                    continue
                for child in sorted(node.iterdir(), key=lambda n: n.name):
                    rel = f"{node.name}/{child.name}"
                    if child.is_file() and child.name.endswith(".md"):
                        found.append((child, rel, node.name))
                    elif not child.name.startswith("."):
                        self.problems.add(rel, "only .md files are allowed in a section folder")
        return found

    # -- sources -----------------------------------------------------------------------------

    def load_sources(self) -> None:
        rel = "sources.yaml"
        node = self.root.joinpath(rel)
        if not node.is_file():
            self.problems.add(rel, "missing bibliography file")
            return
        text = self._read(node, rel)
        data = self._yaml(text, rel) if text is not None else None
        if data is None:
            return
        if not isinstance(data, dict) or not isinstance(data.get("sources"), list):
            self.problems.add(rel, "must be a mapping with a 'sources' list")
            return
        for i, entry in enumerate(data["sources"]):
            if not isinstance(entry, dict):
                self.problems.add(rel, f"sources[{i}] must be a mapping")
                continue
            r = _Reader(entry, rel, f"sources[{i}] ({entry.get('id', '?')}): ", self.problems)
            r.check_keys(("id", "citation", "status"), ("url", "note"))
            sid = r.text("id")
            citation = r.text("citation")
            status = r.choice("status", SOURCE_STATUSES)
            url = r.text("url", required=False) or None
            note = r.text("note", required=False) or None
            if sid and not _SOURCE_ID_RE.match(sid):
                r._fail(f"id {sid!r} must be lower-case letters, digits, '-', '_' or '.'")
            if url and not url.startswith(("https://", "http://")):
                r._fail("url must start with https:// or http://")
            if sid in self.sources:
                r._fail(f"duplicate source id {sid!r}")
            if r.ok:
                self.sources[sid] = Source(sid, citation, status, url, note)

    # -- pages -------------------------------------------------------------------------------

    def _sourced(self, r: _Reader, value: Any, ctx: str) -> SourcedText | None:
        sr = r.sub(value, ctx)
        if sr is None:
            return None
        sr.check_keys(("text", "sources"))
        text = sr.text("text")
        ids = sr.ids("sources")
        if not ids:
            sr._fail("'sources' must list at least one source id")
        self._track(r.where, text, ids)
        return SourcedText(text, ids) if sr.ok else None

    def _track(self, where: str, text: str, ids: Iterable[str]) -> None:
        self.texts.append((where, text))
        if "[^" in text:
            self.problems.add(where, "citation markers are only allowed in the page body")
        self.references.extend((where, i) for i in ids)

    def _sourced_list(self, r: _Reader, key: str, *, min_items: int = 1) -> tuple[SourcedText, ...]:
        out = []
        for i, item in enumerate(r.items(key, min_items=min_items)):
            st = self._sourced(r, item, f"{key}[{i}]")
            if st is not None:
                out.append(st)
        return tuple(out)

    def _icd10(self, r: _Reader) -> tuple[Icd10Code, ...]:
        codes = []
        for i, item in enumerate(r.items("icd10")):
            ir = r.sub(item, f"icd10[{i}]")
            if ir is None:
                continue
            ir.check_keys(("code", "description", "verified", "source"))
            code = ir.text("code")
            desc = ir.text("description")
            source = ir.text("source")
            verified = ir.data.get("verified")
            if not isinstance(verified, bool):
                ir._fail("'verified' must be true or false")
            if code and not ICD10_CM_PATTERN.match(code):
                ir._fail(f"{code!r} does not match the ICD-10-CM code pattern")
            self._track(r.where, desc, [source] if source else [])
            if ir.ok:
                codes.append(Icd10Code(code, desc, bool(verified), source))
        return tuple(codes)

    def _cell_therapy(self, r: _Reader) -> CellTherapyStatus | None:
        cr = r.sub(r.data.get("cell_therapy"), "cell_therapy")
        if cr is None:
            return None
        cr.check_keys(("level", "text", "sources"))
        level = cr.choice("level", CELL_THERAPY_LEVELS)
        text = cr.text("text")
        ids = cr.ids("sources")
        if not ids:
            cr._fail("'sources' must list at least one source id")
        self._track(r.where, text, ids)
        return CellTherapyStatus(level, text, ids) if cr.ok else None

    def _comparison(self, r: _Reader) -> TreatmentComparison | None:
        cr = r.sub(r.data.get("comparison"), "comparison")
        if cr is None:
            return None
        cr.check_keys(
            (
                "label",
                "pros",
                "cons",
                "typical_outcomes",
                "certainty",
                "invasiveness",
                "time_to_effect",
                "main_risks",
            )
        )
        label = cr.text("label")
        self.texts.append((r.where, label))
        pros = self._sourced_list(cr, "pros")
        cons = self._sourced_list(cr, "cons")
        # an empty list is allowed (and shown as "no sourced information yet"): better than an
        # unsourced claim
        risks = self._sourced_list(cr, "main_risks", min_items=0)
        outcomes = []
        for i, item in enumerate(cr.items("typical_outcomes")):
            orr = cr.sub(item, f"typical_outcomes[{i}]")
            if orr is None:
                continue
            orr.check_keys(("text", "number", "source"))
            raw_number = orr.data.get("number")
            number = str(raw_number).strip() if isinstance(raw_number, str | int | float) else ""
            if not number:
                orr._fail("'number' must be non-empty")
            text = orr.text("text")
            source = orr.text("source")
            self._track(r.where, text, [source] if source else [])
            if orr.ok:
                outcomes.append(Outcome(text, number, source))
        certainty = None
        ctr = cr.sub(cr.data.get("certainty"), "certainty")
        if ctr is not None:
            ctr.check_keys(("level", "reason", "sources"))
            level = ctr.choice("level", CERTAINTY_LEVELS)
            reason = ctr.text("reason")
            ids = ctr.ids("sources")
            if not ids:
                ctr._fail("'sources' must list at least one source id")
            self._track(r.where, reason, ids)
            if ctr.ok:
                certainty = Certainty(level, reason, ids)
        invasiveness = None
        ivr = cr.sub(cr.data.get("invasiveness"), "invasiveness")
        if ivr is not None:
            ivr.check_keys(("level", "text"))
            level = ivr.choice("level", INVASIVENESS_LEVELS)
            text = ivr.text("text")
            self.texts.append((r.where, text))
            if ivr.ok:
                invasiveness = Invasiveness(level, text)
        time_to_effect = self._sourced(cr, cr.data.get("time_to_effect"), "time_to_effect")
        if not cr.ok or certainty is None or invasiveness is None or time_to_effect is None:
            return None
        return TreatmentComparison(
            label=label,
            pros=pros,
            cons=cons,
            typical_outcomes=tuple(outcomes),
            certainty=certainty,
            invasiveness=invasiveness,
            time_to_effect=time_to_effect,
            main_risks=risks,
        )

    def load_page(self, node: Traversable, rel: str, folder: str | None) -> dict[str, Any] | None:
        """Parse and check one page; returns its fields (body not rendered yet) or None."""
        text = self._read(node, rel)
        if text is None:
            return None
        split = _split_front_matter(text)
        if split is None:
            self.problems.add(rel, "must start with YAML front matter between '---' lines")
            return None
        meta = self._yaml(split[0], rel)
        if meta is None and split[0].strip():
            return None
        if not isinstance(meta, dict):
            self.problems.add(rel, "front matter must be a YAML mapping")
            return None
        body = split[1]
        r = _Reader(meta, rel, "front matter: ", self.problems)
        r.check_keys(_PAGE_REQUIRED, _PAGE_OPTIONAL)
        slug = r.text("slug")
        stem = node.name[: -len(".md")]
        if slug and not _SLUG_RE.match(slug):
            r._fail(f"slug {slug!r} must be lower-case words joined by '-'")
        elif slug and slug != stem:
            r._fail(f"slug {slug!r} must equal the file name {stem!r}")
        title = r.text("title")
        summary = r.text("summary")
        section = r.choice("section", SECTIONS)
        if section:
            if folder is not None and section != folder:
                r._fail(f"section {section!r} must equal its folder {folder!r}")
            if folder is None and section not in _TOP_SECTIONS:
                r._fail(f"a {section!r} page must live in the {section}/ folder")
        order = meta.get("order")
        if not isinstance(order, int) or isinstance(order, bool):
            r._fail("'order' must be an integer")
        updated = meta.get("updated")
        if not isinstance(updated, dt.date) or isinstance(updated, dt.datetime):
            r._fail("'updated' must be a date (YYYY-MM-DD)")
        version = str(meta.get("version", "")).strip()
        if "version" in meta and not _VERSION_RE.match(version):
            r._fail(f"'version' must look like 1.0 or 1.0.0, not {version!r}")
        for where_text in (title, summary):
            self._track(rel, where_text, ())
        self.texts.append((rel, body))

        icd10: tuple[Icd10Code, ...] = ()
        cell: CellTherapyStatus | None = None
        comparison: TreatmentComparison | None = None
        if section == "causes":
            icd10 = self._icd10(r)
            cell = self._cell_therapy(r)
        else:
            for key in ("icd10", "cell_therapy"):
                if key in meta:
                    r._fail(f"{key!r} is only allowed on 'causes' pages")
        if section == "treatments":
            comparison = self._comparison(r)
        elif "comparison" in meta:
            r._fail("'comparison' is only allowed on 'treatments' pages")
        related = r.ids("related")

        # citation markers in the body
        for m in _MARKER_RE.finditer(body):
            if not _VALID_MARKER_RE.fullmatch(m.group(0)):
                self.problems.add(rel, f"malformed citation marker {m.group(0)!r}")
        body_ids = [m.group(1) for m in _VALID_MARKER_RE.finditer(body)]
        self.references.extend((rel, i) for i in body_ids)

        if not r.ok:
            return None
        path = f"{folder}/{slug}" if folder else ("" if slug == "index" else slug)
        return {
            "slug": slug,
            "path": path,
            "section": section,
            "title": title,
            "summary": summary,
            "order": order,
            "updated": updated,
            "version": version,
            "body": body,
            "icd10": icd10,
            "cell_therapy": cell,
            "comparison": comparison,
            "related": related,
            "source_file": rel,
        }

    # -- questions ---------------------------------------------------------------------------

    def load_questions(self) -> tuple[str, tuple[Question, ...], tuple[ChecklistItem, ...]]:
        rel = "questions_to_ask.yaml"
        node = self.root.joinpath(rel)
        if not node.is_file():
            self.problems.add(rel, "missing questions file")
            return "", (), ()
        text = self._read(node, rel)
        data = self._yaml(text, rel) if text is not None else None
        if not isinstance(data, dict):
            if data is not None:
                self.problems.add(rel, "must be a YAML mapping")
            return "", (), ()
        r = _Reader(data, rel, "", self.problems)
        r.check_keys(("version", "updated", "questions"), ("checklist",))
        version = str(data.get("version", "")).strip()
        if not _VERSION_RE.match(version):
            r._fail(f"'version' must look like 1.0 or 1.0.0, not {version!r}")
        questions: list[Question] = []
        seen: set[str] = set()
        for i, item in enumerate(r.items("questions")):
            qr = r.sub(item, f"questions[{i}]")
            if qr is None:
                continue
            qr.check_keys(("id", "group", "text", "why", "sources"))
            qid, group, qtext, why = (qr.text(k) for k in ("id", "group", "text", "why"))
            ids = qr.ids("sources")
            if not ids:
                qr._fail("'sources' must list at least one source id")
            if qid in seen:
                qr._fail(f"duplicate question id {qid!r}")
            seen.add(qid)
            self._track(rel, qtext, ids)
            self._track(rel, why, ())
            if qr.ok:
                questions.append(Question(qid, group, qtext, why, ids))
        checklist: list[ChecklistItem] = []
        for i, item in enumerate(data.get("checklist") or []):
            cr = r.sub(item, f"checklist[{i}]")
            if cr is None:
                continue
            cr.check_keys(("id", "text", "sources"))
            cid, ctext = cr.text("id"), cr.text("text")
            ids = cr.ids("sources")
            if not ids:
                cr._fail("'sources' must list at least one source id")
            self._track(rel, ctext, ids)
            if cr.ok:
                checklist.append(ChecklistItem(cid, ctext, ids))
        return version, tuple(questions), tuple(checklist)

    # -- whole -------------------------------------------------------------------------------

    def load(self) -> KnowledgeBase:
        if not self.root.is_dir():
            raise KnowledgeBaseError([f"{self.root}: knowledge folder not found"])
        self.load_sources()
        raw_pages = [
            p
            for node, rel, folder in self._page_files()
            if (p := self.load_page(node, rel, folder))
        ]
        q_version, questions, checklist = self.load_questions()

        for where, sid in self.references:
            if sid not in self.sources:
                self.problems.add(where, f"citation {sid!r} does not resolve to sources.yaml")
        for where, text in self.texts:
            for phrase in find_promising_language(text):
                self.problems.add(where, f"promising wording {phrase!r} is not allowed")

        slugs: dict[str, str] = {}
        for p in raw_pages:
            if p["slug"] in slugs:
                self.problems.add(
                    p["source_file"], f"duplicate slug {p['slug']!r} (also {slugs[p['slug']]})"
                )
            slugs[p["slug"]] = p["source_file"]
        by_slug = {p["slug"]: p for p in raw_pages}
        for p in raw_pages:
            for rel_slug in p["related"]:
                if rel_slug not in by_slug:
                    self.problems.add(p["source_file"], f"related page {rel_slug!r} does not exist")
            for m in _LEARN_LINK_RE.finditer(p["body"]):
                if m.group(1) not in by_slug:
                    self.problems.add(
                        p["source_file"], f"link to unknown page 'learn:{m.group(1)}'"
                    )

        if self.problems.items:
            raise KnowledgeBaseError(self.problems.items)

        md = _make_markdown()
        pages: list[Page] = []
        for p in raw_pages:
            cited = self._page_citations(md, p)
            if not cited:
                self.problems.add(
                    p["source_file"], "cites no source: every page needs at least one"
                )
                continue
            pages.append(self._render(md, p, cited, by_slug))
        if self.problems.items:
            raise KnowledgeBaseError(self.problems.items)

        section_rank = {s: i for i, s in enumerate(SECTIONS)}
        pages.sort(key=lambda pg: (section_rank[pg.section], pg.order, pg.slug))
        index: dict[str, Page] = {}
        for pg in pages:
            index[pg.slug] = pg
            index[pg.path] = pg  # the index page's path is ""
        return KnowledgeBase(
            pages=tuple(pages),
            sources=MappingProxyType(dict(self.sources)),
            questions=questions,
            checklist=checklist,
            questions_version=q_version,
            digest=self.hasher.hexdigest()[:16],
            _index=MappingProxyType(index),
        )

    def _page_citations(self, md: MarkdownIt, p: dict[str, Any]) -> tuple[str, ...]:
        """Cited source ids in first-use order: body first, then the front-matter fields."""
        order: list[str] = []

        def add(ids: Iterable[str]) -> None:
            for i in ids:
                if i not in order:
                    order.append(i)

        tokens = md.parse(p["body"], {})
        add(str(t.meta["id"]) for t in _walk(tokens) if t.type == "citation")
        add(c.source for c in p["icd10"])
        if p["cell_therapy"] is not None:
            add(p["cell_therapy"].sources)
        comp: TreatmentComparison | None = p["comparison"]
        if comp is not None:
            for st in (*comp.pros, *comp.cons, comp.time_to_effect, *comp.main_risks):
                add(st.sources)
            add(o.source for o in comp.typical_outcomes)
            add(comp.certainty.sources)
        return tuple(order)

    def _render(
        self,
        md: MarkdownIt,
        p: dict[str, Any],
        cited: tuple[str, ...],
        by_slug: Mapping[str, Mapping[str, Any]],
    ) -> Page:
        env: dict[str, Any] = {"cite_numbers": {sid: n for n, sid in enumerate(cited, 1)}}
        tokens = md.parse(p["body"], env)
        for tok in _walk(tokens):
            href = tok.attrGet("href") if tok.type == "link_open" else None
            if isinstance(href, str) and href.startswith("learn:"):
                target = by_slug[href[len("learn:") :]]
                tok.attrSet("href", self._url(target["path"]))
        body_html = md.renderer.render(tokens, md.options, env)
        body_html += _sources_html([self.sources[s] for s in cited])
        return Page(
            slug=p["slug"],
            path=p["path"],
            url=self._url(p["path"]),
            section=p["section"],
            title=p["title"],
            summary=p["summary"],
            order=p["order"],
            updated=p["updated"],
            version=p["version"],
            body=p["body"],
            html=body_html,
            citations=cited,
            source_file=p["source_file"],
            icd10=p["icd10"],
            cell_therapy=p["cell_therapy"],
            comparison=p["comparison"],
            related=p["related"],
        )

    def _url(self, path: str) -> str:
        return self.url_prefix + (f"{path}/" if path else "")


# --------------------------------------------------------------------------- entry points


def _default_root() -> Traversable:
    return files("vertebra").joinpath("data", "learn")


@lru_cache(maxsize=4)
def _load_default(url_prefix: str) -> KnowledgeBase:
    return _Loader(_default_root(), url_prefix).load()


def load_knowledge_base(
    root: Path | Traversable | str | None = None, *, url_prefix: str = "/learn/"
) -> KnowledgeBase:
    """Load and validate the knowledge base.

    ``root`` is the knowledge folder; ``None`` means the packaged ``vertebra/data/learn``
    (loaded once and cached: the result is immutable). ``url_prefix`` is prepended to page paths
    to build ``Page.url`` and to rewrite ``learn:slug`` links.

    Raises :class:`KnowledgeBaseError` naming each bad file and its problem.
    """
    if root is None:
        return _load_default(url_prefix)
    node: Traversable = Path(root) if isinstance(root, str) else root
    return _Loader(node, url_prefix).load()
