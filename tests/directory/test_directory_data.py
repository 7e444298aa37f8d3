"""The directory's words are data: every source resolves, every status has words, no text
promises benefit (the knowledge base's check), and the demo's answers answer real questions."""

from __future__ import annotations

from importlib.resources import files

import yaml

from vertebra.core.knowledge import find_promising_language
from vertebra.directory.selectors import texts
from vertebra.registry.models import RegulatoryStatus
from vertebra.web.knowledge_selectors import questions_to_ask


def test_every_status_has_words_and_sources() -> None:
    words = texts()
    assert set(words.statuses) == set(RegulatoryStatus.values)
    assert all(s.sources and s.meaning for s in words.statuses.values())
    assert words.field_sources["responder_rate_all"][0].id == "ostelo2008"


def test_no_directory_text_promises_benefit() -> None:
    words = texts()
    every = [s.meaning for s in words.statuses.values()] + list(words.fields.values())
    assert [find_promising_language(t) for t in every] == [[] for _ in every]


def test_demo_answers_answer_real_questions_modestly() -> None:
    raw = yaml.safe_load(
        files("vertebra").joinpath("data", "synth", "clinic_answers.yaml").read_text("utf-8")
    )
    known = {q.id for q in questions_to_ask()}
    assert set(raw["answers"]) == set(RegulatoryStatus.values)
    for answers in raw["answers"].values():
        assert set(answers) <= known
        assert all(find_promising_language(t) == [] for t in answers.values())
