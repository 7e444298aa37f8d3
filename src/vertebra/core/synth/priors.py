"""Calibration priors of the synthetic cohort, read from ``vertebra/data/synth/priors.yaml``.

The file is data, not code: every prior carries its published source (or says it is a synthetic
assumption). `load_priors` validates that each top-level section names a source, so a prior
cannot be added without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from vertebra.core.yamltext import load_yaml

__all__ = ["Priors", "PriorsError", "load_priors"]


class PriorsError(ValueError):
    """Raised when the priors file is malformed or a section has no source."""


@dataclass(frozen=True, slots=True)
class Priors:
    """The validated priors file: its version and its sections (plain YAML mappings)."""

    version: str
    sections: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        """Section `key` (a mapping); KeyError names the missing section."""
        try:
            return self.sections[key]
        except KeyError:
            raise KeyError(f"priors.yaml has no section {key!r}") from None

    def source(self, key: str) -> str:
        """The cited source of section `key`."""
        return str(self[key]["source"])


def parse_priors(raw: Any) -> Priors:
    """Validate a mapping shaped like priors.yaml: a version and sections that each cite a source."""
    if not isinstance(raw, Mapping) or "version" not in raw:
        raise PriorsError("priors: expected a mapping with a 'version' and prior sections")
    sections = {k: v for k, v in raw.items() if k != "version"}
    for key, section in sections.items():
        if not isinstance(section, Mapping):
            raise PriorsError(f"priors: section {key!r} must be a mapping")
        source = section.get("source")
        if not isinstance(source, str) or not source.strip():
            raise PriorsError(f"priors: section {key!r} has no 'source'; every prior must cite one")
    return Priors(version=str(raw["version"]), sections=sections)


@cache
def load_priors() -> Priors:
    """The shipped priors (read and validated once)."""
    text = files("vertebra").joinpath("data", "synth", "priors.yaml").read_text(encoding="utf-8")
    return parse_priors(load_yaml(text))
