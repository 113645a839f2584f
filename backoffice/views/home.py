from django.contrib.auth.mixins import LoginRequiredMixin
from django.views.generic import TemplateView

from backoffice.navigation import screens_for
from backoffice.roles import ROLES, user_role_names


class HomeView(LoginRequiredMixin, TemplateView):
    template_name = "backoffice/home.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        context["roles"] = [ROLES[name] for name in user_role_names(user)]
        context["screens"] = [s for s in screens_for(user) if s["key"] != "home"]
        context["is_break_glass"] = user.is_superuser
        return context
