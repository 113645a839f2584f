from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """Liveness and database reachability for the container orchestrator; no data, no auth."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return JsonResponse({"status": "ok"})
    except Exception:
        return JsonResponse({"status": "database unavailable"}, status=503)
