"""The FHIR code lists and URLs, read from ``vertebra/data/fhir/codes.yaml``.

Contracts
---------
* :func:`fhir_codes` returns one immutable :class:`FhirCodes`, read once from package data.
* External clinical codes (LOINC, ...) marked ``U`` are never returned by
  :meth:`FhirCodes.instrument_coding`; only ``V`` ones are. FHIR's own codes are returned
  whatever their status (a resource needs them to be valid R4); the data file records both.
* Every URL of Vertebra's own code systems, extensions and identifier systems is built here
  from ``canonical_base``, and only for names the data file declares (a typo fails loudly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any

from vertebra.core.instruments import list_instruments
from vertebra.core.mme import known_opioids
from vertebra.core.yamltext import load_yaml

__all__ = ["FhirCodes", "InstrumentCode", "fhir_codes"]

#: Code systems whose code lists are open (values come from other versioned data).
_OPEN_SYSTEMS = frozenset({"score-band", "followup-timepoint"})


@dataclass(frozen=True, slots=True)
class InstrumentCode:
    """How one instrument's score is coded: display, unit and an optional verified LOINC code."""

    instrument_id: str
    display: str
    unit_text: str
    unit_ucum: str
    loinc: Mapping[str, str] | None  # {"code", "display"} when verified, else None
    body_site: str | None
    value: str  # "quantity" (the score) or "category" (the stored band)


@dataclass(frozen=True, slots=True)
class FhirCodes:
    """The parsed data file. Build with :func:`fhir_codes`."""

    version: str
    base: str
    systems: Mapping[str, str]
    fhir: Mapping[str, Any]
    instruments: Mapping[str, InstrumentCode]
    codesystems: Mapping[str, Mapping[str, str]]
    extensions: frozenset[str]
    identifier_systems: frozenset[str]
    answer_systems: Mapping[str, str]
    dose_units: Mapping[str, str]
    #: instrument id -> its score codings, built once (the export codes every score).
    score_codings: Mapping[str, tuple[Mapping[str, str], ...]] = field(default_factory=dict)

    def system(self, name: str) -> str:
        """URL of Vertebra code system ``name`` (KeyError for one the data file lacks)."""
        if name not in self.codesystems:
            raise KeyError(f"no Vertebra code system {name!r} in codes.yaml")
        return f"{self.base}/CodeSystem/{name}"

    def coding(self, name: str, code: str) -> dict[str, str]:
        """A Coding of Vertebra code system ``name`` with its display when the system has one.

        Closed systems refuse an unknown code (KeyError): exporting a code the data file does
        not define would publish a concept nobody can look up.
        """
        table = self.codesystems.get(name)
        if table is None:
            raise KeyError(f"no Vertebra code system {name!r} in codes.yaml")
        coding = {"system": self.system(name), "code": code}
        if code in table:
            coding["display"] = table[code]
        elif name not in _OPEN_SYSTEMS:
            raise KeyError(f"{code!r} is not a code of Vertebra code system {name!r}")
        return coding

    def concept(self, name: str, code: str) -> dict[str, Any]:
        """A CodeableConcept holding :meth:`coding` and its display as text."""
        coding = self.coding(name, code)
        return {"coding": [coding], "text": coding.get("display", code)}

    def extension_url(self, name: str) -> str:
        """URL of Vertebra extension ``name`` (KeyError for an undeclared one)."""
        if name not in self.extensions:
            raise KeyError(f"no Vertebra extension {name!r} in codes.yaml")
        return f"{self.base}/StructureDefinition/{name}"

    def identifier_system(self, name: str, *suffix: object) -> str:
        """URL of Vertebra identifier system ``name`` (with path ``suffix``, e.g. a clinic id)."""
        if name not in self.identifier_systems:
            raise KeyError(f"no Vertebra identifier system {name!r} in codes.yaml")
        tail = "".join(f"/{part}" for part in suffix)
        return f"{self.base}/sid/{name}{tail}"

    def questionnaire_url(self, instrument_id: str) -> str:
        """Canonical URL of an instrument's Questionnaire (without version)."""
        return f"{self.base}/Questionnaire/{instrument_id}"

    def fhir_coding(self, key: str) -> dict[str, str]:
        """A Coding of one of FHIR's own codes listed under ``fhir`` in the data file."""
        entry = self.fhir[key]
        return {"system": entry["system"], "code": entry["code"], "display": entry["display"]}

    def instrument_coding(self, instrument_id: str) -> list[dict[str, str]]:
        """The codings of an instrument's score: the Vertebra code, then a verified LOINC
        (fresh dicts: callers may embed them in resources)."""
        return [dict(coding) for coding in self.score_codings[instrument_id]]


def _instrument(instrument_id: str, raw: Mapping[str, Any]) -> InstrumentCode:
    """One ``instruments`` entry; a LOINC code survives only when marked V."""
    loinc = raw.get("loinc")
    verified = None
    if loinc and loinc.get("status") == "V":
        verified = MappingProxyType({"code": str(loinc["code"]), "display": str(loinc["display"])})
    return InstrumentCode(
        instrument_id=instrument_id,
        display=str(raw["display"]),
        unit_text=str(raw["unit"]["text"]),
        unit_ucum=str(raw["unit"]["ucum"]),
        loinc=verified,
        body_site=raw.get("body_site"),
        value=str(raw.get("value", "quantity")),
    )


def parse_codes(raw: Mapping[str, Any]) -> FhirCodes:
    """Build :class:`FhirCodes` from the parsed YAML; fill the systems that mirror other data.

    Raises ValueError when an instrument the registry scores has no entry, so a new instrument
    cannot be exported with an invented code.
    """
    instruments = {key: _instrument(key, value) for key, value in raw["instruments"].items()}
    missing = sorted({d.id for d in list_instruments()} - set(instruments))
    if missing:
        raise ValueError(f"codes.yaml: no FHIR entry for instrument(s) {', '.join(missing)}")
    systems = {name: dict(table or {}) for name, table in raw["codesystems"].items()}
    systems["instrument"] = {key: spec.display for key, spec in instruments.items()}
    systems["opioid"] = {o.id: o.label for o in known_opioids()} | systems.get("opioid", {})
    base = str(raw["canonical_base"]).rstrip("/")
    score_codings = {}
    for key, spec in instruments.items():
        codings: list[Mapping[str, str]] = [
            {"system": f"{base}/CodeSystem/instrument", "code": key, "display": spec.display}
        ]
        if spec.loinc is not None:
            codings.append({"system": str(raw["systems"]["loinc"]), **spec.loinc})
        score_codings[key] = tuple(MappingProxyType(dict(c)) for c in codings)
    return FhirCodes(
        version=str(raw["version"]),
        base=base,
        systems=MappingProxyType(dict(raw["systems"])),
        fhir=MappingProxyType(dict(raw["fhir"])),
        instruments=MappingProxyType(instruments),
        codesystems=MappingProxyType({k: MappingProxyType(v) for k, v in systems.items()}),
        extensions=frozenset(raw["extensions"]),
        identifier_systems=frozenset(raw["identifier_systems"]),
        answer_systems=MappingProxyType(dict(raw.get("answer_systems") or {})),
        dose_units=MappingProxyType(dict(raw.get("dose_units") or {})),
        score_codings=MappingProxyType(score_codings),
    )


@cache
def fhir_codes() -> FhirCodes:
    """The shipped code lists (read once from ``vertebra/data/fhir/codes.yaml``)."""
    text = files("vertebra").joinpath("data", "fhir", "codes.yaml").read_text(encoding="utf-8")
    return parse_codes(load_yaml(text))
