"""URLs of the patient portal (mounted at ``/p/``) and the coordinator page (``/p/staff/``).

No URL carries a sequential id or a token after the first redirect: the link landing
(``open/?t=...``) swaps the token for a session and redirects to ``start/``.
"""

from django.urls import URLPattern, URLResolver, path

from vertebra.followup import staff_views, views

app_name = "followup"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="home"),
    path("open/", views.open_view, name="open"),
    path("signin/", views.PatientLoginView.as_view(), name="signin"),
    path("signout/", views.signout, name="signout"),
    path("choose/<uuid:public_id>/", views.choose, name="choose"),
    path("q/", views.start, name="start"),
    path("q/<int:number>/", views.question, name="question"),
    path("q/review/", views.review, name="review"),
    path("q/submit/", views.submit, name="submit"),
    path("done/", views.done, name="done"),
    path("progress/", views.progress, name="progress"),
    path("staff/", staff_views.coordinator, name="coordinator"),
    path("staff/calls/<int:entry_id>/resolve/", staff_views.resolve_call, name="resolve-call"),
    path(
        "staff/patients/<int:patient_id>/links/revoke/",
        staff_views.revoke_patient_links,
        name="revoke-links",
    ),
]
