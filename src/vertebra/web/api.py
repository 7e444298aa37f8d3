"""The JSON API root (django-ninja). Feature modules add their routers here."""

from ninja import NinjaAPI, Schema

from vertebra import __version__
from vertebra.followup.api import router as followup_router
from vertebra.registry.api import router as registry_router
from vertebra.web.api_public import (
    decision_router,
    instruments_router,
    learn_router,
    screening_router,
)

api = NinjaAPI(
    title="Vertebra API",
    version="1",
    description=(
        "Outcomes registry and decision support for regenerative therapy of chronic low back "
        "pain. Public endpoints are read-only; patient data needs a token (see docs)."
    ),
    urls_namespace="api-v1",
)


class VersionOut(Schema):
    """What the server runs."""

    name: str
    version: str


@api.get("/version", response=VersionOut, tags=["meta"], summary="Server name and version")
def version(request: object) -> VersionOut:
    """Return the product name and version (public)."""
    return VersionOut(name="vertebra", version=__version__)


api.add_router("/learn", learn_router)
api.add_router("/screening", screening_router)
api.add_router("/instruments", instruments_router)
api.add_router("/decision-aid", decision_router)
api.add_router("/", registry_router)  # /api/v1/patients, /api/v1/episodes, ...
api.add_router("/followup", followup_router)
