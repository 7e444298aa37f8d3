"""Allow ``python -m vertebra`` as an alias of the ``vertebra`` command."""

from vertebra.cli.main import run

run()
