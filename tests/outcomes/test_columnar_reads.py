"""The columnar registry read (``vertebra.outcomes.columnar``) gives exactly the tables of the
ORM reference read (``selectors._read_tables_orm``): same rows, values, dtypes and left-out
counts, identified and de-identified, registry-wide and clinic-scoped, for any cohort filter,
with voided and implausibly dated rows. Both databases (the suite runs on each).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.outcomes.conftest import NOW, TODAY
from tests.outcomes.test_odd_rows import _corrupt
from vertebra.core.analytics import AnalysisTables, CohortFilter
from vertebra.core.synth import Cohort
from vertebra.followup.models import QuestionnaireResponse
from vertebra.outcomes import columnar
from vertebra.outcomes.selectors import (
    AUDIT_OBJECT_TYPE,
    Scope,
    _read_tables_orm,
    _system_tables_orm,
    read_tables,
    system_tables,
)
from vertebra.registry.models import (
    AuditEvent,
    Clinic,
    Diagnosis,
    Injection,
    Patient,
    TreatmentEpisode,
)

pytestmark = pytest.mark.django_db

ARMS = ("bmac", "bmac_prp", "adipose", "adipose_prp", "allogeneic", "allogeneic_prp",
        "conservative", "sham")  # fmt: skip
CONDITIONS = ("degenerative_disc_disease", "herniated_disc", "sciatica", "facet_arthropathy")


@pytest.fixture
def fixed_pseudonyms(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every de-identification draws the same pseudonyms (seed 3), so two reads compare."""
    real = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda *_: real(3))
    yield


def assert_same(fast: AnalysisTables, reference: AnalysisTables) -> None:
    """Identical tables: every column, value and dtype, row order, and the left-out counts."""
    assert fast.time_base == reference.time_base
    for name in ("patients", "timepoints", "events"):
        got, want = getattr(fast, name), getattr(reference, name)
        if want.empty:  # the reference's empty frames lose their dtypes (object): ours keep them
            assert got.empty and list(got.columns) == list(want.columns), name
            continue
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)
    assert fast.exclusions == reference.exclusions


def _both(scope: Scope, flt: CohortFilter | None = None, **kwargs: Any) -> AnalysisTables:
    fast = read_tables(scope, flt, **kwargs)
    assert_same(fast, _read_tables_orm(scope, flt, **kwargs))
    return fast


def test_identified_registry_wide_with_mrn(loaded: Cohort) -> None:
    tables = _both(Scope(clinic_ids=None, deidentified=False), with_mrn=True)
    assert len(tables.patients) == 120
    assert len(tables.timepoints) == len(loaded.timepoints)
    assert len(tables.events) == len(loaded.events)
    assert tables.patients["mrn"].str.startswith("SYN-").all()
    # The columns other features added (cost, work status) are compared too, and are filled.
    assert tables.patients["cost_price"].notna().sum() > 50
    assert set(tables.patients["cost_currency"].dropna()) == {"usd"}
    assert tables.timepoints["work_status_band"].notna().sum() > 50


def test_identified_one_clinic(loaded: Cohort) -> None:
    clinic = Clinic.objects.order_by("pk").first()
    assert clinic is not None
    tables = _both(Scope(clinic_ids=frozenset({clinic.pk}), deidentified=False))
    assert 0 < len(tables.patients) < 120
    assert set(tables.patients["clinic_id"]) == {str(clinic.pk)}


def test_deidentified_registry_wide(loaded: Cohort, fixed_pseudonyms: None) -> None:
    tables = _both(Scope(clinic_ids=None, deidentified=True), as_of=TODAY)
    assert tables.time_base == "days_from_treatment"
    assert sorted(tables.patients["patient_id"]) == list(range(1, 121))


def test_item_answers(loaded: Cohort) -> None:
    tables = _both(Scope(clinic_ids=None, deidentified=False), with_items=True)
    answered = tables.timepoints.filter(like="odi_").notna().to_numpy().sum()
    assert answered > 100  # item columns were read, not just created empty


