"""The double-entry ledger: the financial truth every other app writes through.

Accounts are buckets; a journal is one balanced accounting transaction; entries are its debit and
credit lines in integer minor units. Journals and entries are immutable once posted (PostgreSQL
refuses UPDATE and DELETE, and refuses at commit any journal that does not balance per currency);
corrections are reversal journals. `LedgerBalance` is a projection kept in the posting transaction
and provably equal to the sum of entries (`manage.py ledger_verify`).

Only `ledger.services` writes these tables.
"""

from django.db import models
from django.db.models import F, Q
from django_fsm import FSMField, transition


class AccountType(models.TextChoices):
    ASSET = "ASSET", "Asset"
    LIABILITY = "LIABILITY", "Liability"
    REVENUE = "REVENUE", "Revenue"
    EXPENSE = "EXPENSE", "Expense"
    EQUITY = "EQUITY", "Equity"


class Direction(models.TextChoices):
    DEBIT = "DEBIT", "Debit"
    CREDIT = "CREDIT", "Credit"


# The side on which an account's balance grows.
NORMAL_SIDE = {
    AccountType.ASSET: Direction.DEBIT,
    AccountType.EXPENSE: Direction.DEBIT,
    AccountType.LIABILITY: Direction.CREDIT,
    AccountType.REVENUE: Direction.CREDIT,
    AccountType.EQUITY: Direction.CREDIT,
}


class AccountRole(models.TextChoices):
    MERCHANT_PAYABLE = "MERCHANT_PAYABLE", "Merchant payable (available)"
    MERCHANT_PENDING = "MERCHANT_PENDING", "Merchant payable (pending)"
    MERCHANT_RESERVE = "MERCHANT_RESERVE", "Merchant reserve"
    MERCHANT_REFUND_RESERVE = "MERCHANT_REFUND_RESERVE", "Merchant refunds in flight"
    MERCHANT_RECEIVABLE = "MERCHANT_RECEIVABLE", "Merchant receivable"
    PLATFORM_FEE_REVENUE = "PLATFORM_FEE_REVENUE", "Platform fee revenue"
    PLATFORM_OPS_LOSS = "PLATFORM_OPS_LOSS", "Platform operational loss"
    PLATFORM_OPS_RECOVERY = "PLATFORM_OPS_RECOVERY", "Platform operational recovery"
    PSP_RECEIVABLE = "PSP_RECEIVABLE", "PSP receivable"
    BANK_CASH = "BANK_CASH", "Bank cash"
    PROVIDER_FEE_EXPENSE = "PROVIDER_FEE_EXPENSE", "Provider fee expense"
    REFUND_LIABILITY = "REFUND_LIABILITY", "Refund liability"
    DISPUTE_LOSS = "DISPUTE_LOSS", "Dispute loss"
    SUSPENSE = "SUSPENSE", "Suspense"
    PLATFORM_EQUITY = "PLATFORM_EQUITY", "Platform equity"


class BalanceBucket(models.TextChoices):
    PENDING = "PENDING", "Pending"
    AVAILABLE = "AVAILABLE", "Available"
    RESERVED = "RESERVED", "Reserved"
    CURRENT = "CURRENT", "Current"


class OwnerKind(models.TextChoices):
    PLATFORM = "PLATFORM", "Platform (one account per currency)"
    MERCHANT = "MERCHANT", "Merchant (one account per merchant and currency)"


class AccountStatus(models.TextChoices):
    OPEN = "OPEN", "Open"
    FROZEN = "FROZEN", "Frozen"
    CLOSED = "CLOSED", "Closed"


