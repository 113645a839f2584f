"""The provider webhook endpoint, outside the signed-in screens: /webhooks/<provider>/."""

from django.urls import path

from payments.webhooks import views

app_name = "webhooks"

urlpatterns = [path("<slug:provider_code>/", views.ProviderWebhookView.as_view(), name="receive")]
