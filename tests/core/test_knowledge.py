"""Tests for the knowledge base content (src/vertebra/data/learn) and its loader."""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
from pathlib import Path

import pytest

from vertebra.core.knowledge import (
    CERTAINTY_LEVELS,
    ICD10_CM_PATTERN,
    KnowledgeBase,
    KnowledgeBaseError,
    Page,
    find_promising_language,
    load_knowledge_base,
)

CAUSES = {
    "degenerative-disc-disease",
    "herniated-disc",
    "facet-arthropathy",
    "sciatica",
    "muscle-strain",
    "spinal-stenosis",
}
TREATMENTS = ["medication", "steroid-injection", "physical-therapy", "surgery", "cell-therapy"]
OTHER_PAGES = {"index", "pathway", "benefits-and-risks", "regulation", "vetting-a-clinic"}

# Independent of the loader's own list on purpose: the content must pass both.
PROMISE_WORDS = [
    r"\bcure[sd]?\b",
    r"\bcuring\b",
    r"\bguarantee[sd]?\b",
    r"\bwill heal\b",
    r"\bwill repair\b",
    r"\bwill regenerate\b",
    r"\bproven to (regenerate|repair|heal|work)\b",
    r"\bregrows?\b",
    r"\bmiracle\b",
    r"\brisk-free\b",
    r"\bno side effects\b",
    r"\bpermanent (fix|relief)\b",
    r"\bbreakthrough\b",
    r"\b100 ?% (safe|effective)\b",
]


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def _all_patient_text(kb: KnowledgeBase) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    for page in kb.pages:
        texts += [(page.source_file, page.title), (page.source_file, page.summary)]
        texts.append((page.source_file, page.body))
        texts += [(page.source_file, c.description) for c in page.icd10]
        if page.cell_therapy:
            texts.append((page.source_file, page.cell_therapy.text))
        if page.comparison:
            comp = page.comparison
            texts += [(page.source_file, t.text) for t in (*comp.pros, *comp.cons)]
            texts += [(page.source_file, t.text) for t in comp.main_risks]
            texts += [(page.source_file, o.text) for o in comp.typical_outcomes]
            texts += [(page.source_file, comp.certainty.reason)]
            texts += [(page.source_file, comp.time_to_effect.text), (page.source_file, comp.label)]
    for q in kb.questions_to_ask():
        texts += [("questions_to_ask.yaml", q.text), ("questions_to_ask.yaml", q.why)]
    return texts


# --------------------------------------------------------------------------- shipped content


def test_all_pages_load(kb: KnowledgeBase) -> None:
    slugs = {p.slug for p in kb.pages}
    assert slugs == CAUSES | set(TREATMENTS) | OTHER_PAGES
    for page in kb.pages:
        assert page.title and page.summary and page.body.strip()
        assert isinstance(page.updated, dt.date)
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", page.version)
        assert page.html.startswith("<")
        assert page.url.startswith("/learn/")


def test_sections_and_order(kb: KnowledgeBase) -> None:
    assert kb.pages[0].slug == "index"
    assert {p.slug for p in kb.pages_in("causes")} == CAUSES
    assert [p.slug for p in kb.pages_in("treatments")] == TREATMENTS
    assert kb.get_page("causes/sciatica") is kb.get_page("sciatica")
    assert kb.get_page("sciatica").url == "/learn/causes/sciatica/"
    assert kb.get_page("index").url == "/learn/"
    assert kb.get_page("") is kb.get_page("index")
    with pytest.raises(KeyError):
        kb.get_page("no-such-page")


def test_six_causes_have_icd10_codes_and_cell_therapy_status(kb: KnowledgeBase) -> None:
    unverified = []
    for page in kb.pages_in("causes"):
        assert page.icd10, page.slug
        for code in page.icd10:
            assert ICD10_CM_PATTERN.match(code.code), code
            assert code.source in kb.sources
            if not code.verified:
                unverified.append(code.code)
        assert page.cell_therapy is not None
        assert page.cell_therapy.sources
        for heading in ("## What it is", "## Common symptoms", "## How it is diagnosed"):
            assert heading in page.body, (page.slug, heading)
        assert "## Usual first treatments" in page.body
        assert "## Has cell therapy been studied for it?" in page.body
    # codes marked (U) in the clinical reference stay marked unverified
    assert {"M54.30", "M51.26", "M47.817", "M51.361"} <= set(unverified)
    ddd = kb.get_page("degenerative-disc-disease")
    assert {"M51.360", "M51.369", "M51.370", "M51.379"} <= {c.code for c in ddd.icd10}
    assert {c.code for c in kb.get_page("spinal-stenosis").icd10} == {"M48.061", "M48.062"}
    assert "S39.012A" in {c.code for c in kb.get_page("muscle-strain").icd10}
    assert kb.get_page("degenerative-disc-disease").cell_therapy.level == "studied"  # type: ignore[union-attr]
    assert kb.get_page("muscle-strain").cell_therapy.level == "not studied"  # type: ignore[union-attr]


