"""Synthetic cost and coverage of each patient's index episode (priors ``cost``; issue 18).

Price: lognormal per arm group whose central 90 % spans the ``[low, high]`` range cited in
``data/learn/cost.yaml`` (unverified figures). Payer: drawn per arm group; cell therapy at a
registered-trial clinic is trial-funded. Out of pocket: all of a self-paid price, a beta share
of an insured one, nothing in a trial. A share of episodes has no cost recorded (NaN / "").
Deterministic: one random stream of its own (see generator._STREAM_COST).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vertebra.core.synth._num import FloatArray, IntArray
from vertebra.core.synth.constants import ARM_GROUP, ARMS, REGULATORY_STATUSES
from vertebra.core.synth.priors import Priors

__all__ = ["BILLED_TO", "EpisodeCosts", "episode_costs"]

#: Payer codes (registry BilledTo), in the order of the priors' shares.
BILLED_TO = ("self_pay", "insurer", "trial", "other")
_Z90 = 1.6448536269514722  # standard normal quantile at 0.95: [low, high] holds 90 %


@dataclass(frozen=True, slots=True)
class EpisodeCosts:
    """Per patient: price and out-of-pocket (NaN: not recorded), payer code index into
    BILLED_TO (-1: not recorded), and the currency (one for the cohort)."""

    price: FloatArray
    patient_paid: FloatArray
    billed_to: IntArray
    currency: str


def episode_costs(
    rng: np.random.Generator, priors: Priors, arm: IntArray, clinic_status: npt.NDArray[np.int64]
) -> EpisodeCosts:
    """Draw the cost of ``len(arm)`` episodes; ``clinic_status`` is each patient's clinic's
    index into REGULATORY_STATUSES."""
    p = priors["cost"]
    n = len(arm)
    group = np.array([ARM_GROUP[a] for a in ARMS], dtype=object)[arm]
    z = rng.standard_normal(n)
    price = np.full(n, np.nan)
    for name, spec in p["price"].items():
        mine = group == name
        low, high = float(spec["low"]), float(spec["high"])
        median, sigma = np.sqrt(low * high), np.log(high / low) / (2 * _Z90)
        step = float(spec.get("round", 1))
        price[mine] = np.round(median * np.exp(sigma * z[mine]) / step) * step
    in_trial = (group == "cell") & (clinic_status == REGULATORY_STATUSES.index("registered_trial"))
    u = rng.random(n)
    billed = np.zeros(n, dtype=np.int64)
    for key, mask in (
        ("cell", (group == "cell") & ~in_trial),
        ("cell_in_trial", in_trial),
        ("conventional", group != "cell"),
    ):
        shares = np.array([float(p["billed_to"][key][b]) for b in BILLED_TO])
        cum = np.cumsum(shares / shares.sum())
        billed[mask] = np.minimum(np.searchsorted(cum, u[mask], side="right"), len(BILLED_TO) - 1)
    oop = p["out_of_pocket"]
    share = np.zeros(n)
    share[billed == BILLED_TO.index("self_pay")] = 1.0
    ins = billed == BILLED_TO.index("insurer")
    share[ins] = rng.beta(oop["insurer_beta"]["a"], oop["insurer_beta"]["b"], n)[ins]
    oth = billed == BILLED_TO.index("other")
    share[oth] = rng.beta(oop["other_beta"]["a"], oop["other_beta"]["b"], n)[oth]
    paid = np.round(price * share, 2)
    missing = rng.random(n) >= float(p["recorded"])
    price[missing] = np.nan
    paid[missing] = np.nan
    billed[missing] = -1
    return EpisodeCosts(price, paid, billed, str(p["currency"]))
