"""Reconciliation: every external line explained by an internal record, or a break someone owns.

A ReconciliationSource is an account someone else keeps for us (a bank account, a provider's
merchant account) and the parser its files are read with. A StatementFile is one file from it,
kept byte for byte (StatementFileContent) and imported once (by hash). Every line of an imported
file, and every movement we expect to see on the outside (captures, refunds, payouts, fees), is a
ReconciliationItem. Matching groups items into a ReconciliationMatch made by a rule (data, in
ReconciliationRule) or by a manual decision; an item left unmatched or mismatched is a
ReconciliationBreak (rb_...) with an age and an owner. Manual decisions are maker-checker actions
and are recorded in ReconciliationManualDecision.

Only `reconciliation.services` writes these tables.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django_fsm import FSMField, transition

from backoffice.money import CURRENCY_CHOICES


class SourceKind(models.TextChoices):
    BANK_ACCOUNT = "BANK_ACCOUNT", "Bank account"
    PROVIDER_ACCOUNT = "PROVIDER_ACCOUNT", "Provider account"


class ReconciliationSource(models.Model):
    """Where external files come from, and how they are read. The parser and its column mapping
    decide what an import produces, so they are configuration changed by a migration or a
    recorded command, not edited in place."""

    code = models.SlugField(max_length=48)  # e.g. "bca-idr-operating", used by recon_import
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=SourceKind.choices)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, blank=True)  # blank: several
    account_identifier = models.CharField(max_length=64, blank=True)  # IBAN, account number, merchant account
    provider_code = models.CharField(max_length=32, blank=True)
    parser = models.CharField(max_length=40)  # a key of reconciliation.parsers.PARSERS
    column_mapping = models.JSONField(default=dict, blank=True)  # generic CSV only
    owner_team = models.CharField(max_length=48, default="finance_ops")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    class Meta:
        default_permissions = ("view",)
        permissions = [
            ("import_statement", "Can import statement and settlement files"),
            ("run_reconciliation", "Can run reconciliation matching"),
        ]
        constraints = [models.UniqueConstraint(fields=["code"], name="recon_source_code_unique")]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class FileStatus(models.TextChoices):
    RECEIVED = "RECEIVED", "Received"
    IMPORTING = "IMPORTING", "Importing"
    IMPORTED = "IMPORTED", "Imported"
    FAILED = "FAILED", "Failed"


class BalanceCheck(models.TextChoices):
    NOT_AVAILABLE = "NOT_AVAILABLE", "The format states no balances"
    OK = "OK", "Opening + lines = closing"
    MISMATCH = "MISMATCH", "Opening + lines differ from closing"


class StatementFile(models.Model):
    """One uploaded file. Its bytes never change (StatementFileContent); a failed import leaves no
    item behind and says where and why it failed."""

    public_id = models.CharField(max_length=32)  # sf_...
    source = models.ForeignKey(ReconciliationSource, on_delete=models.PROTECT, related_name="files")
    filename = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    parser = models.CharField(max_length=40)
    parser_version = models.CharField(max_length=16)
    format = models.CharField(max_length=40, blank=True)
    statement_id = models.CharField(max_length=128, blank=True)
    account = models.CharField(max_length=64, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    opening_balance_minor = models.BigIntegerField(null=True, blank=True)
    closing_balance_minor = models.BigIntegerField(null=True, blank=True)
    balance_check = models.CharField(max_length=16, choices=BalanceCheck.choices, default=BalanceCheck.NOT_AVAILABLE)
    balance_difference_minor = models.BigIntegerField(default=0)
    status = FSMField(default=FileStatus.RECEIVED, choices=FileStatus.choices, protected=True)
    line_count = models.IntegerField(default=0)  # lines the parser found
    imported_count = models.IntegerField(default=0)  # items written (progress while IMPORTING)
    error_location = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    notes = models.JSONField(default=list, blank=True)  # the parser's findings, kept on the file
    uploaded_by = models.CharField(max_length=150)
    uploaded_at = models.DateTimeField()
    imported_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="recon_file_public_id_unique"),
            # The same bytes from the same source are one file, whoever uploads them and however often.
            models.UniqueConstraint(fields=["source", "sha256"], name="recon_file_once_per_source"),
            models.CheckConstraint(condition=Q(size_bytes__gte=0), name="recon_file_size_non_negative"),
        ]
        indexes = [models.Index(fields=["source", "-uploaded_at"], name="recon_file_source_recent")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.filename}"

    @transition(field=status, source=FileStatus.RECEIVED, target=FileStatus.IMPORTING)
    def start(self) -> None:
        pass

    @transition(field=status, source=FileStatus.IMPORTING, target=FileStatus.IMPORTED)
    def finish(self) -> None:
        pass

    @transition(field=status, source=[FileStatus.RECEIVED, FileStatus.IMPORTING], target=FileStatus.FAILED)
    def fail(self) -> None:
        pass


class StatementFileContent(models.Model):
    """The file's bytes, kept apart so lists of files never load them; immutable (trigger)."""

    file = models.OneToOneField(StatementFile, on_delete=models.PROTECT, primary_key=True, related_name="content")
    body = models.BinaryField()

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"content of file {self.file_id}"