def test_five_treatments_comparison_table(kb: KnowledgeBase) -> None:
    table = kb.comparison_table()
    assert [row.slug for row in table] == TREATMENTS
    for row in table:
        comp = row.comparison
        assert comp.label
        assert comp.pros and comp.cons and comp.typical_outcomes
        assert comp.certainty.level in CERTAINTY_LEVELS
        assert comp.certainty.reason and comp.certainty.sources
        assert comp.invasiveness.level and comp.time_to_effect.text
        for outcome in comp.typical_outcomes:
            assert outcome.number and outcome.source in kb.sources
        # the page body states the certainty in words too
        assert f"Certainty of evidence: {comp.certainty.level}" in kb.get_page(row.slug).body
    by_slug = {row.slug: row.comparison for row in table}
    assert by_slug["cell-therapy"].certainty.level == "very low"
    assert by_slug["physical-therapy"].certainty.level == "moderate"
    json.dumps([row.to_dict() for row in table])


def test_cell_therapy_shows_negative_evidence(kb: KnowledgeBase) -> None:
    page = kb.get_page("cell-therapy")
    assert {"dream2025", "ijms2023review", "mesoblast-p3"} <= set(page.citations)
    outcomes = {o.source: o.number for o in page.comparison.typical_outcomes}  # type: ignore[union-attr]
    assert outcomes["dream2025"] == "no difference"
    assert "company statements" in page.body
    assert "no evidence to support" in page.body
    assert (
        kb.sources["mesoblast-p3"].note and "not a peer-reviewed" in kb.sources["mesoblast-p3"].note
    )


def test_every_citation_resolves_and_is_rendered(kb: KnowledgeBase) -> None:
    marker = re.compile(r"\[\^([a-z0-9][a-z0-9_.-]*)\]")
    for page in kb.pages:
        assert page.citations, page.slug
        body_ids = set(marker.findall(page.body))
        assert body_ids, f"{page.slug}: body cites nothing"
        assert body_ids <= set(page.citations) <= set(kb.sources)
        assert "[^" not in page.html
        for number, sid in enumerate(page.citations, 1):
            assert f'<li id="src-{sid}">' in page.html
            assert page.citation_number(sid) == number
        for sid in body_ids:
            assert f'href="#src-{sid}">[{page.citation_number(sid)}]</a>' in page.html


def test_unverified_claims_are_labelled(kb: KnowledgeBase) -> None:
    assert kb.sources["eu-atmp"].status == "U"
    assert "eu-atmp" in kb.get_page("regulation").citations
    assert "not yet checked" in kb.get_page("regulation").body
    assert kb.sources["vertebra-synthesis"].status == "U"
    assert "vertebra-synthesis" in kb.get_page("vetting-a-clinic").citations
    assert "not yet verified by Vertebra" in kb.get_page("medication").html


def test_no_patient_facing_text_promises_benefit(kb: KnowledgeBase) -> None:
    found = [
        (where, m.group(0))
        for where, text in _all_patient_text(kb)
        for pattern in PROMISE_WORDS
        for m in re.finditer(pattern, text, re.IGNORECASE)
    ]
    assert found == []


def test_promise_detector() -> None:
    assert find_promising_language("This therapy is a cure.") == ["cure"]
    assert find_promising_language("Results GUARANTEED") == ["GUARANTEED"]
    assert find_promising_language("Your disc will heal.") == ["will heal"]
    assert find_promising_language("cells proven to regenerate discs") == ["proven to regenerate"]
    assert find_promising_language("It can regrow your disc") == ["regrow"]
    assert find_promising_language("secure, accurate, a healing response, procure") == []


