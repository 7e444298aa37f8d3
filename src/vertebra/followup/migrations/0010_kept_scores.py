"""Each time point's analysed scores, kept by triggers (ADR 0020 §6).

The registry read pivoted every live response into one row per time point: at 1,000,000
patients an aggregate of 31.5 M responses into 3.9 M groups, 31-41 s of the server's time on
every read (an index-only scan of a covering index still took 35 s: the cost is aggregating,
not reading). ``TimePointScores`` holds that pivot, one row per time point with a live
response of an analysed instrument, written by triggers on the response table in the writer's
own transaction, for every path (ORM saves and ``update()``, ``bulk_create``, the loader's COPY,
the importer, corrections and voids):

* INSERT: the new live responses, pivoted per time point, are upserted, each column taking the
  new value where the statement brought one (one response per (time point, instrument) is a
  database constraint, so an insert only ever fills columns that were empty).
* UPDATE and DELETE: the time points whose responses changed in a way that matters (score,
  band, voided, instrument, time point, when answered) are recomputed from their live
  responses; their time point rows are locked first, so two corrections of one time point
  recompute one after the other and neither loses the other's change.
* PostgreSQL: statement-level triggers with transition tables (a COPY of 300,000 responses is
  one grouped upsert, as for the counts of ``followup 0008``); SQLite (the demo): row triggers.
* Backfill: one grouped INSERT of the existing live responses, with the response table locked
  against writers from the start, so no response is written between the backfill and the
  triggers.

The instruments and their columns are frozen here (a migration must not follow later code):
adding an analysed instrument is a new migration that adds its column and replaces the
triggers (``tests/followup/test_kept_scores.py`` fails until it is done).
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

RESPONSE = "followup_questionnaireresponse"
KEPT = "followup_timepointscores"
POINT = "followup_followuptimepoint"
#: analysed instrument -> its score column (``SCORE_COLUMNS`` when this migration was written)
SCORES = (
    ("odi", "odi"),
    ("nrs_back", "nrs_back"),
    ("nrs_leg", "nrs_leg"),
    ("promis_pf_4a", "promis_pf"),
    ("promis_pi_4a", "promis_pi"),
    ("opioid_use", "mme"),
    ("psfs", "psfs"),
)
#: categorical instrument -> its band column (``BAND_COLUMNS``, and STarT Back at baseline)
BANDS = (("work_status", "work_status_band"), ("startback", "startback_band"))
COLUMNS = [c for _, c in SCORES] + [c for _, c in BANDS] + ["startback_at", "startback_id"]
INSTRUMENTS = ", ".join(f"'{i}'" for i, _ in (*SCORES, *BANDS))


def _values(q: str, *, aggregate: bool) -> str:
    """The kept columns from response alias ``q`` (``NEW`` for a row trigger): pivoted with
    MAX over a time point's rows when ``aggregate``, else one row's values."""

    def pick(condition: str, value: str) -> str:
        case = f"CASE WHEN {condition} THEN {value} END"
        return f"MAX({case})" if aggregate else case

    answered_startback = f"{q}.instrument_id = 'startback' AND {q}.band <> ''"
    return ", ".join(
        [pick(f"{q}.instrument_id = '{i}'", f"{q}.score") for i, _ in SCORES]
        + [pick(f"{q}.instrument_id = '{i}' AND {q}.band <> ''", f"{q}.band") for i, _ in BANDS]
        + [pick(answered_startback, f"{q}.submitted_at"), pick(answered_startback, f"{q}.id")]
    )


def _pivot(source: str, where: str) -> str:
    """INSERT of the pivoted live responses of ``source`` (alias q) matching ``where``."""
    return (
        f"INSERT INTO {KEPT} (time_point_id, {', '.join(COLUMNS)})"
        f" SELECT q.time_point_id, {_values('q', aggregate=True)} FROM {source} q"
        f" WHERE q.voided_at IS NULL AND q.instrument_id IN ({INSTRUMENTS}){where}"
        " GROUP BY q.time_point_id ORDER BY 1"
    )


FILL = ", ".join(f"{c} = COALESCE(EXCLUDED.{c}, k.{c})" for c in COLUMNS)
SQLITE_FILL = ", ".join(f"{c} = COALESCE(excluded.{c}, {c})" for c in COLUMNS)
#: a change to a response that changes what is kept
MATTERS = "(o.score, o.band, o.voided_at, o.instrument_id, o.time_point_id, o.submitted_at)"
CHANGED = f"{MATTERS} IS DISTINCT FROM {MATTERS.replace('o.', 'n.')}"


def _recompute_pg(affected: str) -> str:
    """plpgsql body: recompute the kept rows of the time points ``affected`` (a SELECT over
    the statement's transition tables)."""
    return f"""
    BEGIN
        IF NOT EXISTS ({affected}) THEN RETURN NULL; END IF;
        PERFORM 1 FROM {POINT} WHERE id IN ({affected}) ORDER BY id FOR UPDATE;
        DELETE FROM {KEPT} WHERE time_point_id IN ({affected});
        {_pivot(RESPONSE, f" AND q.time_point_id IN ({affected})")};
        RETURN NULL;
    END"""


POSTGRES_CREATE = [
    f"""
    CREATE FUNCTION followup_kept_scores_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_pivot("new_rows", "")} ON CONFLICT (time_point_id) DO UPDATE SET {FILL};
        RETURN NULL;
    END $$;
    """.replace(f"INSERT INTO {KEPT} ", f"INSERT INTO {KEPT} AS k "),
    f"""
    CREATE FUNCTION followup_kept_scores_update() RETURNS trigger LANGUAGE plpgsql AS $$
    {
        _recompute_pg(
            "SELECT o.time_point_id FROM old_rows o JOIN new_rows n ON n.id = o.id "
            f"WHERE {CHANGED} UNION SELECT n.time_point_id FROM old_rows o "
            f"JOIN new_rows n ON n.id = o.id WHERE {CHANGED}"
        )
    } $$;
    """,
    f"""
    CREATE FUNCTION followup_kept_scores_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    {_recompute_pg("SELECT DISTINCT o.time_point_id FROM old_rows o")} $$;
    """,
    f"""CREATE TRIGGER followup_kept_scores_insert AFTER INSERT ON {RESPONSE}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION followup_kept_scores_insert();""",
    f"""CREATE TRIGGER followup_kept_scores_update AFTER UPDATE ON {RESPONSE}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION followup_kept_scores_update();""",
    f"""CREATE TRIGGER followup_kept_scores_delete AFTER DELETE ON {RESPONSE}
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION followup_kept_scores_delete();""",
]
POSTGRES_DROP = [
    f"DROP TRIGGER IF EXISTS followup_kept_scores_{event} ON {RESPONSE};"
    for event in ("insert", "update", "delete")
] + [
    f"DROP FUNCTION IF EXISTS followup_kept_scores_{event}();"
    for event in ("insert", "update", "delete")
]


def _recompute_sqlite(points: str) -> str:
    """Row-trigger statements: recompute the kept rows of the time points ``points``."""
    return (
        f"DELETE FROM {KEPT} WHERE time_point_id IN ({points});"
        f" {_pivot(RESPONSE, f' AND q.time_point_id IN ({points})')};"
    )


SQLITE_CREATE = [
    f"""CREATE TRIGGER followup_kept_scores_insert AFTER INSERT ON {RESPONSE}
    WHEN NEW.voided_at IS NULL AND NEW.instrument_id IN ({INSTRUMENTS}) BEGIN
        INSERT INTO {KEPT} (time_point_id, {", ".join(COLUMNS)})
        VALUES (NEW.time_point_id, {_values("NEW", aggregate=False)})
        ON CONFLICT (time_point_id) DO UPDATE SET {SQLITE_FILL};
    END;""",
    f"""CREATE TRIGGER followup_kept_scores_update
    AFTER UPDATE OF score, band, voided_at, instrument_id, time_point_id, submitted_at
    ON {RESPONSE} BEGIN
        {_recompute_sqlite("OLD.time_point_id, NEW.time_point_id")}
    END;""",
    f"""CREATE TRIGGER followup_kept_scores_delete AFTER DELETE ON {RESPONSE} BEGIN
        {_recompute_sqlite("OLD.time_point_id")}
    END;""",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS followup_kept_scores_{event};"
    for event in ("insert", "update", "delete")
]


def create_triggers(apps: Any, schema_editor: Any) -> None:
    """Fill the kept scores from the existing live responses, then keep them with triggers."""
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:  # no response may be written between the backfill and the triggers
        schema_editor.execute(f"LOCK TABLE {RESPONSE} IN SHARE ROW EXCLUSIVE MODE", params=None)
        # The backfill's hash aggregate (3.9 M groups at 1,000,000 patients) spills to disk
        # with the default 4 MB.
        schema_editor.execute("SET LOCAL work_mem = '256MB'", params=None)
    schema_editor.execute(_pivot(RESPONSE, ""), params=None)
    for sql in POSTGRES_CREATE if postgres else SQLITE_CREATE:
        schema_editor.execute(sql, params=None)


def drop_triggers(apps: Any, schema_editor: Any) -> None:
    postgres = schema_editor.connection.vendor == "postgresql"
    for sql in POSTGRES_DROP if postgres else SQLITE_DROP:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("followup", "0009_time_point_clinic"),
    ]

    operations = [
        migrations.CreateModel(
            name="TimePointScores",
            fields=[
                (
                    "time_point",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="followup.followuptimepoint",
                    ),
                ),
                ("odi", models.FloatField(null=True)),
                ("nrs_back", models.FloatField(null=True)),
                ("nrs_leg", models.FloatField(null=True)),
                ("promis_pf", models.FloatField(null=True)),
                ("promis_pi", models.FloatField(null=True)),
                ("mme", models.FloatField(null=True)),
                ("psfs", models.FloatField(null=True)),
                ("work_status_band", models.CharField(max_length=40, null=True)),
                ("startback_band", models.CharField(max_length=40, null=True)),
                ("startback_at", models.DateTimeField(null=True)),
                ("startback_id", models.BigIntegerField(null=True)),
            ],
        ),
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]
