"""Scoring methods. Each method is named in a definition file (`scoring.method`) and has

* a *check* that validates the definition's items and `scoring.params` at load time, and
* a *score* that turns validated answers (one per item, None = missing) into a ScoreResult.

Adding a method means adding both functions and one line in METHODS; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vertebra.core import mme
from vertebra.core.instruments.model import (
    Answer,
    Code,
    DefinitionError,
    InstrumentDefinition,
    InvalidAnswerError,
    JSONValue,
    ScoreResult,
)

Values = tuple[Answer, ...]


@dataclass(frozen=True, slots=True)
class Method:
    """A scoring method: validate a definition, then score validated answers."""

    check: Callable[[InstrumentDefinition], None]
    score: Callable[[InstrumentDefinition, Values], ScoreResult]


def check_definition(defn: InstrumentDefinition) -> None:
    """Validate that the definition's method exists and its params fit its items."""
    method = METHODS.get(defn.scoring.method)
    if method is None:
        raise DefinitionError(
            f"{defn.id}: unknown scoring method {defn.scoring.method!r}; "
            f"known: {', '.join(sorted(METHODS))}"
        )
    method.check(defn)


def score_values(defn: InstrumentDefinition, values: Values) -> ScoreResult:
    """Score validated answers (see answers.normalise_answers) with the definition's method."""
    return METHODS[defn.scoring.method].score(defn, values)


# --- shared helpers ---------------------------------------------------------------------------


def _result(
    defn: InstrumentDefinition,
    values: Values,
    score: float | None,
    band: str | None,
    extras: Mapping[str, JSONValue] | None = None,
) -> ScoreResult:
    return ScoreResult(
        instrument_id=defn.id,
        version=defn.version,
        score=score,
        band=band,
        items_answered=sum(v is not None for v in values),
        items_total=len(values),
        extras=dict(extras or {}),
    )


def _unscored(
    defn: InstrumentDefinition, values: Values, reason: str, **extras: JSONValue
) -> ScoreResult:
    return _result(defn, values, None, None, {"unscored_reason": reason, **extras})


def _param(defn: InstrumentDefinition, name: str, kind: type | tuple[type, ...]) -> Any:
    """Fetch a required scoring parameter of the given type (DefinitionError otherwise)."""
    value = defn.scoring.params.get(name)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise DefinitionError(f"{defn.id}: scoring.params.{name} must be {kind}, got {value!r}")
    return value


def _require_codes(defn: InstrumentDefinition, codes: Sequence[int]) -> None:
    """Every item must be a choice item with exactly these integer codes."""
    for it in defn.items:
        if it.type != "choice" or list(it.codes) != list(codes):
            raise DefinitionError(f"{defn.id}: item {it.id!r} must have codes {list(codes)}")


def _missing_count(values: Values) -> int:
    return sum(v is None for v in values)


def _code(value: Answer) -> Code:
    """A validated choice answer as its option code (never None or float here)."""
    if value is None or isinstance(value, float):
        raise TypeError(f"expected an option code, got {value!r}")
    return value


def _code_int(value: Answer) -> int:
    """A validated answer to an integer-coded item."""
    code = _code(value)
    if not isinstance(code, int):
        raise TypeError(f"expected an integer code, got {value!r}")
    return code


def _ints(values: Values) -> list[int]:
    """The answered values as ints (only call for items whose codes are ints)."""
    return [_code_int(v) for v in values if v is not None]


def round_half_up_ratio(numerator: int, denominator: int, decimals: int) -> float:
    """Round numerator/denominator half-up to `decimals` places, exactly (integer arithmetic).

    Exact arithmetic avoids float surprises such as round(2.675, 2) == 2.67.
    """
    scale: int = 10**decimals  # int ** int is typed Any (negative powers give floats)
    num = numerator * scale
    rounded = (2 * num + denominator) // (2 * denominator)
    return rounded / scale


# --- single value (NRS) ----------------------------------------------------------------------


def _single_check(defn: InstrumentDefinition) -> None:
    if len(defn.items) != 1 or not all(isinstance(c, int) for c in defn.items[0].codes):
        raise DefinitionError(f"{defn.id}: single_value needs exactly one integer-coded item")


