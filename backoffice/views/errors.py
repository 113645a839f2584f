from django.shortcuts import render


def permission_denied(request, exception=None):
    context = {
        "reason": getattr(exception, "reason", "") or "You do not have permission to open this page.",
        "permission": getattr(exception, "permission", ""),
    }
    return render(request, "errors/403.html", context, status=403)


def page_not_found(request, exception=None):
    return render(request, "errors/404.html", {}, status=404)


def server_error(request):
    return render(request, "errors/500.html", {"correlation_id": getattr(request, "correlation_id", "")}, status=500)


def csrf_failure(request, reason=""):
    return render(
        request,
        "errors/403.html",
        {"reason": "The form expired or was sent twice; reload the page and try again."},
        status=403,
    )
