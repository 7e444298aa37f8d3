"""Patient traits at baseline: demographics, diagnosis, imaging, STarT Back, opioids, arm, cells.

All draws are vectorised over the chunk. The latent quantities that later drive outcomes
(disability, distress, response) stay in `Traits` and are not part of the public table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import numpy.typing as npt

from vertebra.core.mme import opioid_factor
from vertebra.core.synth._num import (
    BoolArray,
    DateArray,
    FloatArray,
    IntArray,
    round_clip,
    sigmoid,
    weighted_choice,
)
from vertebra.core.synth._scoring import startback_groups
from vertebra.core.synth.clinics import Clinics
from vertebra.core.synth.constants import ARM_GROUP, ARMS, CELL_ARMS, CONDITIONS, LEVELS
from vertebra.core.synth.priors import Priors

#: Treatment dates are spread over the 42 months before `today` so every time point is
#: represented as completed, due, overdue and not yet due.
TREATMENT_SPAN_DAYS = 1278


@dataclass(slots=True)
class Traits:
    """Per-patient arrays of one chunk (length n). Latent fields are internal to the generator."""

    patient_id: IntArray
    clinic: IntArray  # 0-based clinic index
    condition: IntArray
    age: IntArray
    male: BoolArray
    level: IntArray
    icd10: npt.NDArray[np.object_]
    pfirrmann: IntArray
    modic: IntArray
    disc_height: FloatArray
    duration: FloatArray
    disability_z: FloatArray  # latent disability, N(0, 1)
    odi_latent: FloatArray  # baseline ODI before item noise, 0-100
    nrs_back_latent: FloatArray
    nrs_leg_latent: FloatArray
    distress_z: FloatArray
    startback: IntArray  # n x 9 answers
    startback_total: IntArray
    startback_risk: IntArray  # index into STARTBACK_GROUPS
    opioid_use: BoolArray
    opioid_drug: IntArray  # index into the priors' drug list
    opioid_dose: FloatArray
    opioid_mme: FloatArray
    prior_medication: BoolArray
    prior_pt: BoolArray
    prior_steroid: BoolArray
    prior_surgery: BoolArray
    arm: IntArray
    treatment_date: DateArray
    tnc: FloatArray
    cfu_f: FloatArray
    viability: FloatArray
    cell_dose: FloatArray
    response: FloatArray  # patient's relative ODI improvement at plateau
    response_z: FloatArray  # the N(0, 1) draw behind `response` (drives conversion timing)
    occupation: npt.NDArray[np.object_]
    prior_steroid_relief_weeks: FloatArray = field(default_factory=lambda: np.zeros(0))
    goal_avoid_surgery: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def make_traits(
    patient_id: IntArray, rng: np.random.Generator, priors: Priors, clinics: Clinics, today: date
) -> Traits:
    """Draw every baseline trait of the patients `patient_id` (one chunk)."""
    n = len(patient_id)
    cond_p = priors["conditions"]
    condition = weighted_choice(rng, [cond_p["weights"][c] for c in CONDITIONS], n)
    age_mean = np.array([cond_p["age_mean"][c] for c in CONDITIONS])[condition]
    lo, hi = cond_p["age_range"]
    age = np.clip(np.rint(rng.normal(age_mean, cond_p["age_sd"])), lo, hi).astype(np.int64)
    male = rng.random(n) < cond_p["p_male"]
    clinic = rng.choice(len(clinics.share), size=n, p=clinics.share).astype(np.int64)
    level = weighted_choice(rng, priors["imaging"]["level_weights"], n)
    pfirrmann, modic, disc_height = _imaging(rng, priors, condition, age)
    duration = _duration(rng, priors, condition)
    disability_z = rng.standard_normal(n)
    odi_latent, nrs_back, nrs_leg = _baseline_pain(rng, priors, condition, disability_z)
    icd10 = _icd10(rng, priors, condition, level, nrs_leg)
    distress_z, startback = _startback(rng, priors, disability_z, odi_latent, nrs_back, nrs_leg)
    sb_total, sb_risk = startback_groups(startback)
    opioid = _opioids(rng, priors, n)
    prior = priors["prior_treatments"]
    arm = _assign_arms(rng, priors, clinics, clinic, condition, age, disability_z, modic)
    tnc, cfu_f, viability, cell_dose = _processing(rng, priors, arm, age)
    traits = Traits(
        patient_id=patient_id,
        clinic=clinic,
        condition=condition,
        age=age,
        male=male,
        level=level,
        icd10=icd10,
        pfirrmann=pfirrmann,
        modic=modic,
        disc_height=disc_height,
        duration=duration,
        disability_z=disability_z,
        odi_latent=odi_latent,
        nrs_back_latent=nrs_back,
        nrs_leg_latent=nrs_leg,
        distress_z=distress_z,
        startback=startback,
        startback_total=sb_total,
        startback_risk=sb_risk,
        opioid_use=opioid[0],
        opioid_drug=opioid[1],
        opioid_dose=opioid[2],
        opioid_mme=opioid[3],
        prior_medication=rng.random(n) < prior["p_medication"],
        prior_pt=rng.random(n) < prior["p_physical_therapy"],
        prior_steroid=rng.random(n) < prior["p_steroid_injection"],
        prior_surgery=rng.random(n) < prior["p_surgery_same_level"],
        arm=arm,
        treatment_date=_treatment_dates(rng, n, today),
        tnc=tnc,
        cfu_f=cfu_f,
        viability=viability,
        cell_dose=cell_dose,
        response=np.zeros(n),
        response_z=rng.standard_normal(n),
        occupation=_occupations(rng, priors, age),
    )
    traits.response = response_at_plateau(priors, traits)
    # Relief after earlier steroid injections, in weeks (short: they are why patients come).
    relief = np.round(rng.lognormal(np.log(8.0), 0.5, n))
    traits.prior_steroid_relief_weeks = np.where(traits.prior_steroid, relief, np.nan)
    p_goal = np.where(cell_arm_mask(arm), 0.8, 0.4)
    traits.goal_avoid_surgery = rng.random(n) < p_goal
    return traits


def _imaging(
    rng: np.random.Generator, priors: Priors, condition: IntArray, age: IntArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """Pfirrmann grade (worse with age and disc disease), Modic type 0-3, disc height % of normal."""
    p = priors["imaging"]
    n = len(condition)
    mean = np.array([p["pfirrmann_mean"][c] for c in CONDITIONS])[condition]
    mean = mean + p["pfirrmann_per_decade"] * (age - 45) / 10.0
    grade = round_clip(rng.normal(mean, p["pfirrmann_sd"]), 1, 5).astype(np.int64)
    probs = np.where(
        (grade >= 4)[:, None],
        np.array(p["modic_given_pfirrmann_4plus"])[None, :],
        np.array(p["modic_given_pfirrmann_lt4"])[None, :],
    )
    cum = np.cumsum(probs, axis=1)
    u = rng.random(n)[:, None]
    # Modic type = number of cumulative thresholds passed, reversed so type 1 is the first band.
    modic = np.where(
        u < cum[:, :1], 1, np.where(u < cum[:, 1:2], 2, np.where(u < cum[:, 2:], 3, 0))
    )
    height = (
        100.0 + p["disc_height_pct_per_grade"] * (grade - 1) + rng.normal(0, p["disc_height_sd"], n)
    )
    # Capped at 100: the registry records disc height as a percentage of the expected normal
    # height (NCT04042844 asks for >= 50 %), so a healthy disc is 100, not more.
    return grade, modic[:, 0].astype(np.int64), np.round(np.clip(height, 25.0, 100.0), 1)


def _duration(rng: np.random.Generator, priors: Priors, condition: IntArray) -> FloatArray:
    """Months of pain before treatment: lognormal, shorter for muscle strain, at least 3."""
    p = priors["pain_duration_months"]
    median = np.where(
        condition == CONDITIONS.index("muscle_strain"), p["median_muscle_strain"], p["median"]
    )
    months = rng.lognormal(np.log(median), p["sdlog"])
    return np.clip(np.rint(months), *p["range"])


def _baseline_pain(
    rng: np.random.Generator, priors: Priors, condition: IntArray, z: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Latent baseline ODI (0-100), back NRS correlated with it, and leg NRS by condition."""
    odi = priors["baseline_odi"]
    shift = np.array([odi["condition_shift"][c] for c in CONDITIONS])[condition]
    # Item noise and rounding add ~5 points of SD, so the latent SD is reduced to keep the
    # scored baseline SD at the prior.
    latent_sd = float(np.sqrt(odi["sd"] ** 2 - 4.0**2))
    odi_latent = np.clip(odi["mean"] + shift + latent_sd * z, 2.0, 98.0)
    nrs = priors["baseline_nrs_back"]
    rho = nrs["corr_with_odi"]
    n = len(z)
    back = nrs["mean"] + nrs["sd"] * (rho * z + np.sqrt(1 - rho**2) * rng.standard_normal(n))
    leg_p = priors["baseline_nrs_leg"]
    leg_mean = np.array([leg_p["mean"][c] for c in CONDITIONS])[condition]
    leg = leg_mean + leg_p["sd"] * (0.3 * z + np.sqrt(1 - 0.09) * rng.standard_normal(n))
    return odi_latent, np.clip(back, 0.0, 10.0), np.clip(leg, 0.0, 10.0)


