from django.http import HttpResponse
from django.views import View


class MetricsView(View):
    def get(self, request):
        return HttpResponse(status=501)
