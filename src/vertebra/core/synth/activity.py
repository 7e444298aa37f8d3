"""Work status over time and the Patient-Specific Functional Scale (PSFS) of synthetic patients.

Drawn from their own random stream (generator `_STREAM_ACTIVITY`), so adding them changed no
other column of a cohort generated with the same seed. Priors: ``work_and_activity`` in
priors.yaml (synthetic assumptions, with the published anchors they are shaped by).

* Work status (work_status.yaml codes 1-9) at every answered time point. Retired occupations
  answer 6; others draw a baseline status. Off work because of the back (4) returns to work at
  a per-patient time (a Gaussian copula with the response, so good responders return first;
  monotone: once back, back), sometimes first on reduced duties (3); reduced duties (3) return
  to usual duties (1 or 2) likewise.
* PSFS: 1-5 named activities from a phrase list, baseline ratings from the baseline ODI (capped:
  people name what they find hard), follow-up ratings rising with the relative ODI improvement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vertebra.core.synth._num import BoolArray, FloatArray, IntArray, norm_cdf, round_clip
from vertebra.core.synth.constants import ARM_GROUP, ARMS
from vertebra.core.synth.patients import Traits
from vertebra.core.synth.priors import Priors

#: The PSFS has at most five activities.
MAX_ACTIVITIES = 5
RETIRED, OFF_WORK, MODIFIED = 6, 4, 3


@dataclass(slots=True)
class WorkActivity:
    """n x T work-status codes and n x T x 5 PSFS ratings (NaN = not answered / no activity);
    ``activity`` n x 5: index into the phrase list (-1 = no such activity)."""

    work: FloatArray
    psfs: FloatArray
    activity: IntArray


def phrases(priors: Priors) -> list[str]:
    """The activity phrases of the priors (the code order of `WorkActivity.activity`)."""
    return [str(a) for a in priors["work_and_activity"]["activities"]]


def _weighted(rng: np.random.Generator, weights: dict[int, float], n: int) -> IntArray:
    """n draws of the integer keys of `weights` with those probabilities (normalised)."""
    keys = np.array([int(k) for k in weights], dtype=np.int64)
    p = np.array([float(v) for v in weights.values()])
    return keys[rng.choice(len(keys), size=n, p=p / p.sum())]


def work_and_activity(
    rng: np.random.Generator,
    priors: Priors,
    traits: Traits,
    months: FloatArray,
    rel: FloatArray,
    done: BoolArray,
) -> WorkActivity:
    """Work status and PSFS ratings at every time point (NaN where not answered)."""
    p = priors["work_and_activity"]
    n, n_t = rel.shape
    # Draw order is part of the reproducibility contract: do not reorder these lines.
    base = _weighted(rng, p["baseline_status_weights"], n)
    u_return = rng.standard_normal(n)
    u_modified = rng.random(n)
    usual = np.where(rng.random(n) < 0.8, 1, 2)  # usual duties: full time or part time
    n_act = _weighted(rng, p["n_activities_weights"], n)
    keys = rng.random((n, len(p["activities"])))
    base_noise = rng.normal(0.0, p["baseline_sd"], (n, MAX_ACTIVITIES))
    visit_noise = rng.normal(0.0, p["visit_sd"], (n, n_t, MAX_ACTIVITIES))

    retired = traits.occupation == "retired"
    base = np.where(retired, RETIRED, base)
    group = np.array([ARM_GROUP[a] for a in ARMS], dtype=object)[traits.arm]
    rtw_max = np.array([p["return_to_work_max"][g] for g in group])
    rho = float(p["response_rho"])
    u = norm_cdf(-rho * traits.response_z + np.sqrt(1 - rho**2) * u_return)
    ramp = 1.0 - np.exp(-months[None, :] / float(p["return_tau_months"]))
    back_at_work = (base == OFF_WORK)[:, None] & (u[:, None] < rtw_max[:, None] * ramp)
    to_usual = (base == MODIFIED)[:, None] & (u[:, None] < p["usual_duties_max"] * ramp)
    first_modified = (u_modified < p["p_return_modified"])[:, None]
    # A returner on reduced duties moves to usual duties at twice the return time.
    later = u[:, None] < rtw_max[:, None] * (1.0 - np.exp(-months[None, :] / 8.0))
    work = np.broadcast_to(base[:, None], (n, n_t)).astype(np.float64)
    work = np.where(back_at_work, np.where(first_modified & ~later, MODIFIED, usual[:, None]), work)
    work = np.where(to_usual, usual[:, None], work)

    order = np.argsort(keys, axis=1)[:, :MAX_ACTIVITIES]
    has = np.arange(MAX_ACTIVITIES)[None, :] < n_act[:, None]
    activity = np.where(has, order, -1).astype(np.int64)
    mean0 = p["baseline_intercept"] + p["baseline_slope_per_odi"] * traits.odi_latent
    r0 = round_clip(mean0[:, None] + base_noise, 0, float(p["baseline_max"]))
    gain = np.clip(rel, -0.5, 1.0)[:, :, None] * float(p["gain"])
    follow = r0[:, None, :] + (10.0 - r0[:, None, :]) * gain
    noisy = np.where(months[None, :, None] > 0, follow + visit_noise, follow)
    psfs = round_clip(noisy, 0, 10)
    psfs[~has[:, None, :].repeat(n_t, axis=1)] = np.nan
    psfs[~done] = np.nan
    work[~done] = np.nan
    return WorkActivity(work=work, psfs=psfs, activity=activity)
