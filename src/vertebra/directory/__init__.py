"""The public clinic directory: each clinic's regulatory status, outcomes and answers, published
with its clinic admin's consent (docs/clinic-directory.md, ADR 0014)."""
