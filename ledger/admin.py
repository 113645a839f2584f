"""Engineering admin for the ledger: a window, not a way in.

Journals, entries, balances and posting rules are read-only here: money moves only through
ledger.services (and the database refuses UPDATE and DELETE on journals and entries anyway).
Accounts and chart specs allow only their descriptive text to be corrected.
"""

from django.contrib import admin
from django.utils import timezone

from backoffice.actors import Actor
from ledger.models import (
    ChartAccountSpec,
    LedgerAccount,
    LedgerBalance,
    LedgerEntry,
    LedgerJournal,
    PostingRule,
    PostingRuleLine,
)
from ledger.services.metadata import metadata_update


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MetadataOnlyAdmin(admin.ModelAdmin):
    """Only `name` and `description` may change; no add, no delete; every edit is audited."""

    editable_fields = ("name", "description")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields if f.name not in self.editable_fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        # Through the ledger's metadata service: only these columns, locked, audited.
        metadata_update(
            obj=obj,
            changes={name: form.cleaned_data[name] for name in self.editable_fields if name in form.cleaned_data},
            actor=Actor.from_user(request.user),
            now=timezone.now(),
        )


@admin.register(LedgerAccount)
class LedgerAccountAdmin(MetadataOnlyAdmin):
    list_display = ("code", "name", "role", "currency", "owner_ref", "balance_bucket", "status", "is_hot")
    list_filter = ("currency", "role", "status", "is_hot")
    search_fields = ("code", "owner_ref", "name")
    show_full_result_count = False


@admin.register(ChartAccountSpec)
class ChartAccountSpecAdmin(MetadataOnlyAdmin):
    list_display = ("code_prefix", "role", "name", "account_type", "balance_bucket", "owner_kind", "is_hot")


class LedgerEntryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = LedgerEntry
    fields = ("id", "account", "direction", "amount_minor", "currency")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(LedgerJournal)
class LedgerJournalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "public_id",
        "journal_type",
        "source_type",
        "source_id",
        "accounting_date",
        "posted_at",
        "posted_by",
    )
    list_filter = ("journal_type",)
    search_fields = ("public_id", "idempotency_key", "source_id", "case_ref", "approval_ref")
    date_hierarchy = "accounting_date"
    list_select_related = ("reverses",)
    raw_id_fields = ("reverses",)
    inlines = (LedgerEntryInline,)
    show_full_result_count = False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "journal", "account", "direction", "amount_minor", "currency")
    list_filter = ("direction", "currency")
    search_fields = ("journal__public_id", "account__code")
    list_select_related = ("journal", "account")
    raw_id_fields = ("journal", "account")
    show_full_result_count = False


@admin.register(LedgerBalance)
class LedgerBalanceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("account", "balance_minor", "debit_total_minor", "credit_total_minor", "version")
    list_select_related = ("account",)
    search_fields = ("account__code",)
    show_full_result_count = False


class PostingRuleLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PostingRuleLine
    fields = ("line_no", "direction", "account_role", "component")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(PostingRule)
class PostingRuleAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("code", "description", "version", "is_adjustment", "active")
    list_filter = ("is_adjustment", "active")
    inlines = (PostingRuleLineInline,)


@admin.register(PostingRuleLine)
class PostingRuleLineAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("rule", "line_no", "direction", "account_role", "component")
    list_select_related = ("rule",)
    list_filter = ("direction", "component")