class ItemSide(models.TextChoices):
    EXTERNAL = "EXTERNAL", "External line"
    INTERNAL = "INTERNAL", "Internal movement"


class MatchStatus(models.TextChoices):
    UNMATCHED = "UNMATCHED", "Not matched yet"
    MATCHED = "MATCHED", "Matched"
    MANUAL_MATCHED = "MANUAL_MATCHED", "Matched by a decision"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH", "Matched with an amount difference"
    FEE_MISMATCH = "FEE_MISMATCH", "Matched with a fee difference"
    TIMING_DIFFERENCE = "TIMING_DIFFERENCE", "Timing difference"
    DUPLICATE = "DUPLICATE", "Duplicate"
    UNMATCHED_EXTERNAL = "UNMATCHED_EXTERNAL", "External line with no internal record"
    UNMATCHED_INTERNAL = "UNMATCHED_INTERNAL", "Internal movement not seen outside"


class ReconciliationItem(models.Model):
    """One external line or one expected internal movement. Amounts are signed minor units from
    the account holder's side: money in is positive. Fixed at creation (a trigger refuses any
    UPDATE): where an item stands is kept apart, in ReconciliationOpenItem (not explained yet) and
    ReconciliationMatchItem (the matches it belongs or belonged to), so a run that matches a million
    items writes narrow rows instead of rewriting a million wide ones."""

    side = models.CharField(max_length=8, choices=ItemSide.choices)
    # Indexed through recon_item_source_reference and recon_item_one_per_file_line (no index of their own).
    # Checked per statement, not per row (migration 0006): a file's million items refer to
    # one source and one file.
    source = models.ForeignKey(ReconciliationSource, on_delete=models.PROTECT, related_name="items", db_index=False,
                               db_constraint=False)  # fmt: skip
    statement_file = models.ForeignKey(StatementFile, on_delete=models.PROTECT, null=True, blank=True,
                                       related_name="items", db_index=False, db_constraint=False)  # fmt: skip
    line_no = models.IntegerField(null=True, blank=True)  # external: position in the file
    internal_type = models.CharField(max_length=32, blank=True)  # internal: payment_attempt, refund, payout, ...
    internal_id = models.CharField(max_length=64, blank=True)  # internal: pa_..., rf_..., po_..., lj_...
    kind = models.CharField(max_length=32)  # CAPTURE, REFUND, PAYOUT, FEE, CREDIT, DEBIT, SETTLED, ...
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    gross_minor = models.BigIntegerField(null=True, blank=True)
    fee_minor = models.BigIntegerField(null=True, blank=True)
    net_minor = models.BigIntegerField(null=True, blank=True)
    value_date = models.DateField()  # the business date matching compares (booking date when no value date)
    reference = models.CharField(max_length=140, blank=True)
    references = models.JSONField(default=dict, blank=True)
    counterparty = models.CharField(max_length=140, blank=True)
    description = models.TextField(blank=True)
    batch_id = models.CharField(max_length=64, blank=True)
    reversal = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        default_permissions = ("view",)
        constraints = [
            # Internal movements have no file (recon_item_side_fields), and NULLs are distinct: one
            # item per line of a file, and the index also finds a file's items.
            models.UniqueConstraint(fields=["statement_file", "line_no"], name="recon_item_one_per_file_line"),
            models.UniqueConstraint(
                fields=["source", "internal_type", "internal_id", "kind"],
                condition=Q(side="INTERNAL"),
                name="recon_item_one_per_movement",
            ),
            models.CheckConstraint(
                condition=(
                    Q(side="EXTERNAL", statement_file__isnull=False, line_no__isnull=False)
                    | Q(side="INTERNAL", statement_file__isnull=True) & ~Q(internal_id="")
                ),
                name="recon_item_side_fields",
            ),
        ]
        indexes = [
            models.Index(fields=["source", "reference"], name="recon_item_source_reference"),
            # A run finds the items new since the source's watermark by this index (migration 0008).
            models.Index(fields=["source", "id"], name="recon_item_source_new"),
        ]

    def __str__(self) -> str:
        where = f"{self.statement_file_id}:{self.line_no}" if self.side == ItemSide.EXTERNAL else self.internal_id
        return f"{self.side.lower()} {where} {self.amount_minor} {self.currency}"