def _single_score(defn: InstrumentDefinition, values: Values) -> ScoreResult:
    (value,) = values
    if value is None:
        return _unscored(defn, values, "item not answered")
    score = float(value)
    return _result(defn, values, score, defn.band_for(score))


# --- ODI percentage --------------------------------------------------------------------------

ODI_MAX_SECTION = 5


def _odi_check(defn: InstrumentDefinition) -> None:
    _require_codes(defn, range(ODI_MAX_SECTION + 1))
    max_missing = _param(defn, "max_missing", int)
    if not 0 <= max_missing < len(defn.items):
        raise DefinitionError(f"{defn.id}: max_missing must be in 0..{len(defn.items) - 1}")
    if _param(defn, "decimals", int) < 0:
        raise DefinitionError(f"{defn.id}: decimals must be >= 0")


def _odi_score(defn: InstrumentDefinition, values: Values) -> ScoreResult:
    max_missing: int = defn.scoring.params["max_missing"]
    missing = _missing_count(values)
    if missing > max_missing:
        return _unscored(
            defn,
            values,
            f"{missing} of {len(values)} sections unanswered; at most {max_missing} allowed",
        )
    answered = _ints(values)
    raw = sum(answered)
    # index = raw / (5 x answered) x 100, rounded half-up
    score = round_half_up_ratio(
        100 * raw, ODI_MAX_SECTION * len(answered), defn.scoring.params["decimals"]
    )
    return _result(
        defn, values, score, defn.band_for(score), {"raw": raw, "max_possible": 5 * len(answered)}
    )


# --- count of "yes" (RMDQ) -------------------------------------------------------------------


def _count_yes_check(defn: InstrumentDefinition) -> None:
    _require_codes(defn, (0, 1))
    if not 0 <= _param(defn, "max_missing", int) < len(defn.items):
        raise DefinitionError(f"{defn.id}: max_missing out of range")


def _count_yes_score(defn: InstrumentDefinition, values: Values) -> ScoreResult:
    max_missing: int = defn.scoring.params["max_missing"]
    missing = _missing_count(values)
    if missing > max_missing:
        return _unscored(
            defn,
            values,
            f"{missing} of {len(values)} items unanswered; at most {max_missing} allowed",
        )
    # When max_missing > 0, an unanswered statement counts as "no", as on the paper tick list.
    score = float(sum(_ints(values)))
    return _result(defn, values, score, defn.band_for(score))


# --- PROMIS sum-score lookup -----------------------------------------------------------------


def _promis_table(defn: InstrumentDefinition) -> Mapping[int, Mapping[str, float]]:
    table: Mapping[int, Mapping[str, float]] = defn.scoring.params["table"]
    return table


def _promis_check(defn: InstrumentDefinition) -> None:
    _require_codes(defn, (1, 2, 3, 4, 5))
    table = _param(defn, "table", Mapping)
    n = len(defn.items)
    if sorted(table) != list(range(n, 5 * n + 1)):
        raise DefinitionError(f"{defn.id}: table must have one row for every raw sum {n}..{5 * n}")
    ts = [float(table[r]["t"]) for r in sorted(table)]
    if ts != sorted(ts):
        raise DefinitionError(f"{defn.id}: T-scores must not decrease as the raw sum rises")
    frac = _param(defn, "min_answered_fraction", (int, float))
    if not 0 < frac <= 1:
        raise DefinitionError(f"{defn.id}: min_answered_fraction must be in (0, 1]")


