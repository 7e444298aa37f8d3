"""Values every template may use."""

from django.http import HttpRequest

from vertebra import __version__


def site(request: HttpRequest) -> dict[str, str]:
    """Expose the product name and version to templates."""
    return {"vertebra_version": __version__, "site_name": "Vertebra"}
