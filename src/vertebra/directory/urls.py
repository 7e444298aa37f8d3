"""Public clinic directory: /clinics/."""

from django.urls import path

from vertebra.directory import views

app_name = "directory"

urlpatterns = [
    path("", views.index, name="index"),
    path("compare/", views.compare, name="compare"),
    path("<int:clinic_id>/", views.clinic, name="clinic"),
]