def test_voided_rows_never_count(loaded: Cohort) -> None:
    """Voided episodes, diagnoses, injections and answers are left out the same way."""
    first, second, third = list(dict.fromkeys(
        TreatmentEpisode.objects.order_by("patient_id").values_list("patient_id", flat=True)
    ))[:3]  # fmt: skip
    TreatmentEpisode.objects.filter(patient_id=first).update(voided_at=NOW)
    Diagnosis.objects.filter(patient_id=second).update(voided_at=NOW)
    Injection.objects.filter(episode__patient_id=third).update(voided_at=NOW)
    QuestionnaireResponse.objects.filter(time_point__patient_id=third).update(voided_at=NOW)
    tables = _both(Scope(clinic_ids=None, deidentified=False))
    assert first not in set(tables.patients["patient_id"])
    row = tables.patients.set_index("patient_id")
    assert row.loc[second, "condition"] == "unknown"
    assert tables.timepoints.loc[tables.timepoints["patient_id"] == third, "odi"].isna().all()


def test_implausible_dates_are_left_out_and_counted_alike(
    loaded: Cohort, fixed_pseudonyms: None
) -> None:
    _corrupt()
    tables = _both(Scope(clinic_ids=None, deidentified=False))
    assert sum(e.count for e in tables.exclusions) == 5
    _both(Scope(clinic_ids=None, deidentified=True), as_of=TODAY)


def test_a_year_9999_follow_up_date_is_counted(loaded: Cohort) -> None:
    """A time point dated far outside the window cannot reach a datetime column (it would
    overflow): nulled in SQL, counted, left out."""
    from vertebra.followup.models import FollowUpTimePoint

    point = FollowUpTimePoint.objects.order_by("pk").first()
    assert point is not None
    FollowUpTimePoint.objects.filter(pk=point.pk).update(
        opens=dt.date(9999, 1, 1), target=dt.date(9999, 1, 2), closes=dt.date(9999, 1, 3)
    )
    tables = _both(Scope(clinic_ids=None, deidentified=False))
    assert [(e.what, e.count) for e in tables.exclusions] == [("follow-up time points", 1)]


