"""The perimeter: who is asking (client address behind trusted proxies), how often they may ask
(throttles shared by every server process), how refusals look (RFC 9457 problem details) and
what never reaches a log (patient-link tokens).

A Django app below ``registry`` in the floors: it imports no other Vertebra app, so the portal
(``followup``), the API (``web``) and the login lockout (django-axes) can all use it.
"""
