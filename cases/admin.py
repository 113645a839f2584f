"""Engineering admin for cases: a window, not a way in.

Everything is read-only here. Cases move only through cases.services (status is a protected FSM
field; notes, evidence, findings, links and occurrences are append-only in PostgreSQL), and
operators work cases on the workbench, where every command is authorised and audited. SLA
policies are data seeded by migration; they are shown, not edited.
"""

from django.contrib import admin

from cases.models import (
    CaseEvidence,
    CaseFinding,
    CaseLink,
    CaseNote,
    ExceptionOccurrence,
    OpsCase,
    SlaPolicy,
)


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class NoteInline(ReadOnlyInline):
    model = CaseNote
    fields = ("created_at", "created_by", "note_type", "redaction_level", "body")


class EvidenceInline(ReadOnlyInline):
    model = CaseEvidence
    fields = ("uploaded_at", "uploaded_by", "evidence_type", "original_name", "content_type", "size_bytes", "sha256")


class FindingInline(ReadOnlyInline):
    model = CaseFinding
    fields = ("created_at", "created_by", "finding_type", "source", "external_reference", "conclusion", "evidence")


class LinkInline(ReadOnlyInline):
    model = CaseLink
    fields = ("created_at", "created_by", "relation_type", "object_type", "object_id")


@admin.register(OpsCase)
class OpsCaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "case_number", "case_type", "severity", "priority", "status", "owner_team", "owner_user", "sla_due_at",
        "sla_breached_at", "occurrence_count", "created_at",
    )  # fmt: skip
    list_filter = ("status", "severity", "case_type", "owner_team")
    search_fields = ("case_number", "title", "merchant_ref", "customer_ref", "business_key", "fingerprint")
    list_select_related = ("owner_user",)
    date_hierarchy = "created_at"
    show_full_result_count = False
    # Occurrences have their own list (a retry storm can leave thousands on one case).
    inlines = (NoteInline, EvidenceInline, FindingInline, LinkInline)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.concrete_fields]


@admin.register(CaseNote)
class CaseNoteAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "case", "note_type", "redaction_level", "created_by", "created_at")
    list_filter = ("note_type", "redaction_level")
    search_fields = ("case__case_number",)
    list_select_related = ("case",)
    raw_id_fields = ("case",)
    show_full_result_count = False


@admin.register(CaseEvidence)
class CaseEvidenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "case", "evidence_type", "original_name", "content_type", "size_bytes", "uploaded_at")
    list_filter = ("evidence_type", "classification", "retention_class", "content_type")
    search_fields = ("case__case_number", "sha256")
    list_select_related = ("case",)
    raw_id_fields = ("case",)
    # storage_key stays out of sight: files are opened through the audited download, not by path.
    exclude = ("storage_key",)
    show_full_result_count = False


@admin.register(CaseFinding)
class CaseFindingAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "case", "finding_type", "source", "external_reference", "created_by", "created_at")
    list_filter = ("finding_type",)
    search_fields = ("case__case_number", "external_reference")
    list_select_related = ("case",)
    raw_id_fields = ("case", "evidence")
    show_full_result_count = False


@admin.register(CaseLink)
class CaseLinkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "case", "relation_type", "object_type", "object_id", "created_by", "created_at")
    list_filter = ("object_type", "relation_type")
    search_fields = ("case__case_number", "object_id")
    list_select_related = ("case",)
    raw_id_fields = ("case",)
    show_full_result_count = False


@admin.register(ExceptionOccurrence)
class ExceptionOccurrenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "case", "occurred_at", "source_system", "business_key", "error_code", "reported_severity")
    list_filter = ("source_system", "reported_severity")
    search_fields = ("case__case_number", "business_key", "error_code", "trace_id")
    list_select_related = ("case",)
    raw_id_fields = ("case",)
    show_full_result_count = False


@admin.register(SlaPolicy)
class SlaPolicyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("severity", "case_type", "minutes", "business_days", "due_soon_minutes")
    list_filter = ("severity",)
    ordering = ("severity", "case_type")