def _icd10(
    rng: np.random.Generator,
    priors: Priors,
    condition: IntArray,
    level: IntArray,
    nrs_leg: FloatArray,
) -> npt.NDArray[np.object_]:
    """ICD-10-CM code consistent with condition, level (lumbosacral at L5-S1) and leg pain."""
    p = priors["icd10"]
    n = len(condition)
    sacral = level == LEVELS.index("L5-S1")
    radicular = (rng.random(n) < p["p_radicular_herniation"]) | (nrs_leg >= 6)
    side = rng.integers(0, 3, n)
    claud = rng.random(n) < p["p_claudication"]
    per_condition = [
        np.where(
            sacral,
            p["degenerative_disc_disease"]["lumbosacral"],
            p["degenerative_disc_disease"]["lumbar"],
        ),
        np.where(
            radicular,
            np.where(
                sacral,
                p["herniated_disc"]["lumbosacral_radicular"],
                p["herniated_disc"]["lumbar_radicular"],
            ),
            np.where(sacral, p["herniated_disc"]["lumbosacral"], p["herniated_disc"]["lumbar"]),
        ),
        np.where(sacral, p["facet_arthropathy"]["lumbosacral"], p["facet_arthropathy"]["lumbar"]),
        np.array([p["sciatica"][k] for k in ("right", "left", "unspecified")], dtype=object)[side],
        np.full(n, p["muscle_strain"]["any"], dtype=object),
        np.where(
            claud, p["spinal_stenosis"]["claudication"], p["spinal_stenosis"]["no_claudication"]
        ),
    ]
    out = np.empty(n, dtype=object)
    for c, codes in enumerate(per_condition):
        mask = condition == c
        out[mask] = np.asarray(codes, dtype=object)[mask]
    return out


