"""Loading a synthetic cohort (``vertebra.core.synth``) into the registry database.

The bulk path writes the same rows, and the same one-audit-record-per-created-object trail, as
the registry's services would, but in a few large statements: ``COPY`` on PostgreSQL and
``executemany`` on SQLite. It is for synthetic data only (the demo and the benchmarks): real
patients always go through the services, one validated, permission-checked write at a time.
"""
