"""Follow-up time points: schedule, missingness, trajectories and item-level answers.

One row per patient x time point. Answers are generated item by item (ODI sections 0-5,
PROMIS items 1-5, NRS 0-10) and scored by the core scorers, so every stored score is the score
of the stored answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from vertebra.core.schedule import default_protocol
from vertebra.core.synth._frames import categorical
from vertebra.core.synth._num import (
    BoolArray,
    DateArray,
    FloatArray,
    IntArray,
    add_months,
    norm_cdf,
    round_clip,
    sigmoid,
    solve_logit_intercept,
)
from vertebra.core.synth._scoring import odi_scores, promis_t
from vertebra.core.synth.activity import WorkActivity
from vertebra.core.synth.clinics import Clinics
from vertebra.core.synth.constants import (
    ARM_GROUP,
    ARMS,
    ODI_ITEM_COLUMNS,
    PF_ITEM_COLUMNS,
    PI_ITEM_COLUMNS,
    TIMEPOINT_STATUSES,
)
from vertebra.core.synth.patients import Traits
from vertebra.core.synth.priors import Priors


@dataclass(frozen=True, slots=True)
class Schedule:
    """The default protocol's time points as n x T date arrays."""

    ids: tuple[str, ...]
    months: FloatArray  # nominal months of each time point (T,)
    target: DateArray
    opens: DateArray
    closes: DateArray


@dataclass(slots=True)
class Answers:
    """n x T (x items) answer arrays; NaN = not answered."""

    odi_items: FloatArray  # n x T x 10
    nrs_back: FloatArray
    nrs_leg: FloatArray
    pf_items: FloatArray  # n x T x 4
    pi_items: FloatArray  # n x T x 4
    opioid_use: FloatArray  # 1/0, NaN = not answered
    opioid_mme: FloatArray


def build_schedule(treatment: DateArray) -> Schedule:
    """Vectorised vertebra.core.schedule.build_schedule with the default protocol."""
    proto = default_protocol()
    target = np.stack(
        [
            add_months(treatment, tp.offset.months)
            + np.timedelta64(tp.offset.weeks * 7 + tp.offset.days, "D")
            for tp in proto.time_points
        ],
        axis=1,
    )
    before = np.array([tp.before for tp in proto.time_points]).astype("timedelta64[D]")
    after = np.array([tp.after for tp in proto.time_points]).astype("timedelta64[D]")
    return Schedule(
        ids=tuple(tp.id for tp in proto.time_points),
        months=np.array([tp.offset.nominal_months for tp in proto.time_points]),
        target=target,
        opens=target - before,
        closes=target + after,
    )


def completion(
    rng: np.random.Generator,
    priors: Priors,
    traits: Traits,
    clinics: Clinics,
    schedule: Schedule,
    death: DateArray,
    today: date,
) -> tuple[BoolArray, DateArray]:
    """Which time points are answered (on or before `today`) and the response dates.

    Missingness model: logit P(respond) = a_t + clinic offset + age + STarT Back + patient
    effect. a_t is solved so the marginal rate equals the prior for that time point; the patient
    effect makes missingness cluster within patients, as in registries.
    """
    p = priors["completeness"]
    n, n_t = schedule.target.shape
    eta = (
        clinics.followup_log_odds[traits.clinic]
        + p["per_decade_older"] * (traits.age - 50) / 10.0
        + np.where(traits.startback_risk == 1, p["startback_medium"], 0.0)
        + np.where(traits.startback_risk == 2, p["startback_high"], 0.0)
        + rng.normal(0.0, p["patient_sd"], n)
    )
    would = np.zeros((n, n_t), dtype=bool)
    u = rng.random((n, n_t))
    for j, tp in enumerate(schedule.ids):
        a = solve_logit_intercept(eta, p["target"][tp])
        would[:, j] = u[:, j] < sigmoid(a + eta)
    before = (schedule.target - schedule.opens).astype(np.int64)
    after = (schedule.closes - schedule.target).astype(np.int64)
    mu = np.where(after > 0, p["response_offset_mean_frac"] * after, -0.2 * before)
    offset = np.clip(np.rint(rng.normal(mu, (before + after) / 4.0)), -before, after)
    response = schedule.target + offset.astype("timedelta64[D]")
    alive = np.isnat(death)[:, None] | (response < death[:, None])
    done = would & (response <= np.datetime64(today, "D")) & alive
    return done, response


