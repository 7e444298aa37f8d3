"""The web shell: public pages, layout, static assets and the API root."""

from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "vertebra.web"
    label = "web"
    verbose_name = "Vertebra web"
