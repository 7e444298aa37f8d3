"""The clinic admin's directory pages: /clinic/directory/."""

from django.urls import path

from vertebra.directory import staff_views

app_name = "directory-staff"

urlpatterns = [
    path("", staff_views.home, name="home"),
    path("<int:clinic_id>/", staff_views.clinic, name="clinic"),
    path("<int:clinic_id>/publish/", staff_views.publish, name="publish"),
]
