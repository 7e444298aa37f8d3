"""URLs of the MFA pages under /accounts/mfa/ (namespace ``mfa``)."""

from django.urls import path

from vertebra.mfa import views

app_name = "mfa"

urlpatterns = [
    path("", views.manage, name="manage"),
    path("setup/", views.setup, name="setup"),
    path("verify/", views.verify, name="verify"),
    path("recovery-codes/", views.recovery_codes, name="recovery-codes"),
    path("reset/", views.reset, name="reset"),
]
