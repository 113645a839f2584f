from django.urls import path, register_converter
from django.views.generic import RedirectView

from approvals import views


class RequestIdConverter:
    """act_ and a 26-character ULID body: anything else is not a request address (a plain 404)."""

    regex = r"act_[0-9A-HJKMNP-TV-Z]{26}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(RequestIdConverter, "act")

app_name = "approvals"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="approvals:inbox"), name="index"),
    path("inbox/", views.InboxView.as_view(), name="inbox"),
    path("inbox/decide/<str:decision>/", views.BulkDecideView.as_view(), name="bulk_decide"),
    path("mine/", views.MyRequestsView.as_view(), name="mine"),
    path("requests/", views.RequestListView.as_view(), name="request_list"),
    path("requests/export.csv", views.RequestExportView.as_view(), name="request_export"),
    path("requests/<act:public_id>/", views.RequestDetailView.as_view(), name="request_detail"),
    path("requests/<act:public_id>/approve/", views.ApproveView.as_view(), name="approve"),
    path("requests/<act:public_id>/reject/", views.RejectView.as_view(), name="reject"),
    path("requests/<act:public_id>/withdraw/", views.WithdrawView.as_view(), name="withdraw"),
    path("adjustments/new/", views.LedgerAdjustmentView.as_view(), name="adjustment_new"),
    path("policies/", views.PolicyListView.as_view(), name="policies"),
    path("policies/<str:action_type>/change/", views.PolicyChangeView.as_view(), name="policy_change"),
]
