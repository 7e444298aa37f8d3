"""Category vocabularies of the synthetic cohort (column values and their code order)."""

from __future__ import annotations

CONDITIONS = (
    "degenerative_disc_disease",
    "herniated_disc",
    "facet_arthropathy",
    "sciatica",
    "muscle_strain",
    "spinal_stenosis",
)
CELL_ARMS = ("bmac", "bmac_prp", "adipose", "adipose_prp", "allogeneic", "allogeneic_prp")
ARMS = (*CELL_ARMS, "medication", "steroid_injection", "physical_therapy", "surgery")
#: Arm -> group used by the priors ("cell" pools the six cell arms).
ARM_GROUP = {**{a: "cell" for a in CELL_ARMS}, **{a: a for a in ARMS[6:]}}
CELL_SOURCES = ("bone_marrow", "adipose", "allogeneic")
REGULATORY_STATUSES = (
    "approved_product",
    "registered_trial",
    "hct_p_361_same_surgical_procedure",
    "none",
)
LEVELS = ("L3-L4", "L4-L5", "L5-S1")
SEXES = ("female", "male")
EVENT_TYPES = ("adverse_event", "subsequent_surgery", "repeat_injection")
RELATEDNESS = ("harvest", "procedure", "product", "unrelated")
TIMEPOINT_STATUSES = ("completed", "not_due", "due", "overdue", "missed")
ODI_ITEM_COLUMNS = tuple(f"odi_{k}" for k in range(1, 11))
STARTBACK_ITEM_COLUMNS = tuple(f"startback_{k}" for k in range(1, 10))
PF_ITEM_COLUMNS = tuple(f"promis_pf_{k}" for k in range(1, 5))
PI_ITEM_COLUMNS = tuple(f"promis_pi_{k}" for k in range(1, 5))
STORIES = ("office_worker", "fitness_enthusiast", "retired_teacher")


def is_cell_arm(arm: str) -> bool:
    """True for the six cell-therapy arms."""
    return arm in CELL_ARMS