class ChartAccountSpec(models.Model):
    """The chart of accounts as data: what an account of each role is. Seeded by migration.

    Services ask for an account by role, currency and owner; the account is opened on demand from
    this spec. No service names an account code.
    """

    role = models.CharField(max_length=40, choices=AccountRole.choices, unique=True)
    code_prefix = models.CharField(max_length=16, help_text="e.g. 2100; codes are <prefix>-<CUR>[-<owner>]")
    name = models.CharField(max_length=120)
    account_type = models.CharField(max_length=16, choices=AccountType.choices)
    balance_bucket = models.CharField(max_length=16, choices=BalanceBucket.choices)
    owner_kind = models.CharField(max_length=16, choices=OwnerKind.choices)
    allow_negative = models.BooleanField()
    is_hot = models.BooleanField(
        default=False, help_text="Touched by nearly every journal: no stored projection, balance read from entries"
    )
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["code_prefix"]
        default_permissions = ("view", "change")
        constraints = [
            models.CheckConstraint(
                condition=~Q(is_hot=True, allow_negative=False), name="ledger_spec_hot_may_go_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code_prefix} {self.role}"


class LedgerAccount(models.Model):
    code = models.CharField(max_length=80, unique=True)
    name = models.CharField(max_length=160)
    role = models.CharField(max_length=40, choices=AccountRole.choices)
    account_type = models.CharField(max_length=16, choices=AccountType.choices)
    normal_side = models.CharField(max_length=6, choices=Direction.choices)
    currency = models.CharField(max_length=3)
    owner_ref = models.CharField(
        max_length=64, blank=True, default="", help_text="e.g. a merchant id; blank for platform"
    )
    balance_bucket = models.CharField(max_length=16, choices=BalanceBucket.choices)
    allow_negative = models.BooleanField()
    is_hot = models.BooleanField(default=False)
    status = FSMField(default=AccountStatus.OPEN, choices=AccountStatus.choices, protected=True)
    description = models.TextField(blank=True)
    opened_at = models.DateTimeField()

    class Meta:
        ordering = ["code"]
        default_permissions = ("view", "change")
        constraints = [
            models.UniqueConstraint(
                fields=["role", "currency", "owner_ref"], name="ledger_account_one_per_role_ccy_owner"
            ),
            models.CheckConstraint(
                condition=Q(account_type__in=["ASSET", "EXPENSE"], normal_side="DEBIT")
                | Q(account_type__in=["LIABILITY", "REVENUE", "EQUITY"], normal_side="CREDIT"),
                name="ledger_account_normal_side_matches_type",
            ),
            models.CheckConstraint(
                condition=~Q(is_hot=True, allow_negative=False), name="ledger_account_hot_may_go_negative"
            ),
        ]
        indexes = [models.Index(fields=["owner_ref", "currency"], name="ledger_account_owner_idx")]

    def __str__(self) -> str:
        return self.code

    @transition(field=status, source=AccountStatus.OPEN, target=AccountStatus.FROZEN)
    def freeze(self) -> None:
        """No postings while frozen."""

    @transition(field=status, source=AccountStatus.FROZEN, target=AccountStatus.OPEN)
    def unfreeze(self) -> None:
        pass

    @transition(field=status, source=[AccountStatus.OPEN, AccountStatus.FROZEN], target=AccountStatus.CLOSED)
    def close(self) -> None:
        pass


class LedgerJournal(models.Model):
    """A balanced, immutable set of entries. The table also has a column Django does not map,
    `posting_xact` (the transaction that posted it, migration 0006), used only by the trigger that
    refuses entries for a journal an earlier transaction posted."""

    public_id = models.CharField(max_length=32)  # unique: ledger_journal_public_id_unique
    journal_type = models.CharField(max_length=48)
    source_type = models.CharField(max_length=48)
    source_id = models.CharField(max_length=128)
    accounting_date = models.DateField()
    posted_at = models.DateTimeField()
    description = models.CharField(max_length=300, blank=True)
    idempotency_key = models.CharField(max_length=160)  # unique: ledger_journal_idempotency_key_unique
    request_hash = models.CharField(max_length=64)
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by",
        help_text="The journal this one reverses; a journal is reversed at most once",
    )  # fmt: skip
    case_ref = models.CharField(max_length=64, blank=True)
    approval_ref = models.CharField(max_length=64, blank=True)
    posted_by = models.CharField(max_length=150)
    # The journal_post_many batch that wrote it (its audit event's target); empty for a single posting.
    batch_ref = models.CharField(max_length=160, blank=True, default="", db_default="")

    class Meta:
        # Proposing and deciding adjustments and reversals (maker-checker, approvals engine).
        permissions = [
            ("propose_adjustment", "Can propose ledger adjustments and journal reversals"),
            ("decide_adjustment", "Can approve or reject ledger adjustments and journal reversals"),
        ]
        ordering = ["-id"]
        default_permissions = ("view",)
        indexes = [
            models.Index(fields=["source_type", "source_id"], name="ledger_journal_source_idx"),
            models.Index(fields=["accounting_date"], name="ledger_journal_date_idx"),
            models.Index(fields=["case_ref"], name="ledger_journal_case_idx", condition=~Q(case_ref="")),
        ]
        constraints = [
            # Unique as constraints, not `unique=True` fields: those also build a pattern-ops index
            # each, for LIKE searches nobody makes; every posting paid for maintaining both.
            models.UniqueConstraint(fields=["public_id"], name="ledger_journal_public_id_unique"),
            models.UniqueConstraint(fields=["idempotency_key"], name="ledger_journal_idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return self.public_id


class LedgerEntry(models.Model):
    journal = models.ForeignKey(LedgerJournal, on_delete=models.PROTECT, related_name="entries")
    # No index of its own: ledger_entry_account_idx (account, id) serves every lookup by account.
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="entries", db_index=False)
    direction = models.CharField(max_length=6, choices=Direction.choices)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)

    class Meta:
        ordering = ["id"]
        default_permissions = ("view",)
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="ledger_entry_amount_positive"),
            models.CheckConstraint(condition=Q(direction__in=["DEBIT", "CREDIT"]), name="ledger_entry_direction_valid"),
        ]
        indexes = [
            # Statements and point-in-time balances walk one account's entries in posting order.
            models.Index(
                fields=["account", "id"], name="ledger_entry_account_idx", include=["direction", "amount_minor"]
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.amount_minor} {self.currency} on account {self.account_id}"


class LedgerBalance(models.Model):
    """Projection of an account's entries, updated in the posting transaction under a row lock.

    `balance_minor` is signed on the account's normal side (`normal_sign` 1 for debit-normal, -1
    for credit-normal). Designated hot accounts have no row here: their balance is read from
    entries (docs/adr/0003-ledger-balances-and-hot-accounts.md).
    """

    account = models.OneToOneField(LedgerAccount, primary_key=True, on_delete=models.PROTECT, related_name="balance")
    normal_sign = models.SmallIntegerField()
    allow_negative = models.BooleanField()
    debit_total_minor = models.BigIntegerField(default=0)
    credit_total_minor = models.BigIntegerField(default=0)
    balance_minor = models.BigIntegerField(default=0)
    version = models.BigIntegerField(default=0)

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.CheckConstraint(
                condition=Q(balance_minor=(F("debit_total_minor") - F("credit_total_minor")) * F("normal_sign")),
                name="ledger_balance_equals_totals",
            ),
            models.CheckConstraint(condition=Q(normal_sign__in=[1, -1]), name="ledger_balance_sign_valid"),
            models.CheckConstraint(
                condition=Q(allow_negative=True) | Q(balance_minor__gte=0), name="ledger_balance_not_below_zero"
            ),
        ]

    def __str__(self) -> str:
        return f"balance of account {self.account_id}: {self.balance_minor}"


