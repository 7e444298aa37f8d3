"""The data files' YAML reader: libyaml's safe loader reads every shipped data file exactly as
PyYAML's pure-Python ``safe_load`` does, and refuses what it refuses."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from vertebra.core.yamltext import SAFE_LOADER, load_yaml


def _data_files() -> list[Path]:
    root = Path(str(files("vertebra").joinpath("data")))
    found = sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")])
    assert len(found) >= 20  # the rule sets, instruments, code lists, evidence, priors, …
    return found


def test_the_c_loader_is_used_where_pyyaml_has_it() -> None:
    assert SAFE_LOADER is getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.mark.parametrize("path", _data_files(), ids=lambda p: p.name)
def test_every_shipped_data_file_reads_as_safe_load_reads_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert load_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: [1, 2",  # unclosed flow sequence
        "a: b\n c: d\n\t- e",  # a tab where indentation is expected
        "!!python/object:os.system 'echo no'",  # an object-building tag: never with a safe loader
    ],
)
def test_bad_or_unsafe_yaml_is_refused_as_safe_load_refuses_it(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)
    with pytest.raises(yaml.YAMLError):
        load_yaml(text)


def test_plain_values_keep_their_types() -> None:
    text = "n: 10\nx: 0.5\nflag: true\nnothing: null\nday: 2026-12-07\nwords: 'Zürich'\n"
    assert load_yaml(text) == yaml.safe_load(text)
