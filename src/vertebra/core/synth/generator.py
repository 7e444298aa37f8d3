"""Cohort assembly: clinics, then patients in fixed-size chunks, each chunk fully vectorised.

Reproducibility contract: the output is a pure function of (n_patients, seed, today,
n_clinics, include_stories, priors version, generator version). Each chunk of CHUNK_SIZE
patients draws from its own generator seeded with (seed, chunk index, stream), so streaming
the cohort chunk by chunk (for a million patients) gives exactly the rows of the in-memory
cohort, and adding a draw to one stream does not shift the others.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from vertebra.core.synth import activity as act
from vertebra.core.synth import cost as synth_cost
from vertebra.core.synth import events as ev
from vertebra.core.synth import names, outcomes, stories
from vertebra.core.synth._frames import categorical
from vertebra.core.synth._num import IntArray
from vertebra.core.synth._scoring import STARTBACK_GROUPS
from vertebra.core.synth.clinics import Clinics, default_n_clinics, make_clinics
from vertebra.core.synth.constants import (
    ARMS,
    CONDITIONS,
    EVENT_TYPES,
    LEVELS,
    RELATEDNESS,
    SEXES,
    STARTBACK_ITEM_COLUMNS,
    STORIES,
)
from vertebra.core.synth.patients import Traits, cell_arm_mask, make_traits
from vertebra.core.synth.priors import Priors, load_priors

GENERATOR_VERSION = "1.1.0"  # 1.1.0: episode cost (patients.cost_*); work status and PSFS
#: Patients per chunk; part of the reproducibility contract (changing it changes the output).
CHUNK_SIZE = 100_000

# Independent random streams inside a chunk.
_STREAM_PATIENTS, _STREAM_EVENTS, _STREAM_OUTCOMES, _STREAM_NAMES = 1, 2, 3, 4
_STREAM_COST = 5  # episode cost and coverage (issue 18): its own stream, so no other shifts
_STREAM_ACTIVITY = 6  # work status and PSFS (added in 1.1.0; the other streams are unchanged)
_CLINIC_CHUNK = -1  # pseudo chunk index of the clinics' stream


@dataclass(frozen=True, slots=True)
class Cohort:
    """A synthetic cohort (or one chunk of it) as pandas DataFrames plus its metadata.

    clinics: one row per clinic. patients: one row per patient. timepoints: one row per patient
    x time point (analysis-ready). events: one row per adverse event, subsequent surgery or
    repeat injection. meta: seed, n_patients, versions, today (JSON-serialisable).
    """

    clinics: pd.DataFrame
    patients: pd.DataFrame
    timepoints: pd.DataFrame
    events: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The four tables by name."""
        return {
            "clinics": self.clinics,
            "patients": self.patients,
            "timepoints": self.timepoints,
            "events": self.events,
        }


