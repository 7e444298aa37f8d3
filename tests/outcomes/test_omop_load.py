"""The OMOP CDM v5.4 export loads into the official OHDSI DDL with its constraints.

`vertebra export research --format omop` on the ``db_env`` registry (60 synthetic patients);
the vendored DDL (src/vertebra/data/omop/ddl, OHDSI/CommonDataModel inst/ddl/5.4, Apache 2.0)
is created in a fresh schema, the export (with its minimal vocabulary tables) is loaded, and
the official primary-key and foreign-key files are applied. PostgreSQL applies every
constraint; DuckDB cannot add a foreign key to an existing table, so there every foreign key
of the same official file is checked as a query.
"""

from __future__ import annotations

import os
import re
import secrets
from importlib.resources import files
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.outcomes.test_research_export import _identifiers
from vertebra.core.omop import CDM_TABLES, VOCABULARY_TABLES

DDL = files("vertebra").joinpath("data", "omop", "ddl")
FK = re.compile(
    r"ALTER TABLE @cdmDatabaseSchema\.(\w+) ADD CONSTRAINT \w+ FOREIGN KEY \((\w+)\) "
    r"REFERENCES @cdmDatabaseSchema\.(\w+) \((\w+)\);",
    re.IGNORECASE,
)


def _sql(dialect: str, part: str, schema: str) -> list[str]:
    """The statements of one official DDL file for ``schema``."""
    text = DDL.joinpath(dialect, f"OMOPCDM_{dialect}_5.4_{part}.sql").read_text("utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.replace("@cdmDatabaseSchema", schema).split(";") if s.strip()]


@pytest.fixture(scope="module")
def omop_dir(db_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("omop") / "omop"
    done = run_cli("export", "research", "--out", str(out), "--format", "omop",
                   "--as-of", "2026-11-25", env=db_env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def _frames(folder: Path) -> dict[str, pd.DataFrame]:
    return {t: pd.read_csv(folder / f"{t}.csv", dtype=str, keep_default_na=False)
            for t in (*CDM_TABLES, *VOCABULARY_TABLES)}  # fmt: skip


def test_omop_tables_hold_the_release_and_no_identifier(
    omop_dir: Path, db_env: dict[str, str]
) -> None:
    frames = _frames(omop_dir)
    person = frames["person"]
    n = len(person)
    assert 11 <= n < 60 and sorted(person["person_id"].astype(int)) == list(range(1, n + 1))
    assert set(person["gender_concept_id"]) <= {"8507", "8532", "0"}
    assert len(frames["observation_period"]) == n
    assert (frames["visit_occurrence"]["visit_concept_id"] == "9202").all()
    assert len(frames["condition_occurrence"]) >= n and len(frames["procedure_occurrence"]) >= n
    assert len(frames["measurement"]) > n
    # The cell product of each released cell-therapy patient (the minimum cell size may
    # withhold every cell arm of this small cohort).
    cell_arms = frames["procedure_occurrence"]["procedure_source_value"].str.match(
        r"^(bmac|adipose|allogeneic)"
    )
    assert len(frames["device_exposure"]) == cell_arms.sum()
    used = {
        v for f in frames.values() for c in f.columns if c.endswith("concept_id") for v in f[c] if v
    }
    assert used <= set(frames["concept"]["concept_id"])
    values, names = _identifiers(db_env)
    cells = {str(v) for f in frames.values() for v in f.to_numpy().ravel()}
    identifying = {v for v in values if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v)}
    assert len(identifying) > 100 and not cells & (identifying | names)
    # Dates are shifted: treatment on 1 January of the treatment year.
    treated = frames["procedure_occurrence"].merge(person, on="person_id")
    first = treated.groupby("person_id")["procedure_date"].min()
    assert first.str.endswith("-01-01").all()


def _load_duckdb(folder: Path) -> list[str]:
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE SCHEMA cdm")
    for stmt in _sql("duckdb", "ddl", "cdm"):
        con.execute(stmt)
    for table in (*VOCABULARY_TABLES, *CDM_TABLES):
        path = folder / f"{table}.csv"
        cols = ", ".join(pd.read_csv(path, nrows=0).columns)
        con.execute(f"INSERT INTO cdm.{table} ({cols}) SELECT * FROM read_csv(?, header=true, all_varchar=true)", [str(path)])  # fmt: skip
    for stmt in _sql("duckdb", "primary_keys", "cdm"):
        con.execute(stmt)
    broken = []
    text = DDL.joinpath("duckdb", "OMOPCDM_duckdb_5.4_constraints.sql").read_text("utf-8")
    fks = FK.findall(text)
    assert len(fks) > 100
    for table, col, ref, ref_col in fks:
        orphans = con.execute(
            f"SELECT count(*) FROM cdm.{table} t WHERE t.{col} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM cdm.{ref} r WHERE r.{ref_col} = t.{col})"
        ).fetchone()
        if orphans and orphans[0]:
            broken.append(f"{table}.{col} -> {ref}.{ref_col}: {orphans[0]}")
    counts = [con.execute(f"SELECT count(*) FROM cdm.{t}").fetchone() for t in CDM_TABLES]
    con.close()
    return broken + [f"count {t}={c[0]}" for t, c in zip(CDM_TABLES, counts, strict=True) if c]


def test_omop_loads_into_the_official_duckdb_ddl(omop_dir: Path) -> None:
    result = _load_duckdb(omop_dir)
    assert [r for r in result if not r.startswith("count ")] == []
    frames = _frames(omop_dir)
    assert {r for r in result if r.startswith("count ")} == {
        f"count {t}={len(frames[t])}" for t in CDM_TABLES
    }


@pytest.mark.postgresql
def test_omop_loads_into_the_official_postgresql_ddl_with_constraints(omop_dir: Path) -> None:
    import psycopg

    url = os.environ["DATABASE_URL"]
    schema = f"omop_{secrets.token_hex(4)}"
    frames = _frames(omop_dir)
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
        try:
            for stmt in _sql("postgresql", "ddl", schema):
                con.execute(stmt)  # type: ignore[arg-type]
            for table in (*VOCABULARY_TABLES, *CDM_TABLES):
                path = omop_dir / f"{table}.csv"
                cols = ", ".join(pd.read_csv(path, nrows=0).columns)
                copy = f"COPY {schema}.{table} ({cols}) FROM STDIN WITH (FORMAT csv, HEADER true)"
                with con.cursor() as cur, cur.copy(copy) as sink:  # type: ignore[arg-type]
                    sink.write(path.read_bytes())
            for part in ("primary_keys", "constraints"):
                for stmt in _sql("postgresql", part, schema):
                    con.execute(stmt)  # type: ignore[arg-type]
            fks = con.execute(
                "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                "WHERE n.nspname = %s AND c.contype = 'f'",
                (schema,),
            ).fetchone()
            assert fks is not None and fks[0] > 100
            for table in CDM_TABLES:
                got = con.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()  # type: ignore[arg-type]
                assert got is not None and got[0] == len(frames[table]), table
        finally:
            con.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]