def relative_improvement(
    rng: np.random.Generator,
    priors: Priors,
    traits: Traits,
    months: FloatArray,
    conversion: FloatArray,
) -> FloatArray:
    """R(i, t): relative ODI improvement of patient i at each time point (n x T).

    R = response * (1 - exp(-t / tau_arm)); steroid injections add a gain that fades; after a
    subsequent surgery the patient moves towards a surgical response with the surgery tau.
    """
    p = priors["trajectories"]
    n = len(traits.arm)
    group = np.array([ARM_GROUP[a] for a in ARMS], dtype=object)[traits.arm]
    tau = np.array([p["tau_months"][g] for g in group])
    t = months[None, :]
    rel = traits.response[:, None] * (1.0 - np.exp(-t / tau[:, None]))
    steroid = (group == "steroid_injection")[:, None]
    s = p["steroid_transient"]
    transient = s["gain"] * np.exp(-t / s["decay_months"]) * (1.0 - np.exp(-t / 0.25))
    rel = rel + np.where(steroid, transient, 0.0)
    surg_mean = p["mean_relative_improvement"]["surgery"]
    surg_r = np.clip(surg_mean + p["response_sd"] * rng.standard_normal(n), *p["response_range"])
    since = t - conversion[:, None]
    weight = np.where(
        since > 0, 1.0 - np.exp(-np.maximum(since, 0.0) / p["tau_months"]["surgery"]), 0.0
    )
    return rel * (1.0 - weight) + surg_r[:, None] * weight


def answers(
    rng: np.random.Generator,
    priors: Priors,
    traits: Traits,
    months: FloatArray,
    rel: FloatArray,
    done: BoolArray,
    conversion: FloatArray,
) -> Answers:
    """Item-level answers at every time point; NaN where the time point is not answered."""
    n, n_t = rel.shape
    noise_sd = priors["trajectories"]["visit_noise_sd"]
    visit = np.where(months[None, :] > 0, rng.normal(0.0, noise_sd, (n, n_t)), 0.0)
    odi_state = np.clip(traits.odi_latent[:, None] * (1.0 - rel) + visit, 0.0, 100.0)
    odi_items = _odi_items(rng, priors, odi_state)
    pain_noise = np.where(months[None, :] > 0, rng.normal(0.0, 1.0, (n, n_t)), 0.0)
    back = round_clip(traits.nrs_back_latent[:, None] * (1.0 - rel) + pain_noise, 0, 10)
    leg_noise = np.where(months[None, :] > 0, rng.normal(0.0, 1.0, (n, n_t)), 0.0)
    leg = round_clip(traits.nrs_leg_latent[:, None] * (1.0 - rel) + leg_noise, 0, 10)
    pf, pi = _promis_items(rng, priors, odi_state, back)
    use, mme = _opioid_course(rng, priors, traits, months, rel, conversion)
    missing = ~done
    for arr in (back, leg, use, mme):
        arr[missing] = np.nan
    for items in (odi_items, pf, pi):
        items[missing] = np.nan
    return Answers(odi_items, back, leg, pf, pi, use, mme)


def _odi_items(rng: np.random.Generator, priors: Priors, state: FloatArray) -> FloatArray:
    """ODI section answers 0-5 around state/20 with section offsets; a few skipped sections."""
    p = priors["odi_items"]
    n, n_t = state.shape
    offsets = np.asarray(p["offsets"], dtype=np.float64)
    latent = state[:, :, None] / 20.0 + offsets + rng.normal(0.0, p["item_noise_sd"], (n, n_t, 10))
    items = round_clip(latent, 0, 5)
    skip = rng.random((n, n_t, 10)) < p["p_missing_other"]
    skip[:, :, 7] = rng.random((n, n_t)) < p["p_missing_sex_life"]  # section 8, sex life
    items[skip] = np.nan
    return items


