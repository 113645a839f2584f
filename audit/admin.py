from django.contrib import admin

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the trail is append-only and written only by audit.services.audit_record."""

    list_display = ("seq", "occurred_at", "actor", "event_type", "target_type", "target_id", "result")
    list_filter = ("result",)
    search_fields = ("event_id", "actor", "target_id", "correlation_id")
    ordering = ("-seq",)
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
