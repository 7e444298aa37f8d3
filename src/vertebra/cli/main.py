"""The ``vertebra`` command: demo, serve, manage, worker, and the feature commands.

Errors a user can cause (bad options, a busy port, a malformed setting) end with one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import os
import sys

import typer
from typer._click import exceptions as click_errors  # typer vendors click since 0.20
from typer._click.utils import echo

from vertebra import __version__
from vertebra.cli import (
    audit_cmd,
    export_cmd,
    fhir_cmd,
    fhirclient_cmd,
    instruments_cmd,
    report_cmd,
    screen_cmd,
    snapshot_cmd,
    synth_cmd,
)
from vertebra.cli.errors import CliError

app = typer.Typer(
    name="vertebra",
    help="Vertebra: outcomes registry and decision support for regenerative therapy of "
    "chronic low back pain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vertebra {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Vertebra command line. Run ``vertebra COMMAND --help`` for each command."""


@app.command()
def demo(
    port: int = typer.Option(8000, help="Port to serve on (127.0.0.1 only)."),
    patients: int = typer.Option(500, help="Synthetic patients to load into a new database."),
    seed: int = typer.Option(2026, help="Seed of the synthetic cohort (same seed, same cohort)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a web browser."),
    reset: bool = typer.Option(False, "--reset", help="Delete the demo database and start afresh."),
) -> None:
    """Create or reuse the embedded demo database, load demo data, and serve on localhost."""
    from vertebra.cli import demo as demo_impl

    demo_impl.run_demo(
        port=port, patients=patients, seed=seed, open_browser=not no_browser, reset=reset
    )


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8000, help="Port to bind."),
    workers: int = typer.Option(0, help="Worker processes (0 = 2 × CPU cores + 1, at most 9)."),
    threads: int = typer.Option(2, help="Threads per worker."),
) -> None:
    """Run the production web server (gunicorn) with the settings from the environment."""
    from vertebra.cli import server

    server.serve_production(host=host, port=port, workers=workers, threads=threads)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def manage(ctx: typer.Context) -> None:
    """Run a Django management command, e.g. ``vertebra manage migrate`` (--help lists them)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vertebra.settings")
    from django.core.management import execute_from_command_line

    from vertebra.cli.server import django_setup

    django_setup()
    execute_from_command_line(["vertebra manage", *ctx.args])


@app.command()
def worker(
    once: bool = typer.Option(False, "--once", help="Run one pass and exit (for cron and tests)."),
    interval: float = typer.Option(60.0, help="Seconds between passes when running as a loop."),
) -> None:
    """Run the background worker: follow-up invitations and reminders, and the analysis
    snapshot the dashboards and the decision aid answer from (rebuilt when the data changed)."""
    from vertebra.cli.server import django_setup

    django_setup()
    from vertebra.followup import worker as followup_worker

    if once:
        report = followup_worker.run_once()
        outcome = followup_worker.refresh_snapshot()
        typer.echo(f"vertebra worker: {followup_worker.summary(report)}, snapshot {outcome}")
        return
    if interval <= 0:
        raise CliError("--interval must be a positive number of seconds")
    typer.echo(f"vertebra worker: running every {interval:g} s (Ctrl+C to stop)", err=True)
    followup_worker.run_forever(interval)


instruments_cmd.register(app)
screen_cmd.register(app)
synth_cmd.register(app)
report_cmd.register(app)
export_cmd.register(app)
fhir_cmd.register(app)
audit_cmd.register(app)
fhirclient_cmd.register(app)
snapshot_cmd.register(app)


def run(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn usage and configuration errors into one line."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, prog_name="vertebra", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        sys.exit(2)
    except click_errors.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "vertebra"
        echo(f"{command}: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except CliError as exc:
        echo(f"vertebra: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click_errors.ClickException as exc:
        echo(f"vertebra: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        echo("vertebra: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        from django.core.exceptions import ImproperlyConfigured

        if isinstance(exc, ImproperlyConfigured):
            echo(f"vertebra: configuration error: {exc}", err=True)
            sys.exit(2)
        raise
    if isinstance(result, int) and result != 0:
        sys.exit(result)