class ReconciliationWatermark(models.Model):
    """How far the source's runs have looked: every item of the source with a greater id is new, and
    the next run considers it. Items are written under the source's lock in shared mode and a run
    takes it exclusively (reconciliation.services.common), so no item can be committed below a
    watermark after a run has read past it. A new item a decision matched before any run saw it is
    not new any more: the next run leaves out the items of the decisions after decisions_through,
    and moves past them. Only moves forward (trigger); one row per source."""

    source = models.OneToOneField(ReconciliationSource, on_delete=models.PROTECT, primary_key=True,
                                  related_name="watermark")  # fmt: skip
    considered_through = models.BigIntegerField()  # the greatest item id a run of this source has considered
    # The greatest id of the source's matches made by a decision when that run read: a decision may
    # match a new item before any run has considered it, and only the decisions after this can have.
    decisions_through = models.BigIntegerField(default=0)
    run = models.ForeignKey("ReconciliationRun", on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"source {self.source_id} considered through item {self.considered_through}"


class ReconciliationOpenItem(models.Model):
    """An item a run has considered and no match explains: the work list of the source's next run,
    with the items new since its watermark. Written by the run that leaves the item unexplained,
    removed when a match takes the item (removing it is the compare-and-set: a run or a manual match
    that removes fewer rows than it took items lost a race and rolls back), created again when the
    match is undone. Never above the source's watermark (trigger). Keyed (source, item), so a run
    reads its source's open items without reading the source's history. New items get no row: a run
    that matches a million new lines has nothing to delete."""

    pk = models.CompositePrimaryKey("source_id", "item_id")
    # No database foreign keys: the rows are written in the same transaction as the items or matches
    # they follow, from ids just read, a million at a time; the checks would double a run's write.
    # Items and sources are never deleted (triggers), so nothing can be left dangling.
    source = models.ForeignKey(ReconciliationSource, on_delete=models.DO_NOTHING, related_name="+",
                               db_index=False, db_constraint=False)  # fmt: skip
    item = models.ForeignKey(ReconciliationItem, on_delete=models.DO_NOTHING, related_name="+",
                             db_index=False, db_constraint=False)  # fmt: skip

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"open item {self.item_id}"


class ReconciliationMatchItem(models.Model):
    """An item's place in a match. Kept when the match is undone (`active` false), so a match
    always shows what it grouped. At most one active match per item: a unique index, whoever
    writes."""

    pk = models.CompositePrimaryKey("match_id", "item_id")
    # No database foreign keys, for the reason given on ReconciliationOpenItem: the match rows are
    # written by the same statement sequence, and nothing here is ever deleted (trigger).
    match = models.ForeignKey("ReconciliationMatch", on_delete=models.DO_NOTHING, related_name="memberships",
                              db_index=False, db_constraint=False)  # fmt: skip
    item = models.ForeignKey(ReconciliationItem, on_delete=models.DO_NOTHING, related_name="memberships",
                             db_index=False, db_constraint=False)  # fmt: skip
    external = models.BooleanField()  # the item's side, kept here for the breaks' queries
    active = models.BooleanField(default=True)

    class Meta:
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["item"], condition=Q(active=True), name="recon_item_one_active_match"),
        ]

    def __str__(self) -> str:
        return f"item {self.item_id} in match {self.match_id}"


