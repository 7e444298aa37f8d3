"""Analysis engines outside the pure core: DuckDB over Parquet for cohorts larger than memory.

`vertebra.core.analytics` holds the statistics (pure: numpy/pandas/scipy/lifelines, no I/O
beyond reading the tables it is given). This package runs the same report out of core
(`duckdb_report.build_report_duckdb`, ADR 0024): DuckDB aggregates the long time-point table
and hands the core counts, not rows.
"""
