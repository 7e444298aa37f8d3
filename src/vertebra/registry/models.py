"""Registry data model: clinics, people, the treatment pathway and the audit trail.

Contracts
---------
* Models hold data and invariants only. Every write goes through
  :mod:`vertebra.registry.services`, which checks permissions, enforces the chain of custody and
  writes the audit record in the same transaction. There is no logic in ``save()`` and there are no
  signals, so nothing happens behind a service's back.
* Invariants that the database can express are database constraints (``CheckConstraint``,
  ``UniqueConstraint``), so they hold even for rows written outside the services (imports, SQL).
  Field validators add the checks a database cannot do portably (regular expressions), and run in
  ``full_clean()``, which every service calls before saving.
* Clinical rows are never hard-deleted by the application; the audit trail keeps every prior value.
* :class:`AuditEvent` is append-only: the database refuses UPDATE and DELETE on it (migration
  ``0002_audit_append_only``) and a hash chain exposes any row changed by other means.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import connection, models
from django.db.models import F, Q
from django.db.models.functions import Now

# ICD-10-CM: letter, digit, digit-or-letter, then optionally a dot and 1-4 characters (M51.36).
# Kept in step with vertebra.core.knowledge.ICD10_CM_PATTERN; duplicated so that the schema does
# not depend on the knowledge-base loader.
ICD10_CM_REGEX = r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"
NCT_ID_REGEX = r"^NCT\d{8}$"

validate_icd10 = RegexValidator(
    ICD10_CM_REGEX, "Enter an ICD-10-CM code such as M51.36 (capital letters, dot before the 4th)."
)
validate_nct_id = RegexValidator(
    NCT_ID_REGEX, "Enter a ClinicalTrials.gov id: NCT followed by 8 digits, e.g. NCT01234567."
)


def _percent(name: str) -> Q:
    """``name`` is unknown (NULL) or within 0-100."""
    return Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__gte": 0, f"{name}__lte": 100})


def _non_negative(name: str) -> Q:
    """``name`` is unknown (NULL) or >= 0."""
    return Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__gte": 0})


class Correctable(models.Model):
    """What every correctable clinical record carries (ADR 0009): an optimistic-locking
    ``version`` and the marks of a void.

    ``version`` starts at 1 and every correction or void is ``UPDATE ... WHERE version =
    expected`` that increments it, so an edit made from a stale form is refused, never silently
    applied. A record entered in error is *voided* (``voided_at``, ``voided_by``,
    ``void_reason``), never deleted: it stays on the patient's page, struck through with its
    reason, and is left out of analytics, worklists and exports. Writes go through
    :mod:`vertebra.registry.corrections`.
    """

    version = models.PositiveIntegerField(default=1, db_default=1)
    voided_at = models.DateTimeField(null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    void_reason = models.TextField(blank=True, default="", db_default="")
    #: Last change of the row (FHIR ``meta.lastUpdated``, ``_lastUpdated`` search): set on
    #: every ``save()``; queryset ``update()`` writers (corrections, services) set it
    #: explicitly, since ``auto_now`` does not reach an ``UPDATE``.
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        abstract = True

    @property
    def is_voided(self) -> bool:
        """True once the record was voided (entered in error)."""
        return self.voided_at is not None


# --------------------------------------------------------------------------------------------
# Clinics, people and roles
# --------------------------------------------------------------------------------------------


class RegulatoryStatus(models.TextChoices):
    APPROVED_PRODUCT = "approved_product", "Approved product"
    REGISTERED_TRIAL = "registered_trial", "Registered trial (NCT id, IRB and IND)"
    HCT_P_361 = (
        "hct_p_361_same_surgical_procedure",
        "361 HCT/P, same surgical procedure",
    )
    NONE = "none", "None"


class Clinic(models.Model):
    """A clinic that contributes patients. Reference data, managed by registry admins."""

    name = models.CharField(max_length=200, unique=True)
    regulatory_status = models.CharField(
        max_length=40, choices=RegulatoryStatus.choices, default=RegulatoryStatus.NONE
    )
    nct_id = models.CharField("NCT id", max_length=11, blank=True, validators=[validate_nct_id])
    irb = models.CharField("IRB", max_length=200, blank=True)
    ind_number = models.CharField("IND number", max_length=50, blank=True)
    lab_accreditation = models.CharField(max_length=200, blank=True)
    #: Last change (FHIR ``meta.lastUpdated`` of the Organization).
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        ordering = ["name"]
        constraints = [
            # A registered trial is only "registered" with all three identifiers on file.
            models.CheckConstraint(
                name="clinic_registered_trial_has_ids",
                condition=~Q(regulatory_status="registered_trial")
                | (~Q(nct_id="") & ~Q(irb="") & ~Q(ind_number="")),
            ),
            # The full NCT format is a validator (regex); the database checks what it portably can.
            models.CheckConstraint(
                name="clinic_nct_id_prefix",
                condition=Q(nct_id="") | Q(nct_id__startswith="NCT"),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    CLINICIAN = "clinician", "Clinician"
    COORDINATOR = "coordinator", "Coordinator"
    CLINIC_ADMIN = "clinic_admin", "Clinic admin"
    RESEARCHER = "researcher", "Researcher"
    REGISTRY_ADMIN = "registry_admin", "Registry admin"


#: Roles whose membership may be registry-wide (no clinic). Clinic roles always name a clinic.
REGISTRY_WIDE_ROLES = (Role.RESEARCHER, Role.REGISTRY_ADMIN)


class Membership(models.Model):
    """A staff user's role at a clinic (or registry-wide, for researchers and registry admins).

    A user may hold several memberships; an :class:`~vertebra.registry.services.Actor` acts in one
    role at a time, over the clinics where the user holds that role.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    clinic = models.ForeignKey(
        Clinic, on_delete=models.PROTECT, null=True, blank=True, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="membership_clinic_role_names_clinic",
                condition=Q(role__in=[r.value for r in REGISTRY_WIDE_ROLES])
                | Q(clinic__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["user", "clinic", "role"],
                condition=Q(clinic__isnull=False),
                name="membership_unique_per_clinic",
            ),
            # NULLs are distinct in unique indexes, so registry-wide roles need their own.
            models.UniqueConstraint(
                fields=["user", "role"],
                condition=Q(clinic__isnull=True),
                name="membership_unique_registry_wide",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} as {self.role} at {self.clinic or 'registry'}"


class Sex(models.TextChoices):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    OTHER = "other", "Other"
    UNKNOWN = "unknown", "Unknown"


class Patient(Correctable):
    """A registered patient of one clinic. Identified data: only that clinic's staff see it.

    ``version`` is the optimistic-locking counter: every update is ``UPDATE ... WHERE version =
    expected`` and increments it, so a stale edit is refused rather than silently overwriting.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="patients")
    mrn = models.CharField("MRN", max_length=64)
    given_name = models.CharField(max_length=150)
    family_name = models.CharField(max_length=150)
    date_of_birth = models.DateField()
    sex = models.CharField(max_length=10, choices=Sex.choices)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["family_name", "given_name", "id"]
        # The patient list's orders (registry.selectors.SORTS), per clinic and across clinics;
        # the name index covers the clinic and MRN too, so the ids of a deep page are read from
        # it alone (index-only). Migration 0014 adds the trigram indexes name/MRN search uses
        # on PostgreSQL (not declared here: SQLite has no such index).
        indexes = [
            models.Index(
                fields=["clinic", "family_name", "given_name", "id"], name="patient_clinic_name"
            ),
            models.Index(
                fields=["family_name", "given_name", "id"],
                include=["clinic", "mrn"],
                name="patient_name",
            ),
            models.Index(fields=["created_at", "id"], name="patient_created"),
            models.Index(fields=["mrn", "id"], name="patient_mrn"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "mrn"], name="patient_mrn_unique_per_clinic"),
            models.CheckConstraint(name="patient_version_positive", condition=Q(version__gte=1)),
        ]

    def __str__(self) -> str:
        return f"Patient {self.pk}"  # never a name: str() ends up in logs and error pages


class PatientCount(models.Model):
    """How many patients a clinic has: a running sum of signed deltas written by database
    triggers on ``registry_patient`` (migration ``registry 0016``), never by Python, so every
    path that registers patients (services, the bulk loader's COPY, the importer) keeps it right
    in its own transaction. Rows are only inserted, so registrations never wait on one
    another; ``vertebra.registry.selectors.compact_patient_counts`` folds them (the worker).
    ``SUM(n)`` per clinic equals ``COUNT(*)`` of its patients at every moment (ADR 0023 §10).
    """

    clinic = models.ForeignKey(
        Clinic, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    n = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["clinic"], name="registry_patientcount_clinic")]

    def __str__(self) -> str:
        return f"{self.n:+d} patients at clinic {self.clinic_id}"


class PatientAccount(models.Model):
    """Links a patient to the login they use for the patient portal (patients hold no role)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="patient_account"
    )
    patient = models.OneToOneField(Patient, on_delete=models.PROTECT, related_name="account")


class ConsentKind(models.TextChoices):
    REGISTRY = "registry", "Registry participation"
    TREATMENT = "treatment", "Treatment"


class Consent(Correctable):
    """A signed consent form. Withdrawal sets ``withdrawn_on``; the row itself is kept."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="consents")
    kind = models.CharField(max_length=20, choices=ConsentKind.choices)
    form_version = models.CharField(max_length=40)
    signed_on = models.DateField()
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    withdrawn_on = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="consent_withdrawn_after_signed",
                condition=Q(withdrawn_on__isnull=True) | Q(withdrawn_on__gte=F("signed_on")),
            ),
        ]


# --------------------------------------------------------------------------------------------
# Diagnosis, prior treatment, screening
# --------------------------------------------------------------------------------------------


class Condition(models.TextChoices):
    """The six causes of the knowledge base (same ids as the screening rule set)."""

    DEGENERATIVE_DISC_DISEASE = "degenerative_disc_disease", "Degenerative disc disease"
    HERNIATED_DISC = "herniated_disc", "Herniated or bulging disc"
    FACET_ARTHROPATHY = "facet_arthropathy", "Facet arthropathy"
    SCIATICA = "sciatica", "Sciatica"
    MUSCLE_STRAIN = "muscle_strain", "Muscle strain"
    SPINAL_STENOSIS = "spinal_stenosis", "Spinal stenosis"


class SpinalLevel(models.TextChoices):
    L1_L2 = "L1-L2", "L1–L2"
    L2_L3 = "L2-L3", "L2–L3"
    L3_L4 = "L3-L4", "L3–L4"
    L4_L5 = "L4-L5", "L4–L5"
    L5_S1 = "L5-S1", "L5–S1"


class Laterality(models.TextChoices):
    LEFT = "left", "Left"
    RIGHT = "right", "Right"
    BILATERAL = "bilateral", "Bilateral"
    CENTRAL = "central", "Central"


class Stenosis(models.TextChoices):
    NONE = "none", "None"
    MILD = "mild", "Mild"
    MODERATE = "moderate", "Moderate"
    SEVERE = "severe", "Severe"


class Diagnosis(Correctable):
    """A diagnosis with its imaging findings. Unknown findings are NULL (or blank for text)."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="diagnoses")
    condition = models.CharField(max_length=40, choices=Condition.choices)
    icd10 = models.CharField("ICD-10-CM code", max_length=8, validators=[validate_icd10])
    diagnosed_on = models.DateField()
    level = models.CharField(max_length=5, choices=SpinalLevel.choices, blank=True)
    laterality = models.CharField(max_length=10, choices=Laterality.choices, blank=True)
    # Two Pfirrmann scales are in use and their grades do not convert into each other (ADR 0006),
    # so each has its own column and a grade is always stored under the scale it was read on.
    pfirrmann_grade = models.PositiveSmallIntegerField(
        "Pfirrmann grade (classic, 1–5)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="Classic 5-grade scale (Pfirrmann et al., Spine 2001). Leave empty if the MRI "
        "report used the modified scale.",
    )
    modified_pfirrmann_grade = models.PositiveSmallIntegerField(
        "modified Pfirrmann grade (1–8)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(8)],
        help_text="Modified 8-grade scale (Griffith et al., Spine 2007), the scale cell-therapy "
        "trials used for eligibility.",
    )
    modic_type = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(3)]
    )
    disc_height_pct = models.FloatField(
        "disc height, % of normal",
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )
    # Meyerding grade; 0 records "no slip" as a finding, distinct from NULL (not assessed).
    spondylolisthesis_grade = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(5)]
    )
    stenosis = models.CharField(max_length=10, choices=Stenosis.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "diagnoses"
        constraints = [
            models.CheckConstraint(
                name="diagnosis_pfirrmann_1_5",
                condition=Q(pfirrmann_grade__isnull=True)
                | Q(pfirrmann_grade__gte=1, pfirrmann_grade__lte=5),
            ),
            models.CheckConstraint(
                name="diagnosis_modified_pfirrmann_1_8",
                condition=Q(modified_pfirrmann_grade__isnull=True)
                | Q(modified_pfirrmann_grade__gte=1, modified_pfirrmann_grade__lte=8),
            ),
            models.CheckConstraint(
                name="diagnosis_modic_0_3",
                condition=Q(modic_type__isnull=True) | Q(modic_type__gte=0, modic_type__lte=3),
            ),
            models.CheckConstraint(
                name="diagnosis_disc_height_pct", condition=_percent("disc_height_pct")
            ),
            models.CheckConstraint(
                name="diagnosis_spondylolisthesis_0_5",
                condition=Q(spondylolisthesis_grade__isnull=True)
                | Q(spondylolisthesis_grade__gte=0, spondylolisthesis_grade__lte=5),
            ),
        ]


class PriorTreatmentKind(models.TextChoices):
    MEDICATION = "medication", "Medication"
    STEROID_INJECTION = "steroid_injection", "Steroid injection"
    PHYSICAL_THERAPY = "physical_therapy", "Physical therapy"
    SURGERY = "surgery", "Surgery"
    OTHER = "other", "Other"


class PriorTreatment(Correctable):
    """A treatment tried before the registry episode (failed conservative care, opioid use).

    ``mme_per_day`` is derived by the service from ``medication_name`` and ``daily_dose`` with the
    CDC 2022 factors (``vertebra.core.mme``); NULL for non-opioids. It is stored because the factor
    table is versioned data that may change later, and outcomes must use the figure of the day.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="prior_treatments")
    kind = models.CharField(max_length=20, choices=PriorTreatmentKind.choices)
    details = models.TextField(blank=True)
    medication_name = models.CharField(max_length=100, blank=True)
    daily_dose = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="mg/day (fentanyl patch: mcg/hr)",
    )
    mme_per_day = models.FloatField("MME/day", null=True, blank=True)
    relief_weeks = models.PositiveSmallIntegerField(null=True, blank=True)
    started_on = models.DateField(null=True, blank=True)
    ended_on = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="prior_treatment_dose_non_negative", condition=_non_negative("daily_dose")
            ),
            models.CheckConstraint(
                name="prior_treatment_mme_non_negative", condition=_non_negative("mme_per_day")
            ),
            models.CheckConstraint(
                name="prior_treatment_dates_in_order",
                condition=Q(started_on__isnull=True)
                | Q(ended_on__isnull=True)
                | Q(ended_on__gte=F("started_on")),
            ),
        ]


class ScreeningEvaluation(models.Model):
    """A stored run of the screening rule engine: exactly what was asked and what it answered.

    ``inputs`` are the facts given to the engine, ``result`` its full JSON answer, and
    ``verdict``/``fired_rules``/``ruleset_*`` copies of the parts that lists and reports filter on.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="screenings")
    # blank=True: empty facts ({}, all unknown) and no fired rules ([]) are legitimate.
    inputs = models.JSONField(blank=True)
    verdict = models.CharField(max_length=40)
    fired_rules = models.JSONField(blank=True)
    result = models.JSONField()
    ruleset_id = models.CharField(max_length=100)
    ruleset_version = models.CharField(max_length=40)
    evaluated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    evaluated_at = models.DateTimeField()


