"""URLs of the public web shell."""

from django.urls import path

from vertebra.web import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
]
