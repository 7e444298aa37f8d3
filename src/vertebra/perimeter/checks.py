"""Deployment checks of the perimeter (``vertebra manage check --deploy``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def trusted_proxies_set(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """W001: in production the app runs behind a proxy (README), so TRUSTED_PROXIES must name
    it; otherwise every client has the proxy's address and one client's limit is everyone's."""
    if getattr(settings, "PRODUCTION", False) and not getattr(settings, "TRUSTED_PROXIES", []):
        return [
            Warning(
                "TRUSTED_PROXIES is empty: behind the reverse proxy every client has the "
                "proxy's address, so rate limits and login lockouts would hit all patients.",
                hint="Set TRUSTED_PROXIES to your proxy's address (see README, Configuration).",
                id="perimeter.W001",
            )
        ]
    return []
