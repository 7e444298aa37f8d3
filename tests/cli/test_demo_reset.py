"""``vertebra demo --reset`` starts afresh: the decision aid's cached figures of the deleted
database (same file name, so the same cache key) go with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vertebra.cli.demo import prepare_environment


def test_reset_deletes_cached_figures_of_the_old_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("VERTEBRA_ENV", "DATABASE_URL", "SECRET_KEY", "DEBUG", "VERTEBRA_DATA_DIR"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
    cached = tmp_path / "cache" / "decision-aid" / "entry.djcache"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"old figures")
    prepare_environment(tmp_path, reset=False)
    assert cached.exists()  # a restart keeps the warm cache of the same database
    prepare_environment(tmp_path, reset=True)
    assert not cached.exists()
