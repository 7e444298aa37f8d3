"""``vertebra score INSTRUMENT --answers ...`` and ``vertebra instruments``.

``score`` prints the ScoreResult as JSON; ``instruments`` lists the instruments with their
licence and whether their item text ships. Bad input (unknown instrument, wrong number of
answers, out-of-range values) ends with one line on stderr and exit code 2 via CliError.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from vertebra.cli.errors import CliError

SCORE_HELP = (
    "Score one response to INSTRUMENT and print the result as JSON. --answers lists one answer "
    "per item in questionnaire order, separated by commas; leave an answer empty for a missing "
    "item (e.g. 1,2,,3). Yes/no items accept 1/0 or yes/no; named choices accept the option "
    "code. Run 'vertebra instruments' for the instrument ids."
)
INSTRUMENTS_HELP = (
    "List the instruments Vertebra can score: id, version, title, licence holder, and whether "
    "the item text ships with Vertebra or must be loaded by the site "
    "(VERTEBRA_INSTRUMENT_TEXT_DIR)."
)


def register(app: typer.Typer) -> None:
    """Add the ``score`` and ``instruments`` commands to the root CLI app."""
    app.command(name="score", help=SCORE_HELP)(score)
    app.command(name="instruments", help=INSTRUMENTS_HELP)(instruments)


def score(
    instrument: str = typer.Argument(..., metavar="INSTRUMENT", help="Instrument id, e.g. odi."),
    answers: str = typer.Option(
        ..., "--answers", "-a", help="Comma-separated answers in item order; empty = missing."
    ),
    indent: int = typer.Option(2, min=0, max=8, help="JSON indentation (0 = one line)."),
) -> None:
    """Score one response (see SCORE_HELP)."""
    from vertebra.core import instruments as core

    try:
        defn = core.get_definition(instrument)
        values = core.parse_answers_text(defn, answers.split(","))
        result = core.score(instrument, values)
    except core.InstrumentError as exc:
        raise CliError(f"score: {exc}") from None
    _print_json(result.to_dict(), indent)


def instruments(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the instruments (see INSTRUMENTS_HELP)."""
    from vertebra.core import instruments as core

    try:
        rows = [_summary(d) for d in core.list_instruments()]
    except core.InstrumentError as exc:
        raise CliError(f"instruments: {exc}") from None
    if as_json:
        _print_json(rows, 2)
        return
    _print_table(rows)


def _summary(defn: Any) -> dict[str, Any]:
    """The JSON row for one InstrumentDefinition."""
    return {
        "id": defn.id,
        "version": defn.version,
        "title": defn.title,
        "items": len(defn.items),
        "direction": defn.direction,
        "range": [defn.range_min, defn.range_max],
        "licence": {
            "holder": defn.licence.holder,
            "terms": defn.licence.terms,
            "source": defn.licence.source,
        },
        "item_text_shipped": defn.item_text_shipped,
        "text_source": defn.text_source,
    }


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Vertebra instruments")
    for column in ("id", "version", "title", "licence", "text"):
        table.add_column(column, overflow="fold")
    for r in rows:
        if r["item_text_shipped"]:
            text = "shipped"
        elif r["text_source"].startswith("overlay:"):
            text = "site text loaded"
        else:
            text = "placeholder (load licensed text)"
        table.add_row(r["id"], r["version"], r["title"], r["licence"]["holder"], text)
    Console().print(table)


def _print_json(data: object, indent: int) -> None:
    typer.echo(json.dumps(data, indent=indent or None, ensure_ascii=False))