FILTERS = st.builds(
    CohortFilter,
    clinics=st.lists(st.sampled_from(["1", "2", "3", "x"]), max_size=2).map(tuple),
    arms=st.lists(st.sampled_from(ARMS), max_size=3).map(tuple),
    conditions=st.lists(st.sampled_from(CONDITIONS), max_size=2).map(tuple),
    dose_min=st.one_of(st.none(), st.sampled_from([0.0, 10.0, 50.0])),
    treated_from=st.one_of(st.none(), st.dates(dt.date(2023, 1, 1), dt.date(2026, 6, 1))),
    treated_to=st.one_of(st.none(), st.dates(dt.date(2024, 1, 1), dt.date(2026, 12, 31))),
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(flt=FILTERS, deidentified=st.booleans(), one_clinic=st.booleans())
def test_any_filter_and_scope_gives_the_same_tables(
    loaded: Cohort, fixed_pseudonyms: None, flt: CohortFilter, deidentified: bool, one_clinic: bool
) -> None:
    """Property: whatever the filter, scope and de-identification, the tables are equal."""
    clinics = sorted(Clinic.objects.values_list("pk", flat=True))
    scope = Scope(
        clinic_ids=frozenset(clinics[:1]) if one_clinic else None, deidentified=deidentified
    )
    _both(scope, flt, as_of=TODAY)


def test_system_tables_keeps_its_audit_row(loaded: Cohort, fixed_pseudonyms: None) -> None:
    """One audit row per read, the same for the columnar and the reference read."""
    before = AuditEvent.objects.filter(object_type=AUDIT_OBJECT_TYPE).count()
    fast = system_tables(purpose="test", deidentified=True, as_of=TODAY)
    reference = _system_tables_orm(purpose="test", deidentified=True, as_of=TODAY)
    assert_same(fast, reference)
    rows = list(AuditEvent.objects.filter(object_type=AUDIT_OBJECT_TYPE).order_by("id")[before:])
    assert [r.new_values for r in rows] == [rows[0].new_values] * 2
    assert rows[0].actor_username == "system:test"
    assert (rows[0].new_values or {}).get("n_patients") == 120


def test_selects_inline_only_codes_dates_and_integers() -> None:
    """Nothing but checked literals reaches the SQL text; clinic ids are integers."""
    with pytest.raises(ValueError, match="not a code"):
        columnar._code("x'; DROP TABLE registry_patient; --")
    window = (dt.date(1900, 1, 1), dt.date(2027, 11, 25))
    selects = columnar.registry_selects("sqlite", frozenset({3, 1}), window, dt.date(2030, 1, 1))
    assert "clinic_id IN (1, 3)" in selects["episodes"].sql
    none = columnar.registry_selects("postgresql", frozenset(), window, dt.date(2030, 1, 1))
    assert "clinic_id IN (NULL)" in none["episodes"].sql


def test_a_patient_without_any_rows_reads_as_empty_tables() -> None:
    tables = _both(Scope(clinic_ids=None, deidentified=False))
    assert len(tables.patients) == 0 and len(tables.timepoints) == 0
    assert Patient.objects.count() == 0


@pytest.mark.postgresql  # a second connection sharing the snapshot is PostgreSQL's
@pytest.mark.django_db(transaction=True)
def test_the_time_points_read_beside_on_a_shared_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With nothing written in the read's transaction, the time points come from a second
    connection that imports the snapshot: the same frames as reading them one after another."""
    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort

    load_cohort(generate_cohort(60, 4, today=TODAY), now=NOW)  # committed
    monkeypatch.setattr(columnar, "_adbc_dbapi", lambda: None)  # the fallback without ADBC
    used: list[str] = []
    real_beside = columnar._fetch_beside

    def spy(selects: Any, snapshot: str) -> Any:
        used.append(snapshot)
        return real_beside(selects, snapshot)

    monkeypatch.setattr(columnar, "_fetch_beside", spy)
    beside = columnar.read_frames(None)
    assert len(used) == 1
    # inside a caller's transaction that audits after the read (an operator's export)
    tables = system_tables(purpose="test")
    assert len(used) == 2 and len(tables.timepoints) == 60 * 6
    # inside a savepoint: no snapshot can be exported, the read stays on one connection
    with transaction.atomic(), transaction.atomic():
        assert len(columnar.read_frames(None).frames["timepoints"]) == 60 * 6
    assert len(used) == 2
    monkeypatch.setattr(columnar, "_snapshot_to_share", lambda: None)
    one_by_one = columnar.read_frames(None)
    assert list(beside.frames) == list(one_by_one.frames)
    for name, frame in one_by_one.frames.items():
        pd.testing.assert_frame_equal(beside.frames[name], frame)
    assert len(beside.frames["timepoints"]) == 60 * 6


@pytest.mark.postgresql
def test_a_read_after_a_write_in_its_transaction_stays_on_one_connection(
    loaded: Cohort,
) -> None:
    """Another connection would not see this transaction's own rows (the tests' data)."""
    assert Patient.objects.exists()  # written in the test's open transaction
    assert columnar._snapshot_to_share() is None


def _frames_alike(got: columnar.Frames, want: columnar.Frames) -> None:
    """The same frames, column by column: names, order, dtypes and values (exactly)."""
    assert list(got.frames) == list(want.frames)
    for name, frame in want.frames.items():
        assert list(got.frames[name].columns) == list(frame.columns), name
        for column in frame.columns:
            pd.testing.assert_series_equal(
                got.frames[name][column], frame[column], check_exact=True, obj=f"{name}.{column}"
            )


def _csv_frames(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> columnar.Frames:
    """The frames read by CSV ``COPY`` on the Django connection alone (no ADBC, no snapshot)."""
    with monkeypatch.context() as patch:
        patch.setattr(columnar, "_adbc_dbapi", lambda: None)
        patch.setattr(columnar, "_snapshot_to_share", lambda: None)
        return columnar.read_frames(None, **kwargs)


def _spy_adbc(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    used: list[str] = []
    real = columnar._fetch_adbc

    def spy(dbapi: Any, selects: Any, snapshot: str) -> Any:
        used.append(snapshot)
        return real(dbapi, selects, snapshot)

    monkeypatch.setattr(columnar, "_fetch_adbc", spy)
    return used


needs_adbc = pytest.mark.skipif(columnar._adbc_dbapi() is None, reason="adbc-driver-postgresql")


@needs_adbc
@pytest.mark.postgresql  # ADBC reads PostgreSQL
@pytest.mark.django_db(transaction=True)
def test_adbc_reads_the_same_frames_as_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a snapshot to share, every SELECT is fetched by ADBC (binary COPY into Arrow) on
    two connections: the same frames as CSV COPY, dtypes included, with NULLs, implausible
    dates, numeric costs, empty and non-ASCII strings and CSV-hostile text (quotes, commas,
    newlines) in the columns."""
    from django.contrib.auth.models import User

    from vertebra.cohort.loader import load_cohort
    from vertebra.core.synth import generate_cohort
    from vertebra.registry.models import ScreeningEvaluation

    load_cohort(generate_cohort(60, 4, today=TODAY), now=NOW)  # committed
    _corrupt()  # year-25, year-1850, year-1, year-9999 dates
    odd_text = 'Zürich "Süd", 東京\nline 2'
    first, second = Patient.objects.order_by("pk").values_list("pk", flat=True)[:2]
    Patient.objects.filter(pk=first).update(mrn=odd_text)
    Patient.objects.filter(pk=second).update(mrn="")
    ScreeningEvaluation.objects.create(
        patient_id=first, inputs={}, verdict="x", fired_rules=[], ruleset_id="x",
        ruleset_version="1", evaluated_by=User.objects.create(username="screener"),
        evaluated_at=NOW, result={"startback": {"risk_group": odd_text}},
    )  # fmt: skip
    item_instruments = {c.instrument for c in columnar._item_columns()}
    used = _spy_adbc(monkeypatch)
    got = columnar.read_frames(None, with_mrn=True, item_instruments=item_instruments)
    assert len(used) == 1
    want = _csv_frames(monkeypatch, with_mrn=True, item_instruments=item_instruments)
    _frames_alike(got, want)
    episodes = got.frames["episodes"]
    assert odd_text in set(episodes["mrn"]) and "" in set(episodes["mrn"])
    assert odd_text in set(episodes["screened_group"])
    assert episodes["cost_price"].dtype == np.float64 and episodes["cost_price"].notna().any()
    assert episodes["treatment_date"].isna().any()  # the year-25 episode, nulled in SQL
    assert len(got.frames["items"]) > 0