class RuleKind(models.TextChoices):
    EXACT_REFERENCE = "EXACT_REFERENCE", "Exact reference and amount"
    REFERENCE_TOLERANCE = "REFERENCE_TOLERANCE", "Reference, amount within tolerance"
    AMOUNT_DATE_WINDOW = "AMOUNT_DATE_WINDOW", "Amount and currency within a date window"
    FEE_AWARE = "FEE_AWARE", "Gross against net with the provider's fee line"
    BATCH_MANY_TO_ONE = "BATCH_MANY_TO_ONE", "Many internal movements against one batched line"


class ReconciliationRule(models.Model):
    """A matching rule as data: applied in `position` order; a change is a new version (the
    matches keep the code and version that made them)."""

    code = models.SlugField(max_length=48)
    version = models.PositiveIntegerField(default=1)
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=24, choices=RuleKind.choices)
    params = models.JSONField(default=dict, blank=True)  # tolerance_minor, tolerance_bps, window_days, ...
    source = models.ForeignKey(ReconciliationSource, on_delete=models.PROTECT, null=True, blank=True,
                               related_name="rules")  # fmt: skip  # none: every source
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        default_permissions = ("view",)
        constraints = [models.UniqueConstraint(fields=["code", "version"], name="recon_rule_code_version_unique")]
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.code} v{self.version}"


class RunStatus(models.TextChoices):
    RUNNING = "RUNNING", "Running"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"


class ReconciliationRun(models.Model):
    public_id = models.CharField(max_length=32)  # rr_...
    source = models.ForeignKey(ReconciliationSource, on_delete=models.PROTECT, related_name="runs")
    status = FSMField(default=RunStatus.RUNNING, choices=RunStatus.choices, protected=True)
    started_by = models.CharField(max_length=150)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    items_considered = models.IntegerField(default=0)
    matches_made = models.IntegerField(default=0)
    breaks_opened = models.IntegerField(default=0)
    breaks_closed = models.IntegerField(default=0)
    seconds = models.FloatField(default=0)
    error_message = models.TextField(blank=True)

    class Meta:
        default_permissions = ("view",)
        constraints = [models.UniqueConstraint(fields=["public_id"], name="recon_run_public_id_unique")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.status}"

    @transition(field=status, source=RunStatus.RUNNING, target=RunStatus.SUCCEEDED)
    def succeed(self) -> None:
        pass

    @transition(field=status, source=RunStatus.RUNNING, target=RunStatus.FAILED)
    def fail(self) -> None:
        pass


class MatchShape(models.TextChoices):
    ONE_TO_ONE = "ONE_TO_ONE", "One to one"
    ONE_TO_MANY = "ONE_TO_MANY", "One external to many internal"
    MANY_TO_ONE = "MANY_TO_ONE", "Many external to one internal"
    MANY_TO_MANY = "MANY_TO_MANY", "Many to many"


class MatchState(models.TextChoices):
    ACTIVE = "ACTIVE", "Active"
    UNMATCHED = "UNMATCHED", "Undone"