def _startback(
    rng: np.random.Generator,
    priors: Priors,
    z: FloatArray,
    odi: FloatArray,
    nrs_back: FloatArray,
    nrs_leg: FloatArray,
) -> tuple[FloatArray, IntArray]:
    """Latent distress and the 9 STarT Back answers (items in Hill 2008 order)."""
    p = priors["startback"]
    n = len(z)
    rho = p["distress_corr_with_disability"]
    distress = rho * z + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    items = np.zeros((n, 9), dtype=np.int64)
    physical = np.stack(
        [
            sigmoid(0.9 * (nrs_leg - 4.0)),  # referred leg pain
            np.full(n, 0.35),  # shoulder or neck pain in the last 2 weeks
            sigmoid((odi - 45.0) / 8.0),  # walked only short distances
            sigmoid((odi - 55.0) / 8.0),  # dressed more slowly
        ],
        axis=1,
    )
    items[:, :4] = rng.random((n, 4)) < physical
    psych = sigmoid(
        p["psychosocial_intercept"] + 1.3 * distress[:, None] + 0.6 * rng.standard_normal((n, 4))
    )
    items[:, 4:8] = rng.random((n, 4)) < psych
    bother = 2.0 + 0.8 * distress + 0.35 * (nrs_back - 7.1) + rng.normal(0.0, 0.7, n)
    items[:, 8] = round_clip(bother, 0, 4).astype(np.int64)
    return distress, items