# --------------------------------------------------------------------------------------------
# Treatment pathway
# --------------------------------------------------------------------------------------------


class Arm(models.TextChoices):
    CELL_THERAPY = "cell_therapy", "Cell therapy"
    MEDICATION = "medication", "Medication"
    STEROID_INJECTION = "steroid_injection", "Steroid injection"
    PHYSICAL_THERAPY = "physical_therapy", "Physical therapy"
    SURGERY = "surgery", "Surgery"
    OTHER = "other", "Other"


class BilledTo(models.TextChoices):
    """Who the episode's price was billed to (its main payer)."""

    SELF_PAY = "self_pay", "Self-pay (the patient)"
    INSURER = "insurer", "Insurer"
    TRIAL = "trial", "Trial-funded"
    OTHER = "other", "Other"


#: The cost fields of an episode, all optional (docs/algorithms/cost.md).
EPISODE_COST_FIELDS = ("price", "currency", "billed_to", "patient_paid", "cost_note")


class TreatmentEpisode(Correctable):
    """One course of treatment in one arm; follow-up is scheduled from ``start_date``.

    Cost (all optional, recorded when known; see docs/algorithms/cost.md): ``price`` is what
    the clinic charged for the whole episode, ``billed_to`` its main payer and
    ``patient_paid`` what the patient paid out of pocket, both in ``currency`` (ISO 4217).
    ``cost_note`` explains a payment above the price (e.g. a later extra session).
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="episodes")
    arm = models.CharField(max_length=20, choices=Arm.choices)
    start_date = models.DateField()
    price = models.DecimalField(
        "price charged", max_digits=12, decimal_places=2, null=True, blank=True
    )
    currency = models.CharField(max_length=3, blank=True, default="", db_default="")
    billed_to = models.CharField(
        max_length=10, choices=BilledTo.choices, blank=True, default="", db_default=""
    )
    patient_paid = models.DecimalField(
        "paid by the patient (out of pocket)",
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
    )
    cost_note = models.CharField("cost note", max_length=200, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(name="episode_version_positive", condition=Q(version__gte=1)),
            models.CheckConstraint(
                name="episode_price_non_negative", condition=_non_negative("price")
            ),
            models.CheckConstraint(
                name="episode_patient_paid_non_negative", condition=_non_negative("patient_paid")
            ),
        ]


class AllogeneicLot(models.Model):
    """A lot of an allogeneic cell product. It may be injected only once released."""

    lot_number = models.CharField(max_length=64, unique=True)
    product = models.CharField(max_length=200)
    released = models.BooleanField(default=False)
    released_on = models.DateField(null=True, blank=True)
    #: Last change (FHIR ``meta.lastUpdated``); the release service sets it explicitly.
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="lot_released_iff_release_date",
                condition=Q(released=True, released_on__isnull=False)
                | Q(released=False, released_on__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"Lot {self.lot_number}"


class CellSource(models.TextChoices):
    BONE_MARROW_ILIAC_CREST = "bone_marrow_iliac_crest", "Bone marrow (iliac crest)"
    ADIPOSE = "adipose", "Adipose tissue"
    UMBILICAL_CORD_ALLOGENEIC = "umbilical_cord_allogeneic", "Umbilical cord (allogeneic lot)"
    OTHER_ALLOGENEIC = "other_allogeneic", "Other allogeneic lot"


ALLOGENEIC_SOURCES = (CellSource.UMBILICAL_CORD_ALLOGENEIC, CellSource.OTHER_ALLOGENEIC)


class Harvest(Correctable):
    """Step 1 of the cell-therapy pathway: tissue harvested from the patient, or a lot received."""

    episode = models.OneToOneField(
        TreatmentEpisode, on_delete=models.PROTECT, related_name="harvest"
    )
    source = models.CharField(max_length=30, choices=CellSource.choices)
    allogeneic_lot = models.ForeignKey(
        AllogeneicLot, on_delete=models.PROTECT, null=True, blank=True, related_name="harvests"
    )
    volume_ml = models.FloatField(
        "volume (mL)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Millilitres of aspirate or lipoaspirate harvested (or of the lot received).",
    )
    harvested_on = models.DateField()
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            # An allogeneic source names its lot; an autologous one cannot.
            models.CheckConstraint(
                name="harvest_lot_iff_allogeneic",
                condition=Q(
                    source__in=[s.value for s in ALLOGENEIC_SOURCES],
                    allogeneic_lot__isnull=False,
                )
                | (
                    ~Q(source__in=[s.value for s in ALLOGENEIC_SOURCES])
                    & Q(allogeneic_lot__isnull=True)
                ),
            ),
            models.CheckConstraint(
                name="harvest_volume_non_negative", condition=_non_negative("volume_ml")
            ),
        ]


class ProcessingMethod(models.TextChoices):
    BMAC = "bmac", "Bone marrow aspirate concentrate (BMAC)"
    SVF = "svf", "Stromal vascular fraction (SVF)"
    CULTURE_EXPANDED = "culture_expanded", "Culture-expanded cells"
    OTHER = "other", "Other"


class Sterility(models.TextChoices):
    PENDING = "pending", "Pending"
    PASS = "pass", "Pass"
    FAIL = "fail", "Fail"


class Processing(Correctable):
    """Step 2: the harvested material processed into an identified product."""

    harvest = models.OneToOneField(Harvest, on_delete=models.PROTECT, related_name="processing")
    method = models.CharField(max_length=20, choices=ProcessingMethod.choices)
    lab = models.CharField(max_length=200)
    processed_on = models.DateField()
    # Units are stated once (docs/units.md): TNC in million cells per mL, as labs report it.
    tnc_per_ml = models.FloatField(
        "TNC (million cells per mL)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Total nucleated cells, in millions per mL (e.g. 121 for 121 × 10⁶/mL).",
    )
    cfu_f_per_ml = models.FloatField(
        "CFU-F (colonies per mL)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Fibroblast colony-forming units per mL (e.g. 2,713).",
    )
    cd34_pct = models.FloatField(
        "CD34+ %", null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    viability_pct = models.FloatField(
        "viability %",
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )
    sterility = models.CharField(
        max_length=10, choices=Sterility.choices, default=Sterility.PENDING
    )
    adjunct_prp = models.BooleanField("adjunct: PRP", default=False)
    adjunct_hyaluronic_acid = models.BooleanField("adjunct: hyaluronic acid", default=False)
    product_id = models.CharField(max_length=64, unique=True)

    class Meta:
        verbose_name_plural = "processing records"
        constraints = [
            models.CheckConstraint(
                name="processing_tnc_non_negative", condition=_non_negative("tnc_per_ml")
            ),
            models.CheckConstraint(
                name="processing_cfu_f_non_negative", condition=_non_negative("cfu_f_per_ml")
            ),
            models.CheckConstraint(name="processing_cd34_pct", condition=_percent("cd34_pct")),
            models.CheckConstraint(
                name="processing_viability_pct", condition=_percent("viability_pct")
            ),
        ]
        indexes = [
            # The clinician's home lists and counts products awaiting their sterility result:
            # a handful of rows, which without this index cost a scan of every processing
            # record (270,000 at 1,000,000 patients: ~20 ms, three times per home; ADR 0023
            # §12).
            models.Index(
                fields=["processed_on", "id"],
                condition=Q(sterility="pending"),
                name="processing_sterility_pending",
            ),
        ]


class InjectionTarget(models.TextChoices):
    INTRADISCAL = "intradiscal", "Intradiscal"
    FACET = "facet", "Facet joint"
    EPIDURAL = "epidural", "Epidural"
    SACROILIAC = "sacroiliac", "Sacroiliac joint"
    OTHER = "other", "Other"


class Guidance(models.TextChoices):
    FLUOROSCOPY = "fluoroscopy", "Fluoroscopy"
    ULTRASOUND = "ultrasound", "Ultrasound"
    CT = "ct", "CT"


class Injection(Correctable):
    """Step 3: an image-guided injection of one product, either a processed autologous product
    (``processing``) or a released allogeneic lot (``allogeneic_lot``), never both."""

    episode = models.ForeignKey(
        TreatmentEpisode, on_delete=models.PROTECT, related_name="injections"
    )
    processing = models.ForeignKey(
        Processing, on_delete=models.PROTECT, null=True, blank=True, related_name="injections"
    )
    allogeneic_lot = models.ForeignKey(
        AllogeneicLot, on_delete=models.PROTECT, null=True, blank=True, related_name="injections"
    )
    levels = models.JSONField(help_text='List of spinal levels, e.g. ["L4-L5", "L5-S1"]')
    target = models.CharField(max_length=20, choices=InjectionTarget.choices)
    guidance = models.CharField(max_length=20, choices=Guidance.choices)
    volume_ml = models.FloatField(
        "volume (mL)",
        validators=[MinValueValidator(0)],
        help_text="Millilitres injected in total, across every level treated.",
    )
    # Units are stated once (docs/units.md): the dose is in million cells, as trials report it.
    cell_dose = models.FloatField(
        "cell dose (million cells)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Cells given, in millions (e.g. 20 for 20 × 10⁶ cells).",
    )
    # An allogeneic lot is injected as supplied, with no Processing row to carry PRP, so PRP
    # given with an injection is recorded here. Autologous products keep recording PRP on
    # Processing.adjunct_prp; either one makes the treatment a "+ PRP" arm (outcomes).
    # db_default: rows written outside the services (bulk loads, SQL imports) that do not name
    # the column read as "no PRP" instead of failing on NOT NULL.
    adjunct_prp = models.BooleanField(
        "adjunct: PRP",
        default=False,
        db_default=False,
        help_text=(
            "Platelet-rich plasma given with this injection. Record it here for an allogeneic "
            "lot; for an autologous product PRP may also be recorded at processing."
        ),
    )
    injected_on = models.DateField()
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="injection_exactly_one_product",
                condition=Q(processing__isnull=False, allogeneic_lot__isnull=True)
                | Q(processing__isnull=True, allogeneic_lot__isnull=False),
            ),
            models.CheckConstraint(
                name="injection_volume_non_negative", condition=Q(volume_ml__gte=0)
            ),
            models.CheckConstraint(
                name="injection_dose_non_negative", condition=_non_negative("cell_dose")
            ),
        ]


# --------------------------------------------------------------------------------------------
# Adverse and clinical events
# --------------------------------------------------------------------------------------------


class AdverseEventCategory(models.TextChoices):
    PAIN_FLARE = "pain_flare", "Pain flare"
    INFECTION = "infection", "Infection"
    NEUROLOGICAL = "neurological", "Neurological"
    BLEEDING = "bleeding", "Bleeding or haematoma"
    ALLERGIC = "allergic", "Allergic reaction"
    HARVEST_SITE = "harvest_site", "Harvest-site complication"
    OTHER = "other", "Other"


class Relatedness(models.TextChoices):
    HARVEST = "harvest", "Related to harvest"
    PROCEDURE = "procedure", "Related to the injection procedure"
    PRODUCT = "product", "Related to the product"
    UNRELATED = "unrelated", "Unrelated"


class AdverseEventOutcome(models.TextChoices):
    RECOVERED = "recovered", "Recovered"
    RECOVERING = "recovering", "Recovering"
    NOT_RECOVERED = "not_recovered", "Not recovered"
    RECOVERED_WITH_SEQUELAE = "recovered_with_sequelae", "Recovered with sequelae"
    FATAL = "fatal", "Fatal"
    UNKNOWN = "unknown", "Unknown"


class AdverseEventStatus(models.TextChoices):
    PENDING = "pending", "Pending adjudication"
    ADJUDICATED = "adjudicated", "Adjudicated"


class AdverseEvent(Correctable):
    """An adverse event. Reported first (``pending``: grade and relatedness may be unknown), then
    adjudicated by a clinician, who fixes CTCAE grade and relatedness."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="adverse_events")
    # Denormalised from patient.clinic (ADR 0023 §12): the adjudication queue and the
    # clinician's home read a clinic's pending events from a partial index on it instead of
    # joining every pending event of the registry to its patient. Right by construction: a
    # patient's clinic never changes (the registry's rule), and every writer (services, the
    # cohort loader's COPY, the FHIR importer's bulk path) sets it from the patient. Nullable
    # in SQLite's table only (registry 0017); NOT NULL in PostgreSQL. No index of its own: the
    # partial index below leads with it (a clinic is never deleted while it has patients).
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+", db_index=False)
    episode = models.ForeignKey(
        TreatmentEpisode,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="adverse_events",
    )
    description = models.TextField()
    category = models.CharField(max_length=20, choices=AdverseEventCategory.choices)
    onset = models.DateField()
    ctcae_grade = models.PositiveSmallIntegerField(
        "CTCAE grade",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
    )
    serious = models.BooleanField(default=False)
    relatedness = models.CharField(max_length=20, choices=Relatedness.choices, blank=True)
    expected = models.BooleanField(null=True, blank=True)
    outcome = models.CharField(
        max_length=30, choices=AdverseEventOutcome.choices, default=AdverseEventOutcome.UNKNOWN
    )
    resolved_on = models.DateField(null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=AdverseEventStatus.choices, default=AdverseEventStatus.PENDING
    )
    adjudicated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    adjudicated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="adverse_event_grade_1_5",
                condition=Q(ctcae_grade__isnull=True) | Q(ctcae_grade__gte=1, ctcae_grade__lte=5),
            ),
            # Adjudication is complete only with a grade, a relatedness and who decided.
            models.CheckConstraint(
                name="adverse_event_adjudicated_complete",
                condition=Q(status="pending")
                | (
                    Q(status="adjudicated", ctcae_grade__isnull=False, adjudicated_by__isnull=False)
                    & ~Q(relatedness="")
                ),
            ),
            models.CheckConstraint(
                name="adverse_event_resolved_after_onset",
                condition=Q(resolved_on__isnull=True) | Q(resolved_on__gte=F("onset")),
            ),
        ]
        indexes = [
            # The adjudication queue of one clinic (or a few): its pending events in onset
            # order, and their counts (a small part of the table: the partial index stays small).
            models.Index(
                fields=["clinic", "onset", "id"],
                include=["serious"],
                condition=Q(status="pending"),
                name="adverse_event_pending_clinic",
            ),
        ]


