from django.contrib import admin
from django.urls import include, path

from backoffice.views import auth, health, home, metrics, search

admin.site.site_header = "Payment back-office: admin"
admin.site.site_title = "Back-office admin"

urlpatterns = [
    path("", home.HomeView.as_view(), name="home"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.MetricsView.as_view(), name="metrics"),
    path("search/", search.SearchView.as_view(), name="search"),
    path("payments/", include("payments.urls")),
    path("audit/", include("audit.urls")),
    path("ledger/", include("ledger.urls")),
    path("reconciliation/", include("reconciliation.urls")),
    path("cases/", include("cases.urls")),
    path("approvals/", include("approvals.urls")),
    # Providers post here: no session, no CSRF token; the HMAC signature is the authentication.
    path("webhooks/", include("payments.webhook_urls")),
    path("admin/", admin.site.urls),
]

handler403 = "backoffice.views.errors.permission_denied"
handler404 = "backoffice.views.errors.page_not_found"
handler500 = "backoffice.views.errors.server_error"
