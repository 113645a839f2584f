from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from approvals.policy_change import POLICY_CHANGE
        from approvals.registry import register_action
        from cases import registry as case_registry

        register_action(POLICY_CHANGE)
        post_migrate.connect(_ensure_policies, sender=self)
        case_registry.register_close_guard("approvals", _open_request_objection)
        case_registry.register_linkable_type("action_request", title="Action request", describe=_describe_requests)

        from approvals.demo import approvals_demo_seed
        from backoffice.demo import register_demo_seeder

        register_demo_seeder("approvals", approvals_demo_seed)

        from backoffice.navigation import Screen, register_screen

        # Each list has its own address prefix, so the menu highlights where a page was reached from;
        # a request's page belongs to "All requests".
        for screen in (
            Screen(key="approvals_inbox", title="Checker inbox", url_name="approvals:inbox",
                   permission="approvals.view_actionrequest", section="Approvals", hotkey="i",
                   description="Pending changes you may approve or reject, oldest first."),
            Screen(key="approvals_mine", title="My requests", url_name="approvals:mine",
                   permission="approvals.view_actionrequest", section="Approvals",
                   description="Changes you proposed, whatever became of them."),
            Screen(key="approvals_all", title="All requests", url_name="approvals:request_list",
                   permission="approvals.view_actionrequest", section="Approvals",
                   description="Every change request, with filters and a CSV export."),
            Screen(key="approvals_adjustment", title="Propose adjustment", url_name="approvals:adjustment_new",
                   permission="ledger.propose_adjustment", section="Approvals",
                   description="A manual ledger adjustment: preview its lines, then propose it for approval."),
            Screen(key="approvals_policies", title="Approval policies", url_name="approvals:policies",
                   permission="approvals.view_approvalpolicy", section="Approvals",
                   description="What each action needs: approvers, limits, case and evidence; propose a change."),
        ):  # fmt: skip
            register_screen(screen)


def _open_request_objection(case) -> str | None:
    from approvals.selectors import open_requests_for_case

    open_requests = open_requests_for_case(case_number=case.case_number)
    if not open_requests:
        return None
    listed = ", ".join(f"{r.public_id} ({r.get_status_display().lower()})" for r in open_requests)
    return f"a change linked to this case is still open: {listed}"


def _describe_requests(ids):
    from django.urls import reverse

    from approvals.models import ActionRequest
    from cases.registry import LinkedObjectView

    return {
        r.public_id: LinkedObjectView(
            label=r.public_id,
            url=reverse("approvals:request_detail", args=[r.public_id]),
            status=r.status,
            detail=f"{r.action_type} {r.target_label}",
        )
        for r in ActionRequest.objects.filter(public_id__in=ids)
    }


def _ensure_policies(sender, apps=None, **kwargs):
    from django.apps import apps as current_apps

    from approvals.policies import ensure_policies

    try:
        if apps is not None:
            apps.get_model("approvals", "ApprovalPolicy")
    except LookupError:
        return
    ensure_policies(current_apps)