class ClinicalEventKind(models.TextChoices):
    SUBSEQUENT_SURGERY = "subsequent_surgery", "Subsequent surgery"
    REPEAT_INJECTION = "repeat_injection", "Repeat injection"


class ClinicalEvent(Correctable):
    """An outcome event after treatment: surgery-free survival ends at ``subsequent_surgery``."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="clinical_events")
    episode = models.ForeignKey(
        TreatmentEpisode,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="clinical_events",
    )
    kind = models.CharField(max_length=30, choices=ClinicalEventKind.choices)
    occurred_on = models.DateField()
    details = models.TextField(blank=True)


# --------------------------------------------------------------------------------------------
# Audit trail
# --------------------------------------------------------------------------------------------


class _AuditEventManager(models.Manager["AuditEvent"]):
    """Reads of the trail first chain the records this transaction deferred
    (:func:`vertebra.registry.audit.deferred_audit`), so a transaction sees its own records."""

    def get_queryset(self) -> models.QuerySet[AuditEvent]:
        if getattr(connection, "_vertebra_audit_pending", None):
            from vertebra.registry.audit import flush_pending_audit

            flush_pending_audit()
        return super().get_queryset()


class AuditEvent(models.Model):
    """One append-only audit record (HIPAA 164.312(b), 21 CFR 11.10(e), ICH E6(R3) 4.2).

    Written only by :func:`vertebra.registry.audit.record_audit`, in the same transaction as the
    change it describes. ``hash`` is SHA-256 over the canonical JSON of this row's content and
    ``mac`` its keyed MAC (key outside the database, ADR 0008). The order of the trail is kept
    by :class:`AuditSeal` (ADR 0021): rows are inserted with no lock and sealed once committed.
    Rows written before migration 0013 carry the old in-row chain instead: ``seq`` (no gaps)
    and ``prev_hash`` (the previous row's ``hash``), both covered by their ``hash``; newer rows
    have both NULL. :func:`vertebra.registry.audit.check_audit_chain` verifies both.

    Actor, clinic and patient are plain integers, not foreign keys: the trail must outlive and
    never block the deletion of what it describes, and must not cascade with it.
    """

    # The old in-row chain (rows before migration 0013); NULL on sealed rows (ADR 0021).
    seq = models.PositiveBigIntegerField(unique=True, null=True)
    occurred_at = models.DateTimeField()
    actor_user_id = models.BigIntegerField(null=True)
    actor_username = models.CharField(max_length=150)
    role = models.CharField(max_length=30)
    clinic_id = models.BigIntegerField(null=True)
    patient_id = models.BigIntegerField(null=True)
    action = models.CharField(max_length=30)
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=64, blank=True)
    old_values = models.JSONField(null=True)
    new_values = models.JSONField(null=True)
    reason = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64, null=True)
    hash = models.CharField(max_length=64)
    # HMAC-SHA256 of ``hash`` with a key kept outside the database, and that key's id (ADR
    # 0008). NULL only on rows written before MACs existed.
    mac = models.CharField(max_length=64, null=True)
    mac_key = models.CharField(max_length=16, null=True)

    objects = _AuditEventManager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["patient_id", "occurred_at"], name="audit_patient_time"),
            models.Index(fields=["actor_user_id", "occurred_at"], name="audit_actor_time"),
            # The newest chain verification (registry admin's home, the audit worker): a
            # partial index holds only those rows, so the read never walks the trail (ADR 0023).
            models.Index(
                fields=["id"],
                name="audit_verify_id",
                condition=models.Q(action="verify", object_type="audit_chain"),
            ),
        ]
        # No unique hash any more: a content hash covers no position, so two records of the
        # same content at the same microsecond may share it (their seals differ).

    def __str__(self) -> str:
        return f"audit #{self.pk} {self.action} {self.object_type} {self.object_id}"


class AuditSeal(models.Model):
    """One link of the chain over committed audit rows (ADR 0021): append-only, like the trail.

    Written only by the sealer (:func:`vertebra.registry.audit.seal_pending`, the SQLite inline
    seal and the bulk writers), under the chain lock. ``seq`` numbers the seals without gaps in
    the order the rows became visible; ``row_hash`` is the sealed row's ``hash``; ``hash`` is
    SHA-256 over (``seq``, ``event_id``, ``row_hash``, ``prev_hash``) and ``mac`` its keyed MAC.
    The first seal's ``prev_hash`` is the last ``hash`` of the old in-row chain (or the genesis
    hash). ``event_id`` is a plain integer, not a foreign key: a seal must still say which row
    it vouched for after that row is gone (verification reports it missing).
    """

    seq = models.PositiveBigIntegerField(unique=True)
    event_id = models.BigIntegerField(unique=True)
    row_hash = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    mac = models.CharField(max_length=64)
    mac_key = models.CharField(max_length=16)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"audit seal #{self.seq} of row {self.event_id}"


class AuditAlert(models.Model):
    """A verification of the audit trail that found problems: shown to the registry admins
    (admin site, their home page) and e-mailed to them when raised. Written only by
    :func:`vertebra.registry.auditjob.raise_audit_alert`; the matching ``verify`` audit row is
    ``verify_seq``."""

    raised_at = models.DateTimeField()
    source = models.CharField(max_length=30)  # worker, cli, page (labels: audit_source)
    first_seq = models.BigIntegerField("first row with a problem")
    first_kind = models.CharField(max_length=30)  # labels: audit_problem
    problem_count = models.PositiveIntegerField("problems")
    message = models.TextField()
    verify_seq = models.BigIntegerField("audit row (id) recording the verification", null=True)
    emailed_to = models.PositiveIntegerField("registry admins e-mailed", default=0)

    class Meta:
        ordering = ["-raised_at"]

    def __str__(self) -> str:
        from vertebra.core.labels import label

        what = label("audit_problem", self.first_kind)
        return f"Audit alert of {self.raised_at:%Y-%m-%d %H:%M}: row {self.first_seq}, {what}"


# --------------------------------------------------------------------------------------------
# API tokens
# --------------------------------------------------------------------------------------------


class ApiToken(models.Model):
    """A bearer token for the JSON API, acting as one user in one role.

    Only the SHA-256 of the token is stored: the token itself is shown once, when issued
    (:func:`vertebra.registry.services.issue_api_token`), and cannot be recovered from the
    database. A token is usable while not revoked and not expired, and only while its user is
    active and still holds ``role`` (checked on every request, as for sessions).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for.")
    token_hash = models.CharField(max_length=64, unique=True)
    # The first characters of the token, kept so a person can tell their tokens apart.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="api_token_expires_after_created",
                condition=Q(expires_at__gt=F("created_at")),
            ),
        ]

    def __str__(self) -> str:
        return f"API token {self.prefix}… of {self.user}"
