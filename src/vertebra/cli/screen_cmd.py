"""``vertebra screen FILE.json``: evaluate screening facts and print the result as JSON.

``FILE`` is a path or ``-`` for standard input. ``--schema`` prints the facts JSON Schema instead.
Malformed JSON and invalid facts end with one line on stderr and exit code 2 (via
:class:`CliError`, which the root app turns into that line), never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from vertebra.cli.errors import CliError
from vertebra.core.safeinput import JsonInputError, load_json

if TYPE_CHECKING:
    from vertebra.core.screening import ScreeningResult

#: A facts object is a few hundred bytes; anything near this is not one.
MAX_FACTS_BYTES = 1024 * 1024

SCREEN_HELP = (
    "Screen one person for regenerative therapy of chronic low back pain. FILE is a JSON "
    "object of facts (a path, or - for standard input); every fact is optional. Prints the "
    "verdict, the rules that fired, the missing facts and the rule-set version as JSON, or "
    "with --text in plain words, with what is still to answer and what to bring."
)


def register(app: typer.Typer) -> None:
    """Add the ``screen`` command to the root CLI app."""
    app.command(name="screen", help=SCREEN_HELP)(screen)


def screen(
    file: str | None = typer.Argument(
        None, metavar="FILE", help="Facts JSON file, or - to read standard input."
    ),
    schema: bool = typer.Option(
        False, "--schema", help="Print the JSON Schema of the facts and exit."
    ),
    indent: int = typer.Option(2, min=0, max=8, help="JSON indentation (0 = one line)."),
    text: bool = typer.Option(
        False,
        "--text",
        help="Print the outcome in plain words for the patient (why, what is still to answer, "
        "what to do and bring next) instead of JSON.",
    ),
) -> None:
    """Evaluate FILE and print the screening result (see SCREEN_HELP)."""
    # Imported here so that other commands do not pay for loading the rule set.
    from vertebra.core.screening import InvalidFactsError, evaluate, facts_json_schema

    if schema:
        _print_json(facts_json_schema(), indent)
        return
    if file is None:
        raise CliError("screen: give a facts FILE (or - for stdin), or --schema")
    facts = _read_json(file)
    if not isinstance(facts, dict):
        raise CliError(f"screen: {_name(file)}: facts must be a JSON object")
    try:
        result = evaluate(facts)
    except InvalidFactsError as exc:
        raise CliError(f"screen: {_name(file)}: invalid facts: {exc}") from None
    if text:
        typer.echo(plain_words(result))
        return
    _print_json(result.to_dict(), indent)


def plain_words(result: ScreeningResult) -> str:
    """The result as the self-assessment page words it: verdict, reasons, what is still to
    answer, next steps (which say what to bring) and notes, then the rule-set version."""
    lines = [result.summary.title, "", result.summary.message]
    sections: list[tuple[str, list[str]]] = [
        ("Why:", [rule.message for rule in result.fired]),
        ("Still to answer:", [item.question for item in result.missing]),
        ("What to do next:", list(result.summary.next_steps)),
        ("Good to know:", [note.message for note in result.notes]),
    ]
    for heading, items in sections:
        if items:
            lines += ["", heading, *(f"- {item}" for item in items)]
    lines += [
        "",
        f"Rules: {result.ruleset_id} {result.ruleset_version} ({result.ruleset_effective}). "
        "This check is not medical advice.",
    ]
    return "\n".join(lines)


def _read_json(file: str) -> object:
    """Read and parse ``file`` (``-`` = stdin); any read or parse problem is a CliError (not
    UTF-8, not JSON, NaN/Infinity, nested deeper than ``MAX_JSON_DEPTH``, over 1 MB)."""
    try:
        if file == "-":
            data = sys.stdin.buffer.read(MAX_FACTS_BYTES + 1)
        else:
            with Path(file).open("rb") as handle:
                data = handle.read(MAX_FACTS_BYTES + 1)
    except OSError as exc:
        raise CliError(f"screen: cannot read {_name(file)}: {exc.strerror or exc}") from None
    if len(data) > MAX_FACTS_BYTES:
        raise CliError(f"screen: {_name(file)} is over {MAX_FACTS_BYTES} bytes; not a facts file")
    try:
        return load_json(data)
    except JsonInputError as exc:
        raise CliError(f"screen: {_name(file)}: {exc}") from None


def _name(file: str) -> str:
    return "stdin" if file == "-" else file


def _print_json(data: object, indent: int) -> None:
    typer.echo(json.dumps(data, indent=indent or None, ensure_ascii=False))