def _promis_items(
    rng: np.random.Generator, priors: Priors, odi_state: FloatArray, nrs: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """PROMIS PF-4a items (5 = no difficulty) and PI-4a items (5 = most interference), 1-5."""
    p = priors["promis"]
    n, n_t = odi_state.shape
    sd = p["item_noise_sd"]
    pf_mean = p["pf_intercept"] + p["pf_slope_per_odi"] * odi_state
    pf = round_clip(pf_mean[:, :, None] + rng.normal(0.0, sd, (n, n_t, 4)), 1, 5)
    burden = 0.5 * odi_state / 100.0 + 0.5 * nrs / 10.0
    pi_mean = p["pi_intercept"] + p["pi_slope"] * burden
    pi = round_clip(pi_mean[:, :, None] + rng.normal(0.0, sd, (n, n_t, 4)), 1, 5)
    return pf, pi


def _opioid_course(
    rng: np.random.Generator,
    priors: Priors,
    traits: Traits,
    months: FloatArray,
    rel: FloatArray,
    conversion: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Opioid use (1/0) and MME per time point.

    Baseline users stop over time, more often after cell therapy or surgery (Mesoblast: 28% vs
    8% stopped); stopping is monotone (one uniform per patient) and likelier for good responders.
    A few non-users start. The dose is the patient's baseline dose, scaled down when improved.
    """
    p = priors["opioids"]
    n = rel.shape[0]
    group = np.array([ARM_GROUP[a] for a in ARMS], dtype=object)[traits.arm]
    stop_max = np.full(n, float(p["stop_fraction"]["other"]))
    stop_max[group == "cell"] = p["stop_fraction"]["cell"]
    stop_max[group == "surgery"] = p["stop_fraction"]["surgery"]
    # Gaussian copula: u_stop is exactly uniform (response_z ~ N(0, 1)), so P(stopped by t)
    # equals frac(t), while good responders (high response_z) draw small u and stop first.
    rho = 0.6
    u_stop = norm_cdf(-rho * traits.response_z + np.sqrt(1 - rho**2) * rng.standard_normal(n))
    frac = stop_max[:, None] * (1.0 - np.exp(-months[None, :] / 8.0))
    stopped = u_stop[:, None] < frac
    started = (rng.random(n) < p["p_new_use"])[:, None] & (months[None, :] >= 3.0)
    base = traits.opioid_use[:, None]
    use = (base & ~stopped) | (~base & started)
    scale = np.clip(1.0 - 0.5 * rel, 0.4, 1.2)
    mme = np.where(use, np.round(traits.opioid_mme[:, None] * scale, 1), 0.0)
    return use.astype(np.float64), mme


def status(done: BoolArray, schedule: Schedule, today: date) -> IntArray:
    """Status code (index into TIMEPOINT_STATUSES) of every time point relative to `today`."""
    t = np.datetime64(today, "D")
    code = np.select(
        [done, t < schedule.opens, t <= schedule.target, t <= schedule.closes],
        [0, 1, 2, 3],
        default=4,
    )
    return code.astype(np.int64)


def _nullable_int(values: FloatArray, dtype: type = np.int8) -> pd.arrays.IntegerArray:
    """NaN-coded float array -> pandas nullable integer array."""
    mask = np.isnan(values)
    return pd.arrays.IntegerArray(np.where(mask, 0, values).astype(dtype), mask)


def timepoints_frame(
    traits: Traits,
    schedule: Schedule,
    done: BoolArray,
    response: DateArray,
    ans: Answers,
    today: date,
) -> pd.DataFrame:
    """The analysis-ready table: one row per patient x time point, patients in id order."""
    n, n_t = done.shape
    flat = n * n_t
    odi_matrix = ans.odi_items.reshape(flat, 10)
    odi = odi_scores(odi_matrix)
    pf = ans.pf_items.reshape(flat, 4)
    pi = ans.pi_items.reshape(flat, 4)
    pf_raw = np.nan_to_num(pf).sum(axis=1).astype(np.int64)
    pi_raw = np.nan_to_num(pi).sum(axis=1).astype(np.int64)
    answered = done.reshape(flat)
    pf_t = np.where(answered, promis_t("promis_pf_4a", np.where(answered, pf_raw, 4)), np.nan)
    pi_t = np.where(answered, promis_t("promis_pi_4a", np.where(answered, pi_raw, 4)), np.nan)
    tp_codes = np.tile(np.arange(n_t), n)
    cols: dict[str, object] = {
        "patient_id": np.repeat(traits.patient_id, n_t),
        "clinic_id": np.repeat(traits.clinic + 1, n_t).astype(np.int32),
        "arm": categorical(np.repeat(traits.arm, n_t), ARMS),
        "timepoint": categorical(tp_codes, schedule.ids, ordered=True),
        "months": schedule.months[tp_codes],
        "target_date": schedule.target.reshape(flat).astype("datetime64[s]"),
        "due_date": schedule.opens.reshape(flat).astype("datetime64[s]"),
        "window_closes": schedule.closes.reshape(flat).astype("datetime64[s]"),
        "status": categorical(status(done, schedule, today).reshape(flat), TIMEPOINT_STATUSES),
        "completed": answered,
        "response_date": np.where(answered, response.reshape(flat), np.datetime64("NaT")).astype(
            "datetime64[s]"
        ),
    }
    for k, name in enumerate(ODI_ITEM_COLUMNS):
        cols[name] = _nullable_int(odi_matrix[:, k])
    cols["odi"] = odi
    cols["nrs_back"] = _nullable_int(ans.nrs_back.reshape(flat))
    cols["nrs_leg"] = _nullable_int(ans.nrs_leg.reshape(flat))
    for k, name in enumerate(PF_ITEM_COLUMNS):
        cols[name] = _nullable_int(pf[:, k])
    cols["promis_pf_raw"] = _nullable_int(np.where(answered, pf_raw, np.nan))
    cols["promis_pf_t"] = pf_t
    for k, name in enumerate(PI_ITEM_COLUMNS):
        cols[name] = _nullable_int(pi[:, k])
    cols["promis_pi_raw"] = _nullable_int(np.where(answered, pi_raw, np.nan))
    cols["promis_pi_t"] = pi_t
    use = ans.opioid_use.reshape(flat)
    cols["opioid_use"] = pd.arrays.BooleanArray(np.nan_to_num(use) > 0, np.isnan(use))
    cols["opioid_mme"] = ans.opioid_mme.reshape(flat)
    return pd.DataFrame(cols)


#: Work-status code (work_status.yaml) -> band, as the scorer groups them.
WORK_BANDS = ("working", "off_work_back_pain", "not_in_paid_work", "other")
_WORK_BAND_OF_CODE = np.array([-1, 0, 0, 0, 1, 2, 2, 2, 2, 3], dtype=np.int64)


def with_work_and_activity(tp: pd.DataFrame, wa: WorkActivity) -> pd.DataFrame:
    """`tp` plus work status (code and band) and the PSFS (ratings per activity and the mean).

    The mean is the PSFS scorer's rule (mean of the rated activities, half-up to 2 decimals),
    vectorised; tests compare it with `score("psfs", ...)`.
    """
    n, n_t, m = wa.psfs.shape
    flat = n * n_t
    work = wa.work.reshape(flat)
    code = np.where(np.isnan(work), 0, work).astype(np.int64)
    band = np.where(np.isnan(work), -1, _WORK_BAND_OF_CODE[code])
    ratings = wa.psfs.reshape(flat, m)
    rated = (~np.isnan(ratings)).sum(axis=1)
    total = np.nansum(ratings, axis=1)
    # Half-up rounding of total / rated to 2 decimals in exact integer arithmetic.
    safe = np.maximum(rated, 1)
    hundredths = (2 * 100 * total.astype(np.int64) + safe) // (2 * safe)
    mean = np.where(rated > 0, hundredths / 100.0, np.nan)
    cols: dict[str, Any] = {}
    cols["work_status"] = _nullable_int(work)  # the answer code, as the research codebook
    cols["work_status_band"] = categorical(band, WORK_BANDS)
    for k in range(m):
        cols[f"psfs_{k + 1}"] = _nullable_int(ratings[:, k])
    cols["psfs"] = mean
    return tp.assign(**cols)
