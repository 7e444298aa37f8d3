"""Definitions, licensing rules and site text overlays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from vertebra.core.instruments import (
    ENV_TEXT_DIR,
    PLACEHOLDER_MARKER,
    InstrumentTextError,
    UnknownInstrumentError,
    clear_instrument_text,
    get_definition,
    list_instruments,
    load_instrument_text,
    score,
)

NOT_SHIPPED = {"odi", "rmdq", "promis_pf_4a", "promis_pi_4a", "startback"}
SHIPPED = {
    "psfs",
    "nrs_back",
    "nrs_leg",
    "global_rating_of_change",
    "satisfaction",
    "opioid_use",
    "work_status",
    "ae_tickler",
}


@pytest.fixture(autouse=True)
def _no_site_text(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ENV_TEXT_DIR, raising=False)
    clear_instrument_text()
    yield
    clear_instrument_text()


def test_instrument_ids() -> None:
    assert {d.id for d in list_instruments()} == NOT_SHIPPED | SHIPPED


def test_unknown_instrument_lists_known() -> None:
    with pytest.raises(UnknownInstrumentError, match=r"known instruments: .*odi"):
        get_definition("oswestry")
    with pytest.raises(UnknownInstrumentError):
        score("oswestry", [])


@pytest.mark.parametrize("instrument", sorted(NOT_SHIPPED))
def test_licensed_text_is_never_shipped(instrument: str) -> None:
    """ODI (Mapi), PROMIS (HEAP), STarT Back (non-commercial only) and RMDQ (electronic terms
    unverified) ship structure and placeholder wording only."""
    defn = get_definition(instrument)
    assert defn.item_text_shipped is False
    assert defn.text_source == "placeholder"
    assert all(PLACEHOLDER_MARKER in item.text for item in defn.items)
    assert defn.licence.holder and defn.licence.terms and defn.licence.source


@pytest.mark.parametrize("instrument", sorted(SHIPPED))
def test_own_items_ship_complete(instrument: str) -> None:
    defn = get_definition(instrument)
    assert defn.item_text_shipped is True
    assert not defn.has_placeholder_text


def test_structure_facts() -> None:
    odi = get_definition("odi")
    assert (len(odi.items), odi.version, odi.direction) == (10, "2.1a", "higher_is_worse")
    assert all(it.codes == (0, 1, 2, 3, 4, 5) for it in odi.items)
    assert [b.id for b in odi.bands] == ["minimal", "moderate", "severe", "crippled", "bed_bound"]
    assert len(get_definition("rmdq").items) == 24
    assert get_definition("promis_pf_4a").direction == "higher_is_better"
    assert get_definition("promis_pi_4a").direction == "higher_is_worse"
    assert get_definition("nrs_back").recall == "past 7 days"
    opioid_codes = get_definition("opioid_use").item("opioid").codes
    assert "oxycodone" in opioid_codes and "fentanyl_transdermal" in opioid_codes
    assert opioid_codes[-1] == "other"


def _pf_items() -> dict[str, object]:
    return {
        f"pf4a_{i}": {
            "text": f"Licensed question {i}",
            "options": {c: f"Licensed label {c}" for c in range(1, 6)},
        }
        for i in range(1, 5)
    }


def _pf_overlay(**changes: object) -> dict[str, object]:
    overlay: dict[str, object] = {
        "id": "promis_pf_4a",
        "version": "2.0",
        "instructions": "Site instructions.",
        "items": _pf_items(),
    }
    overlay.update(changes)
    return overlay


def _write(tmp_path: Path, data: object, name: str = "pf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_overlay_replaces_text_but_not_scoring(tmp_path: Path) -> None:
    before = score("promis_pf_4a", [5, 5, 4, None])
    defn = load_instrument_text(_write(tmp_path, _pf_overlay()))
    assert defn.item("pf4a_2").text == "Licensed question 2"
    assert defn.item("pf4a_2").option(3).label == "Licensed label 3"
    assert defn.text_source.startswith("overlay:")
    assert not defn.has_placeholder_text
    assert get_definition("promis_pf_4a").text_source == defn.text_source
    assert score("promis_pf_4a", [5, 5, 4, None]) == before
    clear_instrument_text()
    assert get_definition("promis_pf_4a").text_source == "placeholder"


def test_overlay_from_environment_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, _pf_overlay())
    monkeypatch.setenv(ENV_TEXT_DIR, str(tmp_path))
    clear_instrument_text()
    assert get_definition("promis_pf_4a").item("pf4a_1").text == "Licensed question 1"
    assert get_definition("odi").text_source == "placeholder"


def test_overlay_with_missing_item_is_refused(tmp_path: Path) -> None:
    items = _pf_items()
    del items["pf4a_4"]
    items["pf4a_9"] = "Extra"
    with pytest.raises(InstrumentTextError, match="missing: pf4a_4; unknown: pf4a_9"):
        load_instrument_text(_write(tmp_path, _pf_overlay(items=items)))


def test_overlay_with_wrong_option_codes_is_refused(tmp_path: Path) -> None:
    items = _pf_items()
    items["pf4a_1"] = {"text": "Q", "options": {0: "a", 1: "b", 2: "c", 3: "d", 4: "e"}}
    with pytest.raises(InstrumentTextError, match="'pf4a_1': option codes"):
        load_instrument_text(_write(tmp_path, _pf_overlay(items=items)))


def test_overlay_for_another_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InstrumentTextError, match=r"version '1\.0'.*scores version '2\.0'"):
        load_instrument_text(_write(tmp_path, _pf_overlay(version="1.0")))


def test_overlay_leaving_placeholders_is_refused(tmp_path: Path) -> None:
    items = {f"pf4a_{i}": f"Licensed question {i}" for i in range(1, 5)}  # no option labels
    with pytest.raises(InstrumentTextError, match="placeholder wording remains"):
        load_instrument_text(_write(tmp_path, _pf_overlay(items=items)))


def test_overlay_for_unknown_instrument_or_bad_file(tmp_path: Path) -> None:
    with pytest.raises(InstrumentTextError, match="unknown instrument 'eq5d'"):
        load_instrument_text(_write(tmp_path, {"id": "eq5d", "version": "5L", "items": {}}))
    with pytest.raises(InstrumentTextError, match="cannot read overlay"):
        load_instrument_text(tmp_path / "absent.yaml")