def test_questions_to_ask(kb: KnowledgeBase) -> None:
    questions = kb.questions_to_ask()
    assert len(questions) >= 10
    assert len({q.id for q in questions}) == len(questions)
    for q in questions:
        assert q.text.endswith("?")
        assert q.sources and set(q.sources) <= set(kb.sources)
    assert all("isscr-questions" in q.sources for q in questions)
    checklist = kb.clinic_checklist()
    assert checklist and all("vertebra-synthesis" in c.sources for c in checklist)


def test_to_dict_is_json_ready(kb: KnowledgeBase) -> None:
    data = kb.to_dict(include_body=True)
    text = json.dumps(data)
    assert data["digest"] == kb.digest
    assert len(data["pages"]) == len(kb.pages)
    assert '"icd10"' in text and '"comparison"' in text


def test_default_load_is_cached_and_immutable(kb: KnowledgeBase) -> None:
    assert load_knowledge_base() is kb
    page = kb.pages[0]
    with pytest.raises(AttributeError):
        page.title = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        kb.sources["x"] = kb.sources["qaseem2017"]  # type: ignore[index]


# --------------------------------------------------------------------------- loader errors

SOURCES = """\
sources:
  - id: good2020
    citation: Author et al. Journal. 2020;1:1.
    status: V
"""
QUESTIONS = """\
version: "1.0"
updated: 2026-01-01
questions:
  - id: q1
    group: evidence
    text: Is it in a trial?
    why: Because.
    sources: [good2020]
"""
FRONT = """\
---
slug: {slug}
title: A page
summary: A short summary.
section: {section}
order: 1
updated: 2026-01-01
version: "1.0"
{extra}---
"""
ICD = """\
icd10:
  - code: {code}
    description: A code
    verified: true
    source: good2020
cell_therapy:
  level: not studied
  text: Not studied.
  sources: [good2020]
"""


def _page(slug: str = "index", section: str = "overview", extra: str = "", body: str = "") -> str:
    return FRONT.format(slug=slug, section=section, extra=extra) + (
        body or "Some text with a claim [^good2020].\n"
    )


