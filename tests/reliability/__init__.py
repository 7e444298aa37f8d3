"""Reliability tests: kill -9 during submissions, and database faults (full, locked, cut)."""