def _promis_score(defn: InstrumentDefinition, values: Values) -> ScoreResult:
    n_total = len(values)
    answered = _ints(values)
    frac: float = defn.scoring.params["min_answered_fraction"]
    if not answered or len(answered) < frac * n_total:
        return _unscored(
            defn, values, f"{len(answered)} of {n_total} items answered; at least {frac:.0%} needed"
        )
    raw = sum(answered)
    # Proration: raw x total / answered, rounded UP (integer ceiling, exact).
    raw_used = -(-raw * n_total // len(answered))
    row = _promis_table(defn)[raw_used]
    se = row.get("se")
    extras: dict[str, JSONValue] = {
        "raw": raw,
        "raw_used": raw_used,
        "prorated": len(answered) < n_total,
        "t_score": float(row["t"]),
        "se": None if se is None else float(se),
    }
    return _result(defn, values, float(row["t"]), defn.band_for(float(row["t"])), extras)


# --- Keele STarT Back ------------------------------------------------------------------------


def _startback_check(defn: InstrumentDefinition) -> None:
    p = defn.scoring.params
    ids = set(defn.item_ids)
    both = _param(defn, "bothersomeness_item", str)
    sub = _param(defn, "psychosocial_items", list)
    if both not in ids or not set(sub) <= ids or both not in sub:
        raise DefinitionError(f"{defn.id}: startback items in params must be item ids")
    for it in defn.items:
        expected = list(range(5)) if it.id == both else [0, 1]
        if list(it.codes) != expected:
            raise DefinitionError(f"{defn.id}: item {it.id!r} must have codes {expected}")
    for name in ("bothersomeness_positive_at", "low_max_total", "high_min_subscale"):
        _param(defn, name, int)
    if p["high_min_subscale"] <= 0 or p["low_max_total"] < 0:
        raise DefinitionError(f"{defn.id}: startback thresholds out of range")


def _startback_score(defn: InstrumentDefinition, values: Values) -> ScoreResult:
    p = defn.scoring.params
    missing = _missing_count(values)
    if missing:
        return _unscored(defn, values, f"{missing} of {len(values)} items unanswered; none allowed")
    positive = {
        item_id: (_code_int(v) >= p["bothersomeness_positive_at"])
        if item_id == p["bothersomeness_item"]
        else v == 1
        for item_id, v in zip(defn.item_ids, values, strict=True)
    }
    total = sum(positive.values())
    subscale = sum(positive[i] for i in p["psychosocial_items"])
    # Order matters only in principle: total <= 3 implies subscale <= 3, so low and high
    # can never both hold.
    if total <= p["low_max_total"]:
        risk = "low"
    elif subscale >= p["high_min_subscale"]:
        risk = "high"
    else:
        risk = "medium"
    return _result(defn, values, float(total), risk, {"psychosocial_subscale": subscale})


# --- categorical own items (GRC, satisfaction, work status) ----------------------------------


def _categorical_check(defn: InstrumentDefinition) -> None:
    if len(defn.items) != 1:
        raise DefinitionError(f"{defn.id}: categorical needs exactly one item")
    _param(defn, "scored", bool)
    codes = list(defn.items[0].codes)
    if defn.scoring.params["scored"] and not all(isinstance(c, int) for c in codes):
        raise DefinitionError(f"{defn.id}: a scored categorical item needs integer codes")
    groups: Mapping[str, list[Any]] = defn.scoring.params.get("groups") or {}
    grouped = [c for members in groups.values() for c in members]
    if groups and sorted(map(str, grouped)) != sorted(map(str, codes)):
        raise DefinitionError(f"{defn.id}: groups must list every option code exactly once")


def _categorical_score(defn: InstrumentDefinition, values: Values) -> ScoreResult:
    (value,) = values
    if value is None:
        return _unscored(defn, values, "item not answered")
    option = defn.items[0].option(_code(value))
    groups: Mapping[str, list[Any]] = defn.scoring.params.get("groups") or {}
    band = next((g for g, members in groups.items() if value in members), None)
    score = float(value) if defn.scoring.params["scored"] else None
    return _result(defn, values, score, band, {"category": option.key or str(option.code)})


# --- opioid use (MME/day) --------------------------------------------------------------------

_OPIOID_ITEMS = ("current_use", "opioid", "daily_dose")


def _opioid_check(defn: InstrumentDefinition) -> None:
    if defn.item_ids != _OPIOID_ITEMS:
        raise DefinitionError(f"{defn.id}: opioid_use needs items {_OPIOID_ITEMS} in that order")


def _opioid_score(defn: InstrumentDefinition, values: Values) -> ScoreResult:
    use, drug, dose = values
    extras: dict[str, JSONValue] = {
        "opioid": None if drug is None else str(drug),
        "daily_dose": dose,
    }
    if use is None:
        return _unscored(defn, values, "current opioid use not answered", **extras)
    if use == 0:
        if drug is not None or dose is not None:
            raise InvalidAnswerError(
                f"{defn.id}: an opioid or dose was given but current_use is 0 (no); "
                "leave them empty or answer current_use 1 (yes)"
            )
        return _result(defn, values, 0.0, "no_opioid", extras)
    if drug is None or dose is None or drug == "other":
        reason = (
            "opioid is 'other' (no CDC factor)" if drug == "other" else "opioid or dose missing"
        )
        return _result(defn, values, None, "opioid", {**extras, "unscored_reason": reason})
    score = mme.mme_per_day(str(drug), float(dose))
    return _result(
        defn,
        values,
        score,
        "opioid",
        {**extras, "dose_unit": mme.opioid_factor(str(drug)).dose_unit},
    )


# --- adverse-event tickler -------------------------------------------------------------------


def _tickler_check(defn: InstrumentDefinition) -> None:
    _require_codes(defn, (0, 1))
    urgent = _param(defn, "urgent_items", list)
    if not set(urgent) <= set(defn.item_ids):
        raise DefinitionError(f"{defn.id}: urgent_items must be item ids")


def _tickler_score(defn: InstrumentDefinition, values: Values) -> ScoreResult:
    urgent_ids: list[str] = defn.scoring.params["urgent_items"]
    positive = [i for i, v in zip(defn.item_ids, values, strict=True) if v == 1]
    urgent = [i for i in positive if i in urgent_ids]
    missing = _missing_count(values)
    # A "yes" is escalated even when other answers are missing: never hide a reported problem.
    if urgent:
        band = "urgent"
    elif positive:
        band = "escalate"
    elif missing:
        band = "incomplete"
    else:
        band = "clear"
    score = None if missing else float(len(positive))
    extras: dict[str, JSONValue] = {"positive_items": positive, "urgent_items": urgent}
    if missing:
        extras["unscored_reason"] = f"{missing} of {len(values)} questions unanswered"
    return _result(defn, values, score, band, extras)


# --- mean of the rated items (PSFS) ----------------------------------------------------------


def _mean_check(defn: InstrumentDefinition) -> None:
    codes = defn.items[0].codes if defn.items else ()
    if not codes or not all(isinstance(c, int) for c in codes):
        raise DefinitionError(f"{defn.id}: mean_of_answered needs integer-coded items")
    _require_codes(defn, [int(c) for c in codes])
    if not 1 <= _param(defn, "min_answered", int) <= len(defn.items):
        raise DefinitionError(f"{defn.id}: min_answered must be in 1..{len(defn.items)}")
    if _param(defn, "decimals", int) < 0:
        raise DefinitionError(f"{defn.id}: decimals must be >= 0")
    if _param(defn, "mcid_points", (int, float)) <= 0:
        raise DefinitionError(f"{defn.id}: mcid_points must be > 0")


def _mean_score(defn: InstrumentDefinition, values: Values) -> ScoreResult:
    """Mean of the answered items, rounded half-up exactly; unanswered items are left out.

    PSFS (Stratford 1995): the score is the average of the activities the patient rated, so an
    activity not rated is neither 0 nor 10, it is simply not in the mean.
    """
    p = defn.scoring.params
    answered = _ints(values)
    if len(answered) < p["min_answered"]:
        return _unscored(
            defn,
            values,
            f"{len(answered)} of {len(values)} items rated; at least {p['min_answered']} needed",
        )
    score = round_half_up_ratio(sum(answered), len(answered), p["decimals"])
    return _result(defn, values, score, defn.band_for(score), {"raw": sum(answered)})


METHODS: dict[str, Method] = {
    "single_value": Method(_single_check, _single_score),
    "odi_percentage": Method(_odi_check, _odi_score),
    "count_yes": Method(_count_yes_check, _count_yes_score),
    "promis_lookup": Method(_promis_check, _promis_score),
    "startback": Method(_startback_check, _startback_score),
    "categorical": Method(_categorical_check, _categorical_score),
    "opioid_use": Method(_opioid_check, _opioid_score),
    "ae_tickler": Method(_tickler_check, _tickler_score),
    "mean_of_answered": Method(_mean_check, _mean_score),
}