def _make_kb(root: Path, pages: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sources.yaml").write_text(SOURCES)
    (root / "questions_to_ask.yaml").write_text(QUESTIONS)
    for rel, text in pages.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _error(root: Path) -> str:
    with pytest.raises(KnowledgeBaseError) as info:
        load_knowledge_base(root)
    return str(info.value)


def test_minimal_folder_loads(tmp_path: Path) -> None:
    root = _make_kb(
        tmp_path / "kb",
        {
            "index.md": _page(),
            "causes/sciatica.md": _page(
                "sciatica",
                "causes",
                ICD.format(code="M54.41"),
                "See [home](learn:index) [^good2020].",
            ),
        },
    )
    kb = load_knowledge_base(root, url_prefix="/x/")
    page: Page = kb.get_page("causes/sciatica")
    assert page.url == "/x/causes/sciatica/"
    assert '<a href="/x/">home</a>' in page.html
    assert page.icd10[0].code == "M54.41"
    assert kb.get_page("index").citations == ("good2020",)


def test_unresolved_citation_names_file_and_id(tmp_path: Path) -> None:
    root = _make_kb(tmp_path / "kb", {"index.md": _page(body="Claim [^missing2021].\n")})
    message = _error(root)
    assert "index.md" in message and "'missing2021'" in message


def test_page_without_citation_is_rejected(tmp_path: Path) -> None:
    root = _make_kb(tmp_path / "kb", {"index.md": _page(body="No sources here.\n")})
    assert "index.md: cites no source" in _error(root)


def test_malformed_marker_is_rejected(tmp_path: Path) -> None:
    root = _make_kb(tmp_path / "kb", {"index.md": _page(body="Claim [^Bad Id] [^good2020].\n")})
    root2 = _make_kb(tmp_path / "kb2", {"index.md": _page(body="Claim [^BadId] [^good2020].\n")})
    assert "index.md" in _error(root2) and "malformed citation marker" in _error(root2)
    # a marker with a space is not a marker at all; it stays as text and the page still loads
    assert load_knowledge_base(root).get_page("index")


def test_invalid_yaml_front_matter_names_file(tmp_path: Path) -> None:
    bad = "---\nslug: [unclosed\ntitle: x\n---\nBody [^good2020].\n"
    root = _make_kb(tmp_path / "kb", {"index.md": _page(), "pathway.md": bad})
    message = _error(root)
    assert "pathway.md: invalid YAML" in message


def test_missing_front_matter_names_file(tmp_path: Path) -> None:
    root = _make_kb(tmp_path / "kb", {"index.md": "# Just markdown [^good2020]\n"})
    assert "index.md: must start with YAML front matter" in _error(root)


def test_unknown_and_missing_keys_are_rejected(tmp_path: Path) -> None:
    text = _page(extra="author: someone\n").replace("order: 1\n", "")
    root = _make_kb(tmp_path / "kb", {"index.md": text})
    message = _error(root)
    assert "index.md" in message
    assert "unknown key 'author'" in message
    assert "missing required key 'order'" in message


def test_bad_icd10_code_is_rejected(tmp_path: Path) -> None:
    root = _make_kb(
        tmp_path / "kb",
        {
            "index.md": _page(),
            "causes/sciatica.md": _page("sciatica", "causes", ICD.format(code="M5441")),
        },
    )
    message = _error(root)
    assert "causes/sciatica.md" in message and "ICD-10-CM" in message


def test_causes_page_requires_codes_and_others_reject_them(tmp_path: Path) -> None:
    root = _make_kb(
        tmp_path / "kb",
        {
            "index.md": _page(extra=ICD.format(code="M54.41")),
            "causes/sciatica.md": _page("sciatica", "causes"),
        },
    )
    message = _error(root)
    assert "index.md: front matter: 'icd10' is only allowed on 'causes' pages" in message
    assert "causes/sciatica.md: front matter: 'icd10' must be a list" in message


def test_section_must_match_folder_and_slug_file_name(tmp_path: Path) -> None:
    root = _make_kb(
        tmp_path / "kb",
        {
            "index.md": _page(),
            "treatments/surgery.md": _page("fusion", "causes", ICD.format(code="M54.41")),
        },
    )
    message = _error(root)
    assert "must equal the file name 'surgery'" in message
    assert "section 'causes' must equal its folder 'treatments'" in message


def test_promising_page_fails_to_load(tmp_path: Path) -> None:
    body = "Our cells are proven to regenerate discs, guaranteed [^good2020].\n"
    root = _make_kb(
        tmp_path / "kb",
        {"index.md": _page(), "pathway.md": _page("pathway", "cell-therapy", body=body)},
    )
    message = _error(root)
    assert "pathway.md: promising wording 'proven to regenerate'" in message
    assert "'guaranteed'" in message


def test_raw_html_is_escaped(tmp_path: Path) -> None:
    body = 'Text <script>alert("x")</script> and [link](javascript:alert(1)) [^good2020].\n'
    root = _make_kb(tmp_path / "kb", {"index.md": _page(body=body)})
    html = load_knowledge_base(root).get_page("index").html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html


def test_link_to_unknown_page_is_rejected(tmp_path: Path) -> None:
    root = _make_kb(tmp_path / "kb", {"index.md": _page(body="[x](learn:nowhere) [^good2020]\n")})
    assert "index.md: link to unknown page 'learn:nowhere'" in _error(root)


def test_bad_source_and_question_entries(tmp_path: Path) -> None:
    root = _make_kb(tmp_path / "kb", {"index.md": _page()})
    (root / "sources.yaml").write_text(
        SOURCES + "  - id: bad\n    citation: X\n    status: maybe\n"
    )
    (root / "questions_to_ask.yaml").write_text(QUESTIONS.replace("[good2020]", "[nope]"))
    message = _error(root)
    assert "sources.yaml: sources[1] (bad): 'status' must be one of 'V', 'U'" in message
    assert "questions_to_ask.yaml: citation 'nope' does not resolve" in message


def test_missing_folder(tmp_path: Path) -> None:
    assert "knowledge folder not found" in _error(tmp_path / "absent")


def test_problems_attribute_lists_each_problem(tmp_path: Path) -> None:
    root = _make_kb(
        tmp_path / "kb",
        {
            "index.md": _page(body="a [^x1] b [^x2]\n"),
            "pathway.md": textwrap.dedent("no front matter\n"),
        },
    )
    with pytest.raises(KnowledgeBaseError) as info:
        load_knowledge_base(root)
    problems = info.value.problems
    assert any(p.startswith("pathway.md:") for p in problems)
    assert sum(p.startswith("index.md: citation") for p in problems) == 2