def _opioids(
    rng: np.random.Generator, priors: Priors, n: int
) -> tuple[BoolArray, IntArray, FloatArray, FloatArray]:
    """Baseline opioid use, drug, daily dose and MME (CDC factors via vertebra.core.mme).

    Drug and dose are drawn for everyone, so a patient who starts an opioid later has one.
    """
    p = priors["opioids"]
    drugs = list(p["drug_weights"])
    use = rng.random(n) < p["p_baseline_use"]
    drug = weighted_choice(rng, p["drug_weights"], n)
    median = np.array([p["dose_median"][d] for d in drugs])[drug]
    step = np.array([p["dose_step"][d] for d in drugs])[drug]
    dose = np.maximum(step, np.rint(rng.lognormal(np.log(median), p["dose_sdlog"]) / step) * step)
    factor = np.array([opioid_factor(d).factor for d in drugs])[drug]
    return use, drug, dose, np.round(dose * factor, 2)


def _assign_arms(
    rng: np.random.Generator,
    priors: Priors,
    clinics: Clinics,
    clinic: IntArray,
    condition: IntArray,
    age: IntArray,
    z: FloatArray,
    modic: IntArray,
) -> IntArray:
    """Multinomial-logit arm choice with confounding by age, disability, diagnosis and clinic.

    Gumbel-max: argmax(utility + Gumbel noise) samples the softmax without a per-row loop.
    Arms a clinic may not deliver (regulation) get utility -inf.
    """
    p = priors["arms"]
    n = len(age)
    groups = [ARM_GROUP[a] for a in ARMS]
    util = np.log(np.array([p["base_share"][a] for a in ARMS]))[None, :].repeat(n, axis=0)
    decades = (age - 50) / 10.0
    for j, g in enumerate(groups):
        util[:, j] += p["age_per_decade"][g] * decades + p["disability_per_sd"][g] * z
        effect = np.array([p["condition_effect"][c][g] for c in CONDITIONS])
        util[:, j] += effect[condition]
        if g == "cell":
            util[:, j] += np.where(modic == 3, p["modic3_cell_effect"], 0.0)
    util = np.where(clinics.arm_allowed[clinic], util, -np.inf)
    return np.argmax(util + rng.gumbel(size=util.shape), axis=1).astype(np.int64)


