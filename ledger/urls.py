from django.urls import path

from ledger import views

app_name = "ledger"

urlpatterns = [
    path("", views.AccountListView.as_view(), name="account_list"),
    path("accounts/<str:code>/", views.AccountStatementView.as_view(), name="account_statement"),
    path("journals/<str:public_id>/", views.JournalDetailView.as_view(), name="journal_detail"),
]
