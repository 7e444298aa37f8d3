"""Placeholder: commands are registered here by their owning feature."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root CLI app."""
