"""Placeholder replaced by the webhook ingestion change."""

from django.http import HttpResponse
from django.views import View


class ProviderWebhookView(View):
    def post(self, request, provider_code: str):
        return HttpResponse(status=503)
