"""WSGI entry point used by ``vertebra serve`` (gunicorn) and any other WSGI server."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vertebra.settings")
application = get_wsgi_application()
