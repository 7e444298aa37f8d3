"""URLs of the public web shell: home, knowledge base, self-assessment, decision aid."""

from django.urls import path

from vertebra.web import assess_views, decide_views, learn_views, views, worklist_views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("learn/", learn_views.index, name="learn"),
    path("learn/treatments/compare/", learn_views.comparison, name="learn-compare"),
    path("learn/cost/", learn_views.cost, name="learn-cost"),
    path("learn/<path:path>/", learn_views.page, name="learn-page"),
    path("assess/", assess_views.intro, name="assess"),
    path("assess/result/", assess_views.result, name="assess-result"),
    path("assess/restart/", assess_views.restart, name="assess-restart"),
    path("assess/<slug:slug>/", assess_views.step, name="assess-step"),
    path("decide/", decide_views.page, name="decide"),
    # Staff homes live here (one floor above registry/followup/outcomes, which they read).
    path("clinic/home/", worklist_views.staff_home, name="staff-home"),
    path(
        "clinic/home/verify-audit/",
        worklist_views.verify_audit_now,
        name="staff-verify-audit",
    ),
]
