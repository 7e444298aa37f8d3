"""Synthetic clinics: regulatory status, trial registration, size and follow-up performance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vertebra.core.synth import names
from vertebra.core.synth._frames import categorical
from vertebra.core.synth._num import BoolArray, FloatArray, weighted_choice
from vertebra.core.synth.constants import ARMS, CELL_ARMS, REGULATORY_STATUSES
from vertebra.core.synth.priors import Priors


@dataclass(frozen=True, slots=True)
class Clinics:
    """The clinics table plus the arrays the patient generator needs (index = clinic_id - 1)."""

    frame: pd.DataFrame
    share: FloatArray  # probability that a patient belongs to each clinic
    followup_log_odds: FloatArray  # completion log-odds offset of each clinic
    arm_allowed: BoolArray  # n_clinics x len(ARMS): arms the clinic may deliver


def default_n_clinics(n_patients: int) -> int:
    """3 clinics for a demo-sized cohort, growing to at most 500 (one per ~2,000 patients)."""
    return int(min(500, max(3, n_patients // 2000)))


def make_clinics(n_clinics: int, rng: np.random.Generator, priors: Priors) -> Clinics:
    """Generate `n_clinics` clinics; the first four statuses are fixed so demos show each kind."""
    p = priors["clinics"]
    fixed = list(p["fixed_statuses"])[:n_clinics]
    drawn = weighted_choice(rng, p["status_weights"], n_clinics - len(fixed))
    weight_keys = list(p["status_weights"])
    statuses = fixed + [weight_keys[i] for i in drawn]
    status_idx = np.array([REGULATORY_STATUSES.index(s) for s in statuses], dtype=np.int64)
    base_or = np.array([p["followup_odds_ratio"][s] for s in statuses])
    # Clinic-level noise, except for the first three, which keep their status's round figure
    # so the demo's "good" and "poor" follow-up clinics are predictable.
    noise = rng.normal(0.0, p["followup_log_sd"], n_clinics)
    noise[: min(3, n_clinics)] = 0.0
    log_or = np.log(base_or) + noise
    size = rng.lognormal(0.0, p["size_log_sd"], n_clinics)
    allowed = np.ones((n_clinics, len(ARMS)), dtype=bool)
    for c, status in enumerate(statuses):
        for a, arm in enumerate(ARMS):
            if arm in CELL_ARMS:
                allowed[c, a] = arm in p["cell_arms_allowed"][status]
    frame = _clinic_frame(statuses, status_idx, np.exp(log_or), rng)
    return Clinics(
        frame=frame, share=size / size.sum(), followup_log_odds=log_or, arm_allowed=allowed
    )


def _clinic_frame(
    statuses: list[str], status_idx: np.ndarray, odds_ratio: FloatArray, rng: np.random.Generator
) -> pd.DataFrame:
    """The public clinics table. NCT ids are in the unissued NCT09xxxxxx range (synthetic)."""
    n = len(statuses)
    city = rng.integers(0, len(names.CITY), n)
    kind = rng.integers(0, len(names.CLINIC_KIND), n)
    clinic_names = [
        f"{names.CITY[city[i]]} {names.CLINIC_KIND[kind[i]]}" + (f" {i + 1}" if i >= 14 else "")
        for i in range(n)
    ]
    trial = status_idx == REGULATORY_STATUSES.index("registered_trial")
    nct = [f"NCT09{rng.integers(0, 1_000_000):06d}" if t else None for t in trial]
    return pd.DataFrame(
        {
            "clinic_id": np.arange(1, n + 1, dtype=np.int32),
            "name": clinic_names,
            "regulatory_status": categorical(status_idx, REGULATORY_STATUSES),
            "nct_id": pd.array(nct, dtype="string"),
            "irb_approved": trial,
            "ind": trial,
            "followup_odds_ratio": np.round(odds_ratio, 3),
        }
    )