def _processing(
    rng: np.random.Generator, priors: Priors, arm: IntArray, age: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """TNC (1e6/mL), CFU-F (/mL), viability (%) and injected dose (1e6 cells); NaN for non-cell arms."""
    p = priors["processing"]
    n = len(arm)
    nan = np.full(n, np.nan)
    tnc, cfu, via, dose = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    name = np.array(ARMS, dtype=object)[arm]
    bm = (name == "bmac") | (name == "bmac_prp")
    ad = (name == "adipose") | (name == "adipose_prp")
    al = (name == "allogeneic") | (name == "allogeneic_prp")
    b = p["bmac"]
    # Marrow CFU-F falls with donor age (Pettine: >40 y with <2,000/mL did worst).
    age_term = b["cfu_f_per_decade_over_40"] * np.maximum(age - 40, 0) / 10.0
    bm_tnc = rng.lognormal(np.log(b["tnc_median_e6_per_ml"]), b["tnc_sdlog"], n)
    bm_cfu = rng.lognormal(np.log(b["cfu_f_median_per_ml"]) + age_term, b["cfu_f_sdlog"], n)
    tnc[bm] = np.round(bm_tnc[bm], 1)
    cfu[bm] = np.rint(bm_cfu[bm])
    dose[bm] = np.round(bm_tnc[bm] * b["injected_ml"], 1)
    a = p["adipose"]
    lo_yield, hi_yield = a["svf_yield_e6_per_g"]
    yield_per_g = rng.uniform(float(lo_yield), float(hi_yield), n)
    grams = rng.lognormal(np.log(a["lipoaspirate_g_median"]), 0.3, n)
    tnc[ad] = np.round((yield_per_g * grams / 5.0)[ad], 1)  # SVF resuspended in ~5 mL
    dose[ad] = rng.choice(np.array(a["dose_e6_choices"], float), n)[ad]
    al_p = p["allogeneic"]
    dose[al] = rng.choice(np.array(al_p["dose_e6_choices"], float), n)[al]
    for mask, spec in ((bm, b), (ad, a), (al, al_p)):
        draw = rng.normal(spec["viability_mean"], spec["viability_sd"], n)
        via[mask] = np.round(np.clip(draw, 70.0, 99.5), 1)[mask]
    return tnc, cfu, via, dose


def response_at_plateau(priors: Priors, t: Traits) -> FloatArray:
    """Each patient's relative ODI improvement at plateau (arm mean + modifiers + noise)."""
    p = priors["trajectories"]
    n = len(t.arm)
    group = np.array([ARM_GROUP[a] for a in ARMS], dtype=object)[t.arm]
    mean = np.zeros(n)
    for g, value in p["mean_relative_improvement"].items():
        mean[group == g] = value
    names = np.array(ARMS, dtype=object)[t.arm]
    mean += np.where(np.char.endswith(names.astype(str), "_prp"), p["prp_bonus"], 0.0)
    threshold = priors["processing"]["cfu_f_threshold"]
    has_cfu = ~np.isnan(t.cfu_f)
    above = has_cfu & (np.nan_to_num(t.cfu_f) > threshold)
    below_old = has_cfu & ~above & (t.age > 40)
    mean += np.where(above, p["cfu_f_above_threshold_bonus"], 0.0)
    mean += np.where(below_old, p["cfu_f_below_threshold_over_40_penalty"], 0.0)
    mean += np.where(t.startback_risk == 2, p["high_risk_startback_effect"], 0.0)
    lo, hi = p["response_range"]
    return np.clip(mean + p["response_sd"] * t.response_z, lo, hi)


def _treatment_dates(rng: np.random.Generator, n: int, today: date) -> DateArray:
    """Treatment dates uniform over the TREATMENT_SPAN_DAYS before `today` (never in the future)."""
    back = rng.integers(1, TREATMENT_SPAN_DAYS + 1, n)
    return np.datetime64(today, "D") - back.astype("timedelta64[D]")


def _occupations(
    rng: np.random.Generator, priors: Priors, age: IntArray
) -> npt.NDArray[np.object_]:
    """Occupation: 'retired' from the retirement age on (mostly), else one of the working list."""
    p = priors["occupations"]
    working = np.array(p["working"], dtype=object)
    out = working[rng.integers(0, len(working), len(age))]
    retired = (age >= p["retired_age"]) & (rng.random(len(age)) < 0.9)
    out[retired] = "retired"
    return out


def cell_arm_mask(arm: IntArray) -> BoolArray:
    """True where the arm is one of the six cell arms."""
    return arm < len(CELL_ARMS)
