"""The three named example patients, present in every cohort generated with stories.

Their traits and follow-up answers are fixed here (relative to `today`), so a demo always shows
the same three people; their trajectories are modest and realistic, not miracles. They take
patient ids 1-3, ahead of the random patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from vertebra.core.mme import mme_per_day
from vertebra.core.schedule import add_months
from vertebra.core.synth._num import BoolArray, DateArray, FloatArray
from vertebra.core.synth._scoring import startback_groups
from vertebra.core.synth.constants import ARMS, CONDITIONS, LEVELS
from vertebra.core.synth.patients import Traits

#: Order in which ODI sections take the remainder when a section sum is spread over items.
_ODI_FILL_ORDER = (0, 2, 5, 4, 8, 9, 3, 6, 7, 1)


@dataclass(frozen=True, slots=True)
class Story:
    """One named patient: traits plus the answers at each time point (None = not answered)."""

    key: str
    first_name: str
    last_name: str
    age: int
    male: bool
    occupation: str
    condition: str
    icd10: str
    level: str
    pfirrmann: int
    modic: int
    disc_height: float
    duration_months: int
    arm: str
    clinic_id: int
    months_ago: int  # treatment date = today - months_ago months - days_ago days
    days_ago: int
    startback: tuple[int, ...]
    opioid: tuple[str, float] | None  # (drug, mg/day) at baseline
    prior_steroid_relief_weeks: float | None
    goal_avoid_surgery: bool
    processing: tuple[float, float, float, float]  # tnc, cfu_f, viability, dose (NaN = n/a)
    # Per time point (baseline, 6 wk, 3, 6, 12, 24 mo): ODI index (even), NRS back, NRS leg,
    # PROMIS PF raw, PROMIS PI raw, opioid use. None = not answered.
    odi: tuple[int | None, ...]
    nrs_back: tuple[int | None, ...]
    nrs_leg: tuple[int | None, ...]
    pf_raw: tuple[int | None, ...]
    pi_raw: tuple[int | None, ...]
    opioid_use: tuple[bool | None, ...]
    adverse_events: tuple[tuple[str, int, str, int], ...]  # (term, grade, relatedness, day)
    # PSFS: the activities named at baseline in the patient's own words, and their 0-10 ratings
    # at each time point (None = not answered); work status (work_status.yaml code) likewise.
    activities: tuple[str, ...] = ()
    psfs: tuple[tuple[int, ...] | None, ...] = ()
    work_status: tuple[int | None, ...] = ()

    def treatment_date(self, today: date) -> date:
        """The treatment date relative to `today`."""
        return add_months(today, -self.months_ago) - timedelta(days=self.days_ago)


NAN = float("nan")

STORIES: tuple[Story, ...] = (
    Story(
        key="office_worker",
        first_name="Anna",
        last_name="Whitfield",
        age=52,
        male=False,
        occupation="office_worker",
        condition="degenerative_disc_disease",
        icd10="M51.360",
        level="L4-L5",
        pfirrmann=4,
        modic=0,
        disc_height=71.0,
        duration_months=38,
        arm="bmac",
        clinic_id=2,
        months_ago=13,
        days_ago=5,
        startback=(0, 1, 1, 0, 1, 0, 0, 0, 2),
        opioid=("tramadol", 100.0),
        # Two steroid injections gave only temporary relief.
        prior_steroid_relief_weeks=6.0,
        goal_avoid_surgery=True,
        processing=(118.0, 2450.0, 93.1, 236.0),
        odi=(46, 40, 36, 34, 34, None),
        nrs_back=(7, 5, 4, 4, 4, None),
        nrs_leg=(2, 2, 1, 1, 1, None),
        pf_raw=(11, 12, 13, 13, 13, None),
        pi_raw=(14, 12, 11, 11, 11, None),
        opioid_use=(True, True, True, False, False, None),
        adverse_events=(("harvest_site_pain", 1, "harvest", 0),),
        # She wants to walk longer distances again: modest gains, +2 points only by 12 months.
        activities=(
            "walking for more than 20 minutes",
            "sitting through a working day at my desk",
            "carrying the shopping home",
        ),
        psfs=((3, 5, 7), (4, 5, 7), (5, 6, 7), (5, 6, 8), (6, 7, 8), None),
        # On sick leave at baseline; back on reduced hours at 3 months, full time from 6 months.
        work_status=(4, 4, 3, 1, 1, None),
    ),
    Story(
        key="fitness_enthusiast",
        first_name="Marco",
        last_name="Lindqvist",
        age=47,
        male=True,
        occupation="fitness_instructor",
        condition="herniated_disc",
        icd10="M51.17",
        level="L5-S1",
        pfirrmann=3,
        modic=0,
        disc_height=84.0,
        duration_months=14,
        arm="adipose_prp",
        clinic_id=1,
        months_ago=26,
        days_ago=0,
        startback=(1, 0, 0, 0, 1, 0, 0, 0, 2),
        opioid=None,
        prior_steroid_relief_weeks=None,
        # He wanted to avoid surgery.
        goal_avoid_surgery=True,
        processing=(31.5, NAN, 94.6, 20.0),
        odi=(38, 32, 26, 24, 26, 28),
        nrs_back=(6, 5, 4, 3, 4, 4),
        nrs_leg=(6, 4, 3, 3, 3, 4),
        pf_raw=(13, 14, 15, 16, 15, 15),
        pi_raw=(13, 12, 10, 9, 10, 10),
        opioid_use=(False, False, False, False, False, False),
        adverse_events=(("post_procedure_pain", 1, "procedure", 1),),
        # Back to light workouts within months; running and teaching classes stay harder.
        activities=(
            "a light gym workout",
            "teaching my spin class",
            "running for 10 minutes",
        ),
        psfs=((2, 3, 1), (3, 4, 1), (5, 5, 2), (6, 6, 3), (5, 6, 3), (5, 6, 3)),
        # Working lighter duties (no classes) until 6 months, then usual duties again.
        work_status=(3, 3, 3, 1, 1, 1),
    ),
    Story(
        key="retired_teacher",
        first_name="Ruth",
        last_name="Okonkwo",
        age=60,
        male=False,
        occupation="retired",
        condition="sciatica",
        icd10="M54.31",
        level="L4-L5",
        pfirrmann=3,
        modic=1,
        disc_height=78.0,
        duration_months=50,
        arm="allogeneic",
        clinic_id=1,
        # Treated 6 months and 10 days ago: her 6-month questionnaire is overdue today.
        months_ago=6,
        days_ago=10,
        startback=(1, 1, 1, 0, 1, 1, 0, 0, 3),
        opioid=("codeine", 120.0),
        prior_steroid_relief_weeks=None,
        goal_avoid_surgery=False,
        processing=(NAN, NAN, 91.0, 9.0),
        odi=(52, 48, 44, None, None, None),
        nrs_back=(7, 6, 6, None, None, None),
        nrs_leg=(7, 6, 5, None, None, None),
        pf_raw=(10, 11, 11, None, None, None),
        pi_raw=(15, 14, 13, None, None, None),
        opioid_use=(True, True, True, None, None, None),
        adverse_events=(("post_procedure_pain", 1, "procedure", 1),),
        # Her daily walks matter most; a small gain so far, no MCID yet.
        activities=(
            "my daily walk to the park",
            "gardening",
            "playing on the floor with my grandchildren",
        ),
        psfs=((3, 2, 4), (3, 2, 4), (4, 3, 5), None, None, None),
        # Retired: not in paid work, so not in the return-to-work denominator.
        work_status=(6, 6, 6, None, None, None),
    ),
)

#: Activity phrases the stories use that the priors' list may not hold (categories order).
STORY_ACTIVITIES: tuple[str, ...] = tuple(a for s in STORIES for a in s.activities)


def apply_traits(traits: Traits, today: date, n_clinics: int, drugs: list[str]) -> int:
    """Overwrite patients 0..k-1 of the first chunk with the stories; returns k (<= 3).

    `drugs` is the opioid list of the priors (the code order of `opioid_drug`).
    """
    k = min(len(STORIES), len(traits.patient_id))
    for i, s in enumerate(STORIES[:k]):
        traits.age[i] = s.age
        traits.male[i] = s.male
        traits.occupation[i] = s.occupation
        traits.condition[i] = CONDITIONS.index(s.condition)
        traits.icd10[i] = s.icd10
        traits.level[i] = LEVELS.index(s.level)
        traits.pfirrmann[i] = s.pfirrmann
        traits.modic[i] = s.modic
        traits.disc_height[i] = s.disc_height
        traits.duration[i] = s.duration_months
        traits.arm[i] = ARMS.index(s.arm)
        traits.clinic[i] = min(s.clinic_id, n_clinics) - 1
        traits.treatment_date[i] = np.datetime64(s.treatment_date(today), "D")
        traits.startback[i] = s.startback
        traits.tnc[i], traits.cfu_f[i], traits.viability[i], traits.cell_dose[i] = s.processing
        traits.prior_steroid[i] = s.prior_steroid_relief_weeks is not None
        traits.prior_steroid_relief_weeks[i] = s.prior_steroid_relief_weeks or np.nan
        traits.goal_avoid_surgery[i] = s.goal_avoid_surgery
        traits.opioid_use[i] = s.opioid is not None
        if s.opioid is not None:
            traits.opioid_drug[i] = drugs.index(s.opioid[0])
            traits.opioid_dose[i] = s.opioid[1]
            traits.opioid_mme[i] = round(mme_per_day(*s.opioid), 2)
        traits.response_z[i] = 0.0
    totals, groups = startback_groups(traits.startback[:k])
    traits.startback_total[:k] = totals
    traits.startback_risk[:k] = groups
    return k


def odi_items_for(score: int) -> list[int]:
    """Ten section answers (0-5) whose ODI index is `score` (an even number 0-100)."""
    total = score // 2
    items = [total // 10] * 10
    for j in _ODI_FILL_ORDER[: total % 10]:
        items[j] += 1
    return items


def promis_items_for(raw: int) -> list[int]:
    """Four item answers (1-5) summing to `raw` (4-20)."""
    rest = raw - 4
    items = [1 + rest // 4] * 4
    for j in range(rest % 4):
        items[j] += 1
    return items


def apply_answers(
    k: int,
    done: BoolArray,
    response: DateArray,
    target: DateArray,
    today: date,
    arrays: dict[str, FloatArray],
) -> None:
    """Overwrite the stories' answers (rows 0..k-1) with their fixed trajectories.

    A time point is answered when the story gives a value and its response date (3 days
    before treatment at baseline, else target + 2 days) is not after `today`. `arrays` holds odi_items, pf_items, pi_items (n x T x m) and
    nrs_back, nrs_leg, opioid_use, opioid_mme (n x T); all edited in place.
    """
    today64 = np.datetime64(today, "D")
    for i, s in enumerate(STORIES[:k]):
        for t in range(done.shape[1]):
            # Baseline is answered before treatment (its window closes on the treatment day).
            when = target[i, t] + np.timedelta64(-3 if t == 0 else 2, "D")
            ok = s.odi[t] is not None and when <= today64
            done[i, t] = ok
            response[i, t] = when
            if not ok:
                for arr in arrays.values():
                    arr[i, t] = np.nan
                continue
            arrays["odi_items"][i, t] = odi_items_for(int(s.odi[t] or 0))
            arrays["pf_items"][i, t] = promis_items_for(int(s.pf_raw[t] or 4))
            arrays["pi_items"][i, t] = promis_items_for(int(s.pi_raw[t] or 4))
            arrays["nrs_back"][i, t] = s.nrs_back[t]
            arrays["nrs_leg"][i, t] = s.nrs_leg[t]
            use = bool(s.opioid_use[t])
            arrays["opioid_use"][i, t] = float(use)
            arrays["opioid_mme"][i, t] = mme_per_day(*s.opioid) if use and s.opioid else 0.0


def apply_activity(
    k: int, done: BoolArray, work: FloatArray, psfs: FloatArray, activity: np.ndarray,
    phrase_index: dict[str, int],
) -> None:  # fmt: skip
    """Overwrite the stories' work status, PSFS ratings and activities (rows 0..k-1) in place.

    Call after `apply_answers` (which decides `done`). `phrase_index` maps a phrase to its code.
    """
    for i, s in enumerate(STORIES[:k]):
        activity[i] = -1
        for j, phrase in enumerate(s.activities):
            activity[i, j] = phrase_index[phrase]
        psfs[i] = np.nan
        work[i] = np.nan
        for t in range(done.shape[1]):
            ratings = s.psfs[t] if t < len(s.psfs) else None
            if not done[i, t]:
                continue
            if ratings is not None:
                psfs[i, t, : len(ratings)] = ratings
            status = s.work_status[t] if t < len(s.work_status) else None
            if status is not None:
                work[i, t] = status