class ReconciliationMatch(models.Model):
    """Items explained together: by a rule (code and version) or by a manual decision, with the
    amount left over and the tolerance that allowed it. Undoing a match (unmatch) keeps the row."""

    public_id = models.CharField(max_length=32)  # rm_...
    # References checked per statement (migration 0006): a run's million matches name one
    # source and one run.
    # Indexed through recon_match_source_recent (source first).
    source = models.ForeignKey(ReconciliationSource, on_delete=models.PROTECT, related_name="matches",
                               db_index=False, db_constraint=False)  # fmt: skip
    # Not indexed: nothing looks matches up by run, and the index cost a 950,000-match run 0.5 s (migration 0009).
    run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, null=True, blank=True, related_name="matches",
                            db_index=False, db_constraint=False)  # fmt: skip
    rule_code = models.CharField(max_length=48, blank=True)
    rule_version = models.PositiveIntegerField(null=True, blank=True)
    # Indexed only where set (recon_match_decision): a run writes up to a million matches without one.
    decision = models.ForeignKey("ReconciliationManualDecision", on_delete=models.PROTECT, null=True, blank=True,
                                 related_name="matches", db_index=False, db_constraint=False)  # fmt: skip
    shape = models.CharField(max_length=12, choices=MatchShape.choices)
    result = models.CharField(max_length=20, choices=MatchStatus.choices)
    confidence = models.DecimalField(max_digits=4, decimal_places=3)  # 0.000 - 1.000
    amount_delta_minor = models.BigIntegerField(default=0)  # external minus internal
    currency = models.CharField(max_length=3)
    tolerance = models.JSONField(default=dict, blank=True)  # what allowed the delta
    state = FSMField(default=MatchState.ACTIVE, choices=MatchState.choices, protected=True)
    created_at = models.DateTimeField()
    unmatched_at = models.DateTimeField(null=True, blank=True)
    unmatched_by = models.CharField(max_length=150, blank=True)

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="recon_match_public_id_unique"),
            models.CheckConstraint(
                condition=~Q(rule_code="") | Q(decision__isnull=False), name="recon_match_rule_or_decision"
            ),
        ]
        indexes = [
            # The matches that keep a break open (breaks_sync reads them on every run).
            models.Index(
                fields=["source", "result"],
                condition=Q(state="ACTIVE", result__in=["AMOUNT_MISMATCH", "FEE_MISMATCH", "DUPLICATE"]),
                name="recon_match_open_differences",
            ),
            models.Index(fields=["decision"], condition=Q(decision__isnull=False), name="recon_match_decision"),
            # The match history of one source, newest first (keyset by id).
            models.Index(fields=["source", "id"], name="recon_match_source_recent"),
            # A source's matches made by decisions since its last run (the new items they took).
            models.Index(fields=["source", "id"], condition=Q(decision__isnull=False), name="recon_match_by_decision"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.result} ({self.rule_code or 'decision'})"

    @transition(field=state, source=MatchState.ACTIVE, target=MatchState.UNMATCHED)
    def unmatch(self) -> None:
        pass


class BreakStatus(models.TextChoices):
    # A decision waiting for its checker is the approvals engine's pending request on the break
    # (one per target), not a state of the break.
    OPEN = "OPEN", "Open"
    CLOSED = "CLOSED", "Closed"


class ReconciliationBreak(models.Model):
    """An item nobody has explained yet (or explained with a difference). Closed by a later
    automatic match (naming its rule) or by a decision; reopened when that match is undone."""

    public_id = models.CharField(max_length=32)  # rb_...
    # References checked per statement (migration 0006).
    item = models.ForeignKey(ReconciliationItem, on_delete=models.PROTECT, related_name="breaks", db_constraint=False)
    # Indexed through recon_break_queue (source first).
    source = models.ForeignKey(ReconciliationSource, on_delete=models.PROTECT, related_name="breaks", db_index=False,
                               db_constraint=False)  # fmt: skip
    break_type = models.CharField(max_length=20, choices=MatchStatus.choices)
    amount_minor = models.BigIntegerField()  # the amount at stake (the item's, or the delta of a mismatch)
    currency = models.CharField(max_length=3)
    business_date = models.DateField()  # ageing counts from here
    owner_team = models.CharField(max_length=48)
    owner_user = models.CharField(max_length=150, blank=True)
    case_ref = models.CharField(max_length=20, blank=True)
    status = FSMField(default=BreakStatus.OPEN, choices=BreakStatus.choices, protected=True)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    # Indexed only where set (recon_break_closed_by_match).
    closed_by_match = models.ForeignKey(ReconciliationMatch, on_delete=models.PROTECT, null=True, blank=True,
                                        related_name="closed_breaks", db_index=False, db_constraint=False)  # fmt: skip
    closing_note = models.CharField(max_length=200, blank=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        permissions = [
            ("propose_recon_decision", "Can propose a reconciliation decision"),
            ("decide_recon_decision", "Can decide a reconciliation decision"),
            ("export_reconciliationbreak", "Can export the reconciliation break queue"),
        ]
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="recon_break_public_id_unique"),
            # One open break per item, whatever runs overlap.
            models.UniqueConstraint(
                fields=["item"], condition=~Q(status="CLOSED"), name="recon_break_one_open_per_item"
            ),
        ]
        indexes = [
            models.Index(fields=["source", "status", "business_date"], name="recon_break_queue"),
            models.Index(
                fields=["closed_by_match"],
                condition=Q(closed_by_match__isnull=False),
                name="recon_break_closed_by_match",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.break_type} {self.status}"

    @transition(field=status, source=BreakStatus.OPEN, target=BreakStatus.CLOSED)
    def close(self) -> None:
        pass


class DecisionType(models.TextChoices):
    ACCEPT_EXACT_MATCH = "ACCEPT_EXACT_MATCH", "Accept exact match"
    ACCEPT_TOLERANCE_MATCH = "ACCEPT_TOLERANCE_MATCH", "Accept tolerance match"
    MANUAL_MANY_TO_ONE = "MANUAL_MANY_TO_ONE", "Manual many-to-one match"
    MANUAL_ONE_TO_MANY = "MANUAL_ONE_TO_MANY", "Manual one-to-many match"
    TIMING_DIFFERENCE = "TIMING_DIFFERENCE", "Classify as timing difference"
    PROVIDER_FEE_DIFFERENCE = "PROVIDER_FEE_DIFFERENCE", "Classify as provider fee difference"
    BANK_FEE_DIFFERENCE = "BANK_FEE_DIFFERENCE", "Classify as bank fee difference"
    DUPLICATE_EXTERNAL = "DUPLICATE_EXTERNAL", "Classify as duplicate external record"
    CORRECTION_PROPOSAL = "CORRECTION_PROPOSAL", "Create correction proposal"
    PROVIDER_INVESTIGATION = "PROVIDER_INVESTIGATION", "Send to provider investigation"
    MARK_UNRECOVERABLE = "MARK_UNRECOVERABLE", "Mark unrecoverable"


class ReconciliationManualDecision(models.Model):
    """What a person decided about a break, with the approval that let it run."""

    public_id = models.CharField(max_length=32)  # rd_...
    recon_break = models.ForeignKey(ReconciliationBreak, on_delete=models.PROTECT, related_name="decisions")
    decision_type = models.CharField(max_length=32, choices=DecisionType.choices)
    reason_code = models.CharField(max_length=48)
    reason_text = models.TextField()
    amount_delta_minor = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    decided_by = models.CharField(max_length=150)
    decided_at = models.DateTimeField()
    approved_by = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approval_ref = models.CharField(max_length=32, blank=True)  # act_...
    correction_journal_ref = models.CharField(max_length=32, blank=True)  # lj_...
    evidence_ref = models.CharField(max_length=64, blank=True)
    case_ref = models.CharField(max_length=20, blank=True)

    class Meta:
        default_permissions = ("view",)
        constraints = [models.UniqueConstraint(fields=["public_id"], name="recon_decision_public_id_unique")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.decision_type}"