class AmountComponent(models.TextChoices):
    AMOUNT = "AMOUNT", "Amount"
    GROSS = "GROSS", "Gross"
    NET = "NET", "Net (gross minus fee)"
    FEE = "FEE", "Fee"


class PostingRule(models.Model):
    """A named mapping from a business event or adjustment type to debit and credit account roles.

    Rules are data (seeded by migration). A rule takes positive amounts only: its lines fix the
    direction, so a sign can never turn a credit into a debit.
    """

    code = models.CharField(max_length=48, unique=True)
    description = models.CharField(max_length=300)
    version = models.PositiveIntegerField(default=1)
    is_adjustment = models.BooleanField(default=False, help_text="A manual adjustment type (goes through approval)")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return self.code


class PostingRuleLine(models.Model):
    rule = models.ForeignKey(PostingRule, on_delete=models.CASCADE, related_name="lines")
    line_no = models.PositiveSmallIntegerField()
    direction = models.CharField(max_length=6, choices=Direction.choices)
    account_role = models.CharField(max_length=40, choices=AccountRole.choices)
    component = models.CharField(max_length=8, choices=AmountComponent.choices)

    class Meta:
        ordering = ["rule", "line_no"]
        default_permissions = ("view",)
        constraints = [models.UniqueConstraint(fields=["rule", "line_no"], name="ledger_rule_line_unique")]

    def __str__(self) -> str:
        return f"{self.direction} {self.account_role} {self.component}"
