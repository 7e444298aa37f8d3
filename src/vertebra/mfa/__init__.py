"""Multi-factor sign-in for staff: TOTP with one-time recovery codes (django-otp).

See :mod:`vertebra.mfa.services` for the contracts and docs/security/mfa.md for the flow.
"""
