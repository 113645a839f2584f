"""The home page: the operations dashboard (tiles and charts the user may read), then the user's
role and the screens they may use. One selector call; GET only, nothing changes."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.utils import timezone
from django.views.generic import TemplateView

from backoffice.dashboard import dashboard_for
from backoffice.navigation import screens_for
from backoffice.roles import ROLES, user_role_names


class HomeView(LoginRequiredMixin, TemplateView):
    template_name = "backoffice/home.html"
    http_method_names = ["get", "head", "options"]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        context["dashboard"] = dashboard_for(user=user, now=timezone.now())
        context["roles"] = [ROLES[name] for name in user_role_names(user)]
        context["screens"] = [s for s in screens_for(user) if s["key"] != "home"]
        context["is_break_glass"] = user.is_superuser
        return context
