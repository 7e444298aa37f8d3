"""Reading the versioned data files (instrument definitions, rule sets, code lists, evidence).

Every data file is YAML read with PyYAML's *safe* loader. :func:`load_yaml` uses the libyaml
(C) build of that loader when PyYAML has it, as its wheels do: the same documents, about ten
times faster (all shipped data files: 0.49 s pure Python against 0.05 s, identical results —
``tests/core/test_yamltext.py``), which every process pays once when it first reads them.
"""

from __future__ import annotations

from typing import IO, Any

import yaml

#: libyaml's safe loader when PyYAML was built with it, else the pure-Python one.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(source: str | bytes | IO[str] | IO[bytes]) -> Any:
    """The YAML document in ``source`` as Python data, as ``yaml.safe_load`` reads it (only
    plain data types; no tags that build objects). Raises ``yaml.YAMLError`` on bad YAML."""
    return yaml.load(source, Loader=SAFE_LOADER)
