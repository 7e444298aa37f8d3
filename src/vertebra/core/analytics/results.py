"""Typed, immutable results. Every figure carries its denominator; `to_dict()` is JSON-ready.

Conventions for JSON: NaN/inf become null, tuples become lists, a CI is ``[lower, upper]``
(null when it cannot be computed, e.g. n < 2 for a t interval or n = 0 for a proportion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

__all__ = ["Mean", "Rate", "jsonable"]


def jsonable(value: Any) -> Any:
    """Recursively convert results to JSON-ready values (NaN -> None, numpy -> Python)."""
    if is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if to_dict is not None:
            return to_dict()
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def _f(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


@dataclass(frozen=True)
class Rate:
    """A proportion numerator/denominator with its Wilson 95 % CI (None when denominator 0)."""

    numerator: int
    denominator: int
    rate: float | None
    ci: tuple[float, float] | None

    @classmethod
    def of(cls, numerator: int, denominator: int, lo: float, hi: float) -> Rate:
        """Build from counts and precomputed interval bounds (NaN bounds -> no CI)."""
        if denominator <= 0:
            return cls(int(numerator), 0, None, None)
        ci = (float(lo), float(hi)) if math.isfinite(lo) and math.isfinite(hi) else None
        return cls(int(numerator), int(denominator), numerator / denominator, ci)

    def to_dict(self) -> dict[str, Any]:
        """{rate, ci, numerator, denominator}."""
        return {
            "rate": self.rate,
            "ci": list(self.ci) if self.ci else None,
            "numerator": self.numerator,
            "denominator": self.denominator,
        }


@dataclass(frozen=True)
class Mean:
    """A mean with SD, its n, and a 95 % t CI (None when n < 2)."""

    n: int
    mean: float | None
    sd: float | None
    ci: tuple[float, float] | None

    @classmethod
    def of(cls, n: int, mean: float, sd: float, lo: float, hi: float) -> Mean:
        """Build from summary numbers; NaN becomes None."""
        if n <= 0:
            return cls(0, None, None, None)
        ci = (float(lo), float(hi)) if math.isfinite(lo) and math.isfinite(hi) else None
        return cls(int(n), _f(mean), _f(sd), ci)

    def to_dict(self) -> dict[str, Any]:
        """{n, mean, sd, ci}."""
        return {
            "n": self.n,
            "mean": self.mean,
            "sd": self.sd,
            "ci": list(self.ci) if self.ci else None,
        }