def _check_args(n_patients: int, seed: int, today: date, n_clinics: int | None) -> None:
    """Raise ValueError/TypeError for arguments the generator cannot honour."""
    if isinstance(n_patients, bool) or not isinstance(n_patients, int) or n_patients < 1:
        raise ValueError(f"n_patients must be a whole number >= 1, got {n_patients!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if not isinstance(today, date):
        raise TypeError(f"today must be a datetime.date, got {today!r}")
    if n_clinics is not None and (not isinstance(n_clinics, int) or n_clinics < 1):
        raise ValueError(f"n_clinics must be a whole number >= 1, got {n_clinics!r}")


def _rng(seed: int, chunk: int, stream: int) -> np.random.Generator:
    """The generator of one stream of one chunk (independent of every other)."""
    return np.random.default_rng([seed, chunk + 1, stream])


def iter_cohort(
    n_patients: int,
    seed: int,
    *,
    today: date,
    n_clinics: int | None = None,
    include_stories: bool = True,
) -> Iterator[Cohort]:
    """Yield the cohort in chunks of CHUNK_SIZE patients (every chunk carries all clinics).

    Concatenating the chunks' tables gives `generate_cohort` with the same arguments. Memory
    stays bounded by one chunk, so this is the path for very large cohorts.
    """
    _check_args(n_patients, seed, today, n_clinics)
    priors = load_priors()
    n_c = n_clinics if n_clinics is not None else default_n_clinics(n_patients)
    clinics = make_clinics(n_c, _rng(seed, _CLINIC_CHUNK, 0), priors)
    meta = cohort_meta(n_patients, seed, today, n_c, include_stories, priors)
    next_event_id = 1
    for chunk, start in enumerate(range(0, n_patients, CHUNK_SIZE)):
        ids = np.arange(start + 1, min(n_patients, start + CHUNK_SIZE) + 1, dtype=np.int64)
        part = _chunk(ids, seed, chunk, today, clinics, priors, include_stories and chunk == 0)
        events = part.events
        events["event_id"] = np.arange(next_event_id, next_event_id + len(events), dtype=np.int64)
        next_event_id += len(events)
        yield replace(part, meta=meta)


def generate_cohort(
    n_patients: int,
    seed: int,
    *,
    today: date,
    n_clinics: int | None = None,
    include_stories: bool = True,
) -> Cohort:
    """Generate a seeded, reproducible synthetic cohort of `n_patients` patients.

    `today` fixes which follow-ups are completed, due, overdue or not yet due (no clock is
    read). `n_clinics` defaults to 3 for demo sizes and grows with n (one per ~2,000 patients,
    at most 500). With `include_stories` the three named example patients are ids 1-3.
    Raises ValueError for n_patients < 1, a negative seed or n_clinics < 1.
    """
    parts = list(
        iter_cohort(
            n_patients, seed, today=today, n_clinics=n_clinics, include_stories=include_stories
        )
    )
    if len(parts) == 1:
        return parts[0]
    return Cohort(
        clinics=parts[0].clinics,
        patients=pd.concat([p.patients for p in parts], ignore_index=True),
        timepoints=pd.concat([p.timepoints for p in parts], ignore_index=True),
        events=pd.concat([p.events for p in parts], ignore_index=True),
        meta=parts[0].meta,
    )


def cohort_meta(
    n_patients: int, seed: int, today: date, n_clinics: int, include_stories: bool, priors: Priors
) -> dict[str, Any]:
    """The metadata written next to the tables (everything needed to reproduce them)."""
    return {
        "generator": "vertebra.core.synth",
        "generator_version": GENERATOR_VERSION,
        "priors_version": priors.version,
        "seed": seed,
        "n_patients": n_patients,
        "n_clinics": n_clinics,
        "today": today.isoformat(),
        "include_stories": include_stories,
        "chunk_size": CHUNK_SIZE,
        "synthetic": True,
    }


def _chunk(
    ids: IntArray,
    seed: int,
    chunk: int,
    today: date,
    clinics: Clinics,
    priors: Priors,
    with_stories: bool,
) -> Cohort:
    """Generate one chunk of patients with their time points and events."""
    traits = make_traits(ids, _rng(seed, chunk, _STREAM_PATIENTS), priors, clinics, today)
    k = (
        stories.apply_traits(
            traits, today, len(clinics.share), list(priors["opioids"]["drug_weights"])
        )
        if with_stories
        else 0
    )
    rng_ev = _rng(seed, chunk, _STREAM_EVENTS)
    conv, procedure = ev.conversion_months(rng_ev, priors, traits)
    conv[:k] = np.inf  # the stories have had no further surgery
    rows = ev.EventRows.concat(
        [
            ev.surgery_rows(conv, procedure),
            ev.repeat_injection_rows(rng_ev, priors, traits),
            ev.adverse_event_rows(rng_ev, priors, traits),
        ]
    )
    rows = _story_events(rows, k)
    death = ev.death_dates(rows, traits.treatment_date, len(ids))
    rng_out = _rng(seed, chunk, _STREAM_OUTCOMES)
    schedule = outcomes.build_schedule(traits.treatment_date)
    done, response = outcomes.completion(rng_out, priors, traits, clinics, schedule, death, today)
    # A conversion changes only the answers at time points after it (see relative_improvement);
    # a conversion dated after `today` is not emitted as an event and no answer after today exists.
    rel = outcomes.relative_improvement(rng_out, priors, traits, schedule.months, conv)
    ans = outcomes.answers(rng_out, priors, traits, schedule.months, rel, done, conv)
    if k:
        arrays = {
            "odi_items": ans.odi_items,
            "pf_items": ans.pf_items,
            "pi_items": ans.pi_items,
            "nrs_back": ans.nrs_back,
            "nrs_leg": ans.nrs_leg,
            "opioid_use": ans.opioid_use,
            "opioid_mme": ans.opioid_mme,
        }
        stories.apply_answers(k, done, response, schedule.target, today, arrays)
    rng_act = _rng(seed, chunk, _STREAM_ACTIVITY)
    wa = act.work_and_activity(rng_act, priors, traits, schedule.months, rel, done)
    phrases = activity_phrases(priors)
    if k:
        index = {p: j for j, p in enumerate(phrases)}
        stories.apply_activity(k, done, wa.work, wa.psfs, wa.activity, index)
    timepoints = outcomes.timepoints_frame(traits, schedule, done, response, ans, today)
    timepoints = outcomes.with_work_and_activity(timepoints, wa)
    pending = int(priors["adverse_events"]["pending_days"])
    events = ev.events_frame(rows, traits, death, today, pending, first_event_id=1)
    patients = patients_frame(traits, _rng(seed, chunk, _STREAM_NAMES), k, priors)
    status = clinics.frame["regulatory_status"].cat.codes.to_numpy().astype(np.int64)
    costs = synth_cost.episode_costs(
        _rng(seed, chunk, _STREAM_COST), priors, traits.arm, status[traits.clinic]
    )
    patients["cost_price"] = costs.price
    patients["cost_patient_paid"] = costs.patient_paid
    # Codes in the tables are lower case, as in the registry's tables ("usd"; de-identified
    # text cells must be codes); the loader stores the ISO form ("USD") on the episode.
    currency = pd.Series(costs.currency.lower(), index=patients.index, dtype="string")
    patients["cost_currency"] = currency.mask(np.isnan(costs.price))
    patients["cost_billed_to"] = categorical(costs.billed_to, synth_cost.BILLED_TO)
    for j in range(act.MAX_ACTIVITIES):
        patients[f"psfs_activity_{j + 1}"] = categorical(wa.activity[:, j], phrases)
    return Cohort(clinics=clinics.frame, patients=patients, timepoints=timepoints, events=events)


def activity_phrases(priors: Priors) -> list[str]:
    """PSFS activity phrases (category order): the priors' list, then the stories' own words."""
    pool = act.phrases(priors)
    return [*pool, *(a for a in dict.fromkeys(stories.STORY_ACTIVITIES) if a not in pool)]


def _story_events(rows: ev.EventRows, k: int) -> ev.EventRows:
    """Replace the random events of story patients (index < k) with their fixed ones."""
    if not k:
        return rows
    keep = rows.patient_index >= k
    fixed = [(i, e) for i, s in enumerate(stories.STORIES[:k]) for e in s.adverse_events]
    story_rows = ev.EventRows(
        patient_index=np.array([i for i, _ in fixed], dtype=np.int64),
        event_type=np.full(len(fixed), EVENT_TYPES.index("adverse_event")),
        day=np.array([e[3] for _, e in fixed], dtype=np.int64),
        term=np.array([e[0] for _, e in fixed], dtype=object),
        grade=np.array([e[1] for _, e in fixed], dtype=np.int64),
        relatedness=np.array([RELATEDNESS.index(e[2]) for _, e in fixed], dtype=np.int64),
        expected=np.ones(len(fixed), dtype=bool),
    )
    kept = ev.EventRows(*(getattr(rows, f.name)[keep] for f in fields(ev.EventRows)))
    return ev.EventRows.concat([story_rows, kept])


def patients_frame(
    traits: Traits, rng: np.random.Generator, k: int, priors: Priors
) -> pd.DataFrame:
    """The public patients table (identified: synthetic names and example.org e-mails)."""
    n = len(traits.patient_id)
    first, last, email = _names(traits, rng, k)
    drugs = list(priors["opioids"]["drug_weights"])
    icd_codes = sorted(
        {str(c) for c in priors["icd10"].values() if isinstance(c, dict) for c in c.values()}
    )
    occupations = [*priors["occupations"]["working"], "retired"]
    story = np.full(n, None, dtype=object)
    story[:k] = STORIES[:k]
    is_cell = cell_arm_mask(traits.arm)
    arm_names = np.array(ARMS, dtype=object)[traits.arm]
    source = np.select(
        [np.char.startswith(arm_names.astype(str), p) for p in ("bmac", "adipose", "allogeneic")],
        [0, 1, 2],
        default=-1,
    )
    prp = np.char.endswith(arm_names.astype(str), "_prp")
    cols: dict[str, object] = {
        "patient_id": traits.patient_id,
        "clinic_id": (traits.clinic + 1).astype(np.int32),
        "first_name": first,
        "last_name": last,
        "email": email,
        "story": pd.array(story, dtype="string"),
        "age": traits.age.astype(np.int16),
        "sex": categorical(traits.male.astype(np.int64), SEXES),
        "occupation": pd.Categorical(traits.occupation, categories=occupations),
        "condition": categorical(traits.condition, CONDITIONS),
        "icd10": pd.Categorical(traits.icd10, categories=icd_codes),
        "level": categorical(traits.level, LEVELS),
        "pfirrmann_grade": traits.pfirrmann.astype(np.int8),
        "modic_type": traits.modic.astype(np.int8),
        "disc_height_pct": traits.disc_height,
        "pain_duration_months": traits.duration.astype(np.int16),
    }
    for j, name in enumerate(STARTBACK_ITEM_COLUMNS):
        cols[name] = traits.startback[:, j].astype(np.int8)
    cols["startback_total"] = traits.startback_total.astype(np.int8)
    cols["startback_risk"] = categorical(traits.startback_risk, STARTBACK_GROUPS)
    no_opioid = ~traits.opioid_use
    cols["opioid_use_baseline"] = traits.opioid_use
    cols["opioid_drug"] = categorical(np.where(no_opioid, -1, traits.opioid_drug), drugs)
    cols["opioid_dose_mg_day"] = np.where(no_opioid, np.nan, traits.opioid_dose)
    cols["opioid_mme_baseline"] = np.where(no_opioid, 0.0, traits.opioid_mme)
    cols["prior_medication"] = traits.prior_medication
    cols["prior_physical_therapy"] = traits.prior_pt
    cols["prior_steroid_injection"] = traits.prior_steroid
    cols["prior_steroid_relief_weeks"] = traits.prior_steroid_relief_weeks
    cols["prior_surgery_same_level"] = traits.prior_surgery
    cols["goal_avoid_surgery"] = traits.goal_avoid_surgery
    cols["arm"] = categorical(traits.arm, ARMS)
    cols["cell_source"] = categorical(source, ("bone_marrow", "adipose", "allogeneic"))
    cols["adjunct"] = categorical(np.where(prp, 0, -1), ("prp",))
    cols["treatment_date"] = traits.treatment_date.astype("datetime64[s]")
    cols["tnc_e6_per_ml"] = traits.tnc
    cols["cfu_f_per_ml"] = traits.cfu_f
    cols["viability_pct"] = traits.viability
    cols["cell_dose_e6"] = np.where(is_cell, traits.cell_dose, np.nan)
    return pd.DataFrame(cols)


def _names(
    traits: Traits, rng: np.random.Generator, k: int
) -> tuple[pd.Categorical, pd.Categorical, np.ndarray]:
    """Synthetic first/last names (by sex) and unique e-mails first.last.<id>@example.org."""
    n = len(traits.patient_id)
    firsts = sorted(
        set(names.FEMALE_FIRST) | set(names.MALE_FIRST) | {s.first_name for s in stories.STORIES}
    )
    lasts = sorted(set(names.LAST) | {s.last_name for s in stories.STORIES})
    f_idx = np.array([firsts.index(x) for x in names.FEMALE_FIRST])
    m_idx = np.array([firsts.index(x) for x in names.MALE_FIRST])
    first_code = np.where(
        traits.male, m_idx[rng.integers(0, len(m_idx), n)], f_idx[rng.integers(0, len(f_idx), n)]
    )
    last_code = rng.integers(0, len(names.LAST), n)
    last_code = np.array([lasts.index(x) for x in names.LAST])[last_code]
    for i, s in enumerate(stories.STORIES[:k]):
        first_code[i] = firsts.index(s.first_name)
        last_code[i] = lasts.index(s.last_name)
    first_lc = np.array([_ascii(x) for x in firsts])
    last_lc = np.array([_ascii(x) for x in lasts])
    local = np.char.add(np.char.add(first_lc[first_code], "."), last_lc[last_code])
    ids = traits.patient_id.astype(str)
    email = np.char.add(np.char.add(np.char.add(local, "."), ids), "@" + names.EMAIL_DOMAIN)
    email = email.astype(object)
    email[:k] = [
        f"{_ascii(s.first_name)}.{_ascii(s.last_name)}@{names.EMAIL_DOMAIN}"
        for s in stories.STORIES[:k]
    ]
    return (
        categorical(first_code, firsts),
        categorical(last_code, lasts),
        email,
    )


def _ascii(name: str) -> str:
    """Lower-case ASCII form of a name for e-mail local parts ('Müller' -> 'muller')."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