@needs_adbc
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_adbc_reads_an_empty_registry_as_typed_empty_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    used = _spy_adbc(monkeypatch)
    got = columnar.read_frames(None)
    assert len(used) == 1
    assert all(len(frame) == 0 for frame in got.frames.values())
    _frames_alike(got, _csv_frames(monkeypatch))


@needs_adbc
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_adbc_errors_are_database_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure on an ADBC connection (a snapshot that does not exist, a server that does not
    answer) is raised in the caller's thread as Django's DatabaseError, without the password."""
    from django.db import DatabaseError, connection

    window = (dt.date(1900, 1, 1), TODAY)
    selects = columnar.registry_selects("postgresql", None, window, dt.date(2030, 1, 1))
    with pytest.raises(DatabaseError, match="snapshot"):
        columnar._fetch_adbc(columnar._adbc_dbapi(), selects, "00000003-0000FFFF-1")
    monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")
    monkeypatch.setitem(connection.settings_dict, "PASSWORD", "s3cret-pw")
    with pytest.raises(DatabaseError, match="connect") as failed:
        columnar._fetch_adbc(columnar._adbc_dbapi(), selects, "00000003-0000FFFF-1")
    assert "s3cret" not in str(failed.value)


@pytest.mark.postgresql
def test_adbc_connects_as_the_django_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """ADBC's connection string carries the Django connection's parameters (quoted: a socket
    directory, a password with spaces and quotes) and none of psycopg's Python-only ones."""
    from django.db import connection
    from psycopg.conninfo import conninfo_to_dict

    params = connection.settings_dict
    info = conninfo_to_dict(columnar._conninfo())
    assert info["dbname"] == params["NAME"]
    assert {k: info.get(k) for k in ("host", "port", "user")} == {
        "host": params["HOST"] or None,
        "port": str(params["PORT"]) if params["PORT"] else None,
        "user": params["USER"] or None,
    }
    assert not {"context", "cursor_factory", "prepare_threshold"} & set(info)
    monkeypatch.setitem(params, "HOST", "/var/run/postgresql")
    monkeypatch.setitem(params, "PASSWORD", "p w'd\\x")
    info = conninfo_to_dict(columnar._conninfo())
    assert info["host"] == "/var/run/postgresql" and info["password"] == "p w'd\\x"
