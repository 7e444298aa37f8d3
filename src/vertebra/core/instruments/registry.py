"""Where definitions come from: shipped package data, plus a site's licensed-text overlays.

Resolution order for an instrument id:

1. text installed in this process with `load_instrument_text(path)`;
2. overlay files in the directory named by the environment variable
   ``VERTEBRA_INSTRUMENT_TEXT_DIR`` (every ``*.yaml``/``*.yml`` file in it);
3. the shipped definition (``vertebra/data/instruments/<id>.yaml``).

An overlay replaces wording only. Its items and option codes must match the shipped structure
exactly, so scoring can never be changed by a text file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from vertebra.core.instruments.definitions import parse_definition
from vertebra.core.instruments.model import (
    InstrumentDefinition,
    InstrumentTextError,
    Item,
    ResponseOption,
    UnknownInstrumentError,
)
from vertebra.core.instruments.scoring import check_definition
from vertebra.core.yamltext import load_yaml

ENV_TEXT_DIR = "VERTEBRA_INSTRUMENT_TEXT_DIR"

#: Overlays installed with load_instrument_text(), by instrument id.
_installed: dict[str, InstrumentDefinition] = {}


@cache
def builtin_definitions() -> Mapping[str, InstrumentDefinition]:
    """Parse and check every shipped definition once; keyed by id, sorted by id."""
    folder = files("vertebra").joinpath("data", "instruments")
    found: dict[str, InstrumentDefinition] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        origin = f"data/instruments/{entry.name}"
        defn = parse_definition(load_yaml(entry.read_text(encoding="utf-8")), origin)
        if f"{defn.id}.yaml" != entry.name:
            raise InstrumentTextError(f"{origin}: id {defn.id!r} does not match the file name")
        check_definition(defn)
        found[defn.id] = defn
    return dict(sorted(found.items()))


def get_definition(instrument_id: str) -> InstrumentDefinition:
    """Return the definition in force for `instrument_id` (site text applied if any).

    Raises UnknownInstrumentError, listing the known ids, if there is no such instrument.
    """
    builtin = builtin_definitions()
    if instrument_id not in builtin:
        raise UnknownInstrumentError(
            f"unknown instrument {instrument_id!r}; known instruments: {', '.join(builtin)}"
        )
    if instrument_id in _installed:
        return _installed[instrument_id]
    env_dir = os.environ.get(ENV_TEXT_DIR)
    if env_dir:
        overlays = _overlays_from_dir(env_dir)
        if instrument_id in overlays:
            return overlays[instrument_id]
    return builtin[instrument_id]


def list_instruments() -> tuple[InstrumentDefinition, ...]:
    """All instruments in force, sorted by id."""
    return tuple(get_definition(i) for i in builtin_definitions())


def load_instrument_text(path: str | os.PathLike[str]) -> InstrumentDefinition:
    """Read a licensed-text overlay file, validate it, and use it for the rest of this process.

    Returns the definition with the site's wording. Raises InstrumentTextError (naming the file,
    the instrument and the mismatch) if the overlay does not fit the shipped structure.
    """
    defn = _apply_file(Path(path))
    _installed[defn.id] = defn
    return defn


def clear_instrument_text() -> None:
    """Forget overlays installed with load_instrument_text() and re-read the env directory."""
    _installed.clear()
    _overlays_from_dir.cache_clear()


def apply_text_overlay(
    defn: InstrumentDefinition, overlay: Mapping[str, Any], origin: str
) -> InstrumentDefinition:
    """Return `defn` with the overlay's wording (pure; nothing is installed).

    The overlay is ``{id, version, instructions?, title?, items: {item_id: text | {text,
    options: {code: label}}}}``. It must name the same instrument and version, give text for
    every item, give labels for exactly the item's option codes when it gives any, and replace
    every piece of placeholder wording.
    """
    where = f"{origin} ({defn.id})"
    if str(overlay.get("id")) != defn.id:
        raise InstrumentTextError(f"{where}: overlay id {overlay.get('id')!r} != {defn.id!r}")
    if str(overlay.get("version")) != defn.version:
        raise InstrumentTextError(
            f"{where}: overlay is for version {overlay.get('version')!r}, "
            f"but Vertebra scores version {defn.version!r}"
        )
    items_raw = overlay.get("items")
    if not isinstance(items_raw, Mapping):
        raise InstrumentTextError(f"{where}: 'items' must map item id to text")
    missing = [i for i in defn.item_ids if i not in items_raw]
    unknown = [str(i) for i in items_raw if i not in defn.item_ids]
    if missing or unknown:
        raise InstrumentTextError(
            f"{where}: overlay items do not match the instrument; "
            f"missing: {', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'}"
        )
    items = tuple(_overlay_item(it, items_raw[it.id], where) for it in defn.items)
    new = dataclasses.replace(
        defn,
        title=_text(overlay.get("title", defn.title), f"{where} title"),
        instructions=_text(overlay.get("instructions", defn.instructions), f"{where} instructions"),
        items=items,
        text_source=f"overlay:{origin}",
    )
    if new.has_placeholder_text:
        raise InstrumentTextError(
            f"{where}: placeholder wording remains after the overlay (instructions or option "
            "labels); supply every text"
        )
    return new


def _overlay_item(item: Item, raw: Any, where: str) -> Item:
    here = f"{where} item {item.id!r}"
    if isinstance(raw, str):
        return dataclasses.replace(item, text=_text(raw, here))
    if not isinstance(raw, Mapping):
        raise InstrumentTextError(f"{here}: give the text, or a mapping with text and options")
    options = item.options
    if "options" in raw:
        labels = raw["options"]
        if not isinstance(labels, Mapping):
            raise InstrumentTextError(f"{here}: options must map option code to label")
        given = {str(k): v for k, v in labels.items()}
        expected = [str(c) for c in item.codes]
        if sorted(given) != sorted(expected):
            raise InstrumentTextError(
                f"{here}: option codes {sorted(given)} do not match the instrument's {expected}"
            )
        options = tuple(
            ResponseOption(o.code, _text(given[str(o.code)], f"{here} option {o.code}"), o.key)
            for o in item.options
        )
    return dataclasses.replace(item, text=_text(raw.get("text"), here), options=options)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InstrumentTextError(f"{where}: text must be a non-empty string")
    return value


def _apply_file(path: Path) -> InstrumentDefinition:
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InstrumentTextError(f"{path}: cannot read overlay: {exc}") from exc
    if not isinstance(raw, Mapping) or "id" not in raw:
        raise InstrumentTextError(f"{path}: an overlay is a mapping with id, version and items")
    try:
        base = builtin_definitions()[str(raw["id"])]
    except KeyError:
        raise InstrumentTextError(
            f"{path}: unknown instrument {raw['id']!r}; known: {', '.join(builtin_definitions())}"
        ) from None
    return apply_text_overlay(base, raw, str(path))


@cache
def _overlays_from_dir(directory: str) -> Mapping[str, InstrumentDefinition]:
    """Read every overlay in `directory` once per process (cached by directory path)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise InstrumentTextError(f"{ENV_TEXT_DIR}={directory!r} is not a directory")
    found: dict[str, InstrumentDefinition] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".yaml", ".yml"):
            continue
        defn = _apply_file(path)
        if defn.id in found:
            raise InstrumentTextError(f"{path}: second overlay for {defn.id!r} in {directory}")
        found[defn.id] = defn
    return found
