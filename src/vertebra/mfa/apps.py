from django.apps import AppConfig


class MfaConfig(AppConfig):
    """Staff MFA (pages, enforcement middleware, audited services); the devices are
    django-otp's own models (``otp_totp``, ``otp_static``)."""

    name = "vertebra.mfa"
    label = "mfa"
    verbose_name = "Multi-factor sign-in"
