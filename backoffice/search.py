"""Global search: what was typed, and the safe result rows it finds.

`classify(query)` reads the query and says what it is: an identifier with its type prefix (pi_, pa_,
rf_, po_, lj_, act_, evt_, rb_, m_, cus_), a case number (CASE-2026-000123), a customer's email or
phone number, an amount with its currency ("150000 IDR", "USD 1,500.00"), or anything else: a
provider reference, a merchant reference (the intent's business_id, not unique across merchants),
a merchant name or a bank reference on a statement line. One query may mean several things (a
national phone number may also be a virtual-account number); each meaning becomes lookups.

`search(user=..., query=...)` runs the lookups the user may run, against the authoritative tables
(no copy that could be stale), and returns prepared rows: kind, public id, title, status, amount,
merchant, created time, URL. It never returns secrets; provider references follow the user's
visibility (backoffice.visibility), customers' contact details are only their stored masked forms
(the raw values are never stored, the search matches the keyed hash). A kind the user has no view
permission for is not searched, and the result says which permission would search it.

Lists page by keyset on the primary key, newest first, per lookup: the cursor holds the last id
of every lookup that has more, so the next page continues each list without overlap. A page costs
one query per lookup run, whatever the number of rows.

Contains-search uses ILIKE with "%" and "_" escaped (they match themselves). Where pg_trgm exists
(payments migration 0004) trigram indexes serve it; where it does not (the embedded development
database) the same ILIKE runs without them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Count, F, Min, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, NullIf
from django.urls import NoReverseMatch, reverse

from backoffice.clock import business_timezone
from backoffice.errors import ValidationFailed
from backoffice.ids import parse_public_id
from backoffice.masking import mask_email, mask_tail
from backoffice.money import CURRENCY_EXPONENTS, Money
from backoffice.visibility import Visibility, visibility_for

PAGE_SIZE = 20
MAX_QUERY_LENGTH = 200
MIN_CONTAINS = 3  # shorter terms are matched whole: a trigram index cannot serve them
BAD_CURSOR = "The page link is not valid for this search; start again from the first page."


# --- kinds ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    key: str
    label: str  # plural, for headings and "not searched: ..."
    permissions: tuple[str, ...]  # any one of them lets the user search this kind


KINDS: dict[str, Kind] = {
    k.key: k
    for k in (
        Kind("payment_intent", "payment intents", ("payments.view_paymentintent",)),
        Kind("payment_attempt", "payment attempts", ("payments.view_paymentattempt",)),
        Kind("refund", "refunds", ("payments.view_refund",)),
        Kind("payout", "payouts", ("payments.view_payout",)),
        Kind("ledger_journal", "journals", ("ledger.view_ledgerjournal",)),
        # Team members see their teams' cases (object grants), the global permission sees all.
        Kind("case", "cases", ("cases.view_opscase", "cases.open_worklist")),
        Kind("action_request", "action requests", ("approvals.view_actionrequest",)),
        Kind("provider_event", "provider events", ("payments.view_providereventraw",)),
        Kind("reconciliation_break", "reconciliation breaks", ("reconciliation.view_reconciliationbreak",)),
        Kind("merchant", "merchants", ("payments.view_merchant",)),
        Kind("customer", "customers", ("payments.view_customer",)),
        Kind("statement_line", "bank statement lines", ("reconciliation.view_reconciliationitem",)),
    )
}
ID_PREFIXES = {
    "pi": "payment_intent", "pa": "payment_attempt", "rf": "refund", "po": "payout", "lj": "ledger_journal",
    "act": "action_request", "evt": "provider_event", "rb": "reconciliation_break", "m": "merchant",
    "cus": "customer",
}  # fmt: skip
_ID_NAMES = {
    "payment_intent": "a payment intent id", "payment_attempt": "a payment attempt id", "refund": "a refund id",
    "payout": "a payout id", "ledger_journal": "a ledger journal id", "action_request": "an action request id",
    "provider_event": "a provider event id", "reconciliation_break": "a reconciliation break id",
    "merchant": "a merchant id", "customer": "a customer id",
}  # fmt: skip


# --- classification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LookupSpec:
    """One list the page shows: `kind` rows found by `how` with `value`."""

    key: str  # unique on a page; the cursor's key
    kind: str
    how: str  # id, case_number, contains, exact, email, phone, customer_payments, amount
    field_label: str  # what was matched, for the heading ("by provider reference")
    value: object


@dataclass(frozen=True)
class Classification:
    query: str
    recognised: tuple[str, ...]  # what the query was read as, for people
    lookups: tuple[LookupSpec, ...]
    notes: tuple[str, ...] = ()
    error: str = ""
    personal: bool = False  # read as a customer's contact details: never shown back unmasked

    @property
    def shown(self) -> str:
        """The query as the page may show it back."""
        if not self.personal:
            return self.query
        return mask_email(self.query) if "@" in self.query else mask_tail(self.query)


_CASE_NUMBER = re.compile(r"^CASE-\d{4}-\d{6,12}$", re.IGNORECASE)
_ID_SHAPE = re.compile(r"^(?P<prefix>[A-Za-z]{1,4})_(?P<body>[0-9A-Za-z]{26})$")
_AMOUNT = re.compile(r"^(?:(?P<before>[A-Za-z]{3})\s*)?(?P<amount>\d[\d,]*(?:\.\d+)?)(?:\s*(?P<after>[A-Za-z]{3}))?$")
_PHONE_CHARS = re.compile(r"^\+?[\d\s\-().]{8,24}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def classify(query: str) -> Classification:
    """What `query` is, as lookups. Never touches the database."""
    text = " ".join(str(query or "").split())
    if not text:
        return Classification(query="", recognised=(), lookups=())
    if _CONTROL.search(str(query).replace("\t", " ").replace("\n", " ").replace("\r", " ")):
        return Classification(query=text, recognised=(), lookups=(), error="The search holds control characters.")
    if len(text) > MAX_QUERY_LENGTH:
        return Classification(
            query=text[:MAX_QUERY_LENGTH], recognised=(), lookups=(),
            error=f"A search is at most {MAX_QUERY_LENGTH} characters; this one has {len(text)}.",
        )  # fmt: skip

    shaped = _ID_SHAPE.match(text)
    if shaped:
        public_id = f"{shaped['prefix'].lower()}_{shaped['body'].upper()}"
        parsed = parse_public_id(public_id)
        if parsed and parsed[0] in ID_PREFIXES:
            kind = ID_PREFIXES[parsed[0]]
            return Classification(
                query=text, recognised=(_ID_NAMES[kind],),
                lookups=(LookupSpec(f"{kind}.id", kind, "id", "by id", public_id),),
            )  # fmt: skip
    if _CASE_NUMBER.match(text):
        number = text.upper()
        return Classification(
            query=text, recognised=("a case number",),
            lookups=(LookupSpec("case.number", "case", "case_number", "by case number", number),),
        )  # fmt: skip

    amount = _amount_of(text)
    if amount is not None:
        if isinstance(amount, str):
            return Classification(query=text, recognised=("an amount",), lookups=(), error=amount)
        heading = f"of {amount}"
        return Classification(
            query=text, recognised=(f"an amount: {amount}",),
            lookups=tuple(LookupSpec(f"{kind}.amount", kind, "amount", heading, amount)
                          for kind in ("payment_intent", "refund", "payout")),
        )  # fmt: skip

    if "@" in text and " " not in text:
        email = _email_hash(text)
        if email is not None:
            return Classification(
                query=text, recognised=("a customer's email address (matched by its keyed hash)",), personal=True,
                lookups=(
                    LookupSpec("customer.email", "customer", "email", "by email", email),
                    LookupSpec("payment_intent.customer", "payment_intent", "customer_payments",
                               "of the customers found", ("email", email)),
                ),
            )  # fmt: skip

    recognised: list[str] = []
    lookups: list[LookupSpec] = []
    phone = _phone_hashes(text)
    if phone:
        recognised.append("a customer's phone number (matched by its keyed hash)")
        lookups += [
            LookupSpec("customer.phone", "customer", "phone", "by phone number", phone),
            LookupSpec("payment_intent.customer", "payment_intent", "customer_payments", "of the customers found",
                       ("phone", phone)),
        ]  # fmt: skip
        if text.startswith("+"):
            return Classification(query=text, recognised=tuple(recognised), lookups=tuple(lookups), personal=True)

    recognised.append("a reference: provider reference, merchant reference, merchant name or bank reference")
    how = "contains" if len(text) >= MIN_CONTAINS else "exact"
    lookups += [
        LookupSpec("payment_attempt.provider_reference", "payment_attempt", how, "by provider reference", text),
        LookupSpec("refund.provider_reference", "refund", how, "by provider reference", text),
        LookupSpec("payout.provider_reference", "payout", how, "by provider reference", text),
        # Every delivery naming it, mappable or not: how a payment whose answer was lost (we never
        # learned the provider's reference) is found from the reference the provider quotes.
        LookupSpec("provider_event.provider_reference", "provider_event", "exact", "by provider reference", text),
        LookupSpec("payment_intent.merchant_reference", "payment_intent", how, "by merchant reference", text),
        LookupSpec("merchant.name", "merchant", how, "by name", text),
        LookupSpec("statement_line.reference", "statement_line", "exact", "by bank reference", text),
    ]
    notes = []
    if how == "exact":
        notes.append(f"Terms shorter than {MIN_CONTAINS} characters are matched whole, not inside references.")
    return Classification(
        query=text, recognised=tuple(recognised), lookups=tuple(lookups), notes=tuple(notes), personal=bool(phone)
    )


def _amount_of(text: str) -> Money | str | None:
    """Money for "150000 IDR" / "USD 1,500.00"; a message when it is an amount that cannot be one."""
    match = _AMOUNT.match(text)
    if not match or bool(match["before"]) == bool(match["after"]):
        return None
    currency = (match["before"] or match["after"]).upper()
    if currency not in CURRENCY_EXPONENTS:
        return None
    try:
        money = Money.parse(match["amount"], currency)
    except ValueError as exc:
        return f"Not an amount of {currency}: {exc}."
    if money.amount_minor <= 0:
        return "An amount to search for is greater than zero."
    return money


def _email_hash(text: str) -> str | None:
    from payments.services import customer_email_digest

    try:
        return customer_email_digest(text)[0]
    except ValidationFailed:
        return None


def _phone_hashes(text: str) -> tuple[str, ...]:
    """Keyed hashes the number may be stored under: an international number has one; a national one
    ("0812...") one per region whose calling code could complete it."""
    from payments.services import customer_phone_digest
    from payments.services.merchants import CALLING_CODES

    if not _PHONE_CHARS.match(text) or not (text.startswith("+") or text.startswith("0")):
        return ()
    if not 8 <= sum(ch.isdigit() for ch in text) <= 15:
        return ()
    hashes = []
    for region in sorted(CALLING_CODES) if not text.startswith("+") else ["ID"]:
        try:
            digest = customer_phone_digest(text, region=region)[0]
        except ValidationFailed:
            continue
        if digest not in hashes:
            hashes.append(digest)
    return tuple(hashes)


# --- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultRow:
    kind: str
    public_id: str
    title: str
    status: str = ""
    amount_minor: int | None = None
    currency: str = ""
    merchant: str = ""
    created_at: dt.datetime | dt.date | None = None
    url: str = ""
    detail: str = ""  # a safe second line: a masked reference, a card's last four, a source
    masked_email: str = ""  # a customer's contact as stored: masked forms only
    masked_phone: str = ""


@dataclass
class ResultGroup:
    key: str
    kind: str
    label: str  # "Payment attempts by provider reference"
    rows: list[ResultRow]
    more: bool


@dataclass
class SearchResult:
    query: str  # as the page may show it back (masked when it was read as personal data)
    personal: bool = False
    recognised: tuple[str, ...] = ()
    groups: list[ResultGroup] = field(default_factory=list)
    not_searched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    next_after: str = ""
    searched: tuple[str, ...] = ()  # the kinds searched, for the "nothing matched" explanation

    @property
    def total(self) -> int:
        return sum(len(g.rows) for g in self.groups)


def _link(name: str, arg: str) -> str:
    """The URL of a page, or "" where that page does not exist (yet) in this deployment."""
    if not arg:
        return ""
    try:
        return reverse(name, args=[arg])
    except NoReverseMatch:
        return ""


def encode_cursor(positions: dict[str, int]) -> str:
    if not positions:
        return ""
    raw = json.dumps(positions, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, int]:
    if not cursor:
        return {}
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(BAD_CURSOR) from exc
    if not isinstance(raw, dict) or not raw:
        raise ValueError(BAD_CURSOR)
    if not all(isinstance(k, str) and type(v) is int and v > 0 for k, v in raw.items()):
        raise ValueError(BAD_CURSOR)
    return raw


def may_search(user, kind: str) -> bool:
    return any(user.has_perm(p) for p in KINDS[kind].permissions)


def search(
    *,
    user,
    query: str,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    after: str = "",
    size: int = PAGE_SIZE,
) -> SearchResult:
    """The rows `query` finds that `user` may see, one group per lookup, newest first.

    One query per lookup run, whatever the number of rows. `after` continues the lookups a previous
    page had more of (and only those). `date_from`/`date_to` (business-timezone dates, inclusive)
    bound the lists (references, amounts, a customer's payments); an identifier is found whatever
    its date. Input problems come back in `errors`, never as exceptions."""
    found = classify(query)
    result = SearchResult(
        query=found.shown, personal=found.personal, recognised=found.recognised, notes=list(found.notes)
    )
    if found.error:
        result.errors.append(found.error)
        return result
    if date_from and date_to and date_from > date_to:
        result.errors.append("The date range ends before it starts.")
        return result
    try:
        positions = decode_cursor(after)
    except ValueError as exc:
        result.errors.append(str(exc))
        return result
    keys = {spec.key for spec in found.lookups}
    if positions and not set(positions) <= keys:
        result.errors.append(BAD_CURSOR)
        return result

    visibility = visibility_for(user)
    denied: list[str] = []
    next_positions: dict[str, int] = {}
    for spec in found.lookups:
        blocked = [k for k in _needs(spec) if not may_search(user, k)]
        if blocked:
            for k in blocked:
                line = f"{KINDS[k].label} (needs {' or '.join(KINDS[k].permissions)})"
                if line not in denied:
                    denied.append(line)
            continue
        if positions and spec.key not in positions:
            continue  # exhausted on an earlier page
        spec = _fit_to_visibility(spec, visibility, result.notes)
        queryset = _QUERIES[spec.kind](spec, user)
        if spec.how not in ("id", "case_number") and (date_from or date_to):
            queryset = _within(queryset, spec.kind, date_from, date_to)
        if spec.key in positions:
            queryset = queryset.filter(pk__lt=positions[spec.key])
        fetched = list(queryset.order_by("-pk")[: size + 1])
        more = len(fetched) > size
        rows = [_ROWS[spec.kind](obj, visibility) for obj in fetched[:size]]
        label = f"{KINDS[spec.kind].label.capitalize()} {spec.field_label}"
        result.groups.append(ResultGroup(key=spec.key, kind=spec.kind, label=label, rows=rows, more=more))
        if more:
            next_positions[spec.key] = fetched[size - 1].pk
        if spec.kind not in result.searched:
            result.searched += (spec.kind,)
    result.not_searched = denied
    result.next_after = encode_cursor(next_positions)
    if (date_from or date_to) and any(s.how in ("id", "case_number") for s in found.lookups):
        result.notes.append("An identifier is found whatever its date: the date range applies to lists only.")
    return result


def _needs(spec: LookupSpec) -> tuple[str, ...]:
    """The kinds a lookup reads: a customer's payments are found through the customer's data."""
    if spec.how == "customer_payments":
        return ("customer", "payment_intent")
    return (spec.kind,)


def _fit_to_visibility(spec: LookupSpec, visibility: Visibility, notes: list[str]) -> LookupSpec:
    """A user who sees provider references masked matches them whole, never inside: guessing a
    reference a few characters at a time would reveal what the mask hides."""
    if spec.how == "contains" and spec.field_label == "by provider reference" and not visibility.provider_references:
        note = "Provider references are matched whole for your role (you see them masked)."
        if note not in notes:
            notes.append(note)
        return LookupSpec(spec.key, spec.kind, "exact", spec.field_label, spec.value)
    return spec


_DATE_FIELDS = {
    "payment_intent": "created_at", "payment_attempt": "created_at", "refund": "created_at",
    "payout": "created_at", "merchant": "created_at", "customer": "created_at", "statement_line": "value_date",
}  # fmt: skip


def _within(queryset: QuerySet, kind: str, date_from: dt.date | None, date_to: dt.date | None) -> QuerySet:
    name = _DATE_FIELDS.get(kind)
    if name is None:
        return queryset
    if name == "value_date":
        if date_from:
            queryset = queryset.filter(value_date__gte=date_from)
        if date_to:
            queryset = queryset.filter(value_date__lte=date_to)
        return queryset
    tz = business_timezone()
    if date_from:
        queryset = queryset.filter(**{f"{name}__gte": dt.datetime.combine(date_from, dt.time.min, tzinfo=tz)})
    if date_to:
        end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
        queryset = queryset.filter(**{f"{name}__lt": end})
    return queryset


# --- queries per kind -------------------------------------------------------------------------------


def contains_pattern(term: str) -> str:
    """A LIKE pattern matching `term` anywhere, its "%", "_" and "\\" taken literally."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _text_match(model, column: str, spec: LookupSpec) -> Q:
    """Whole-value matches; for a contains lookup, references containing the term only when none
    matches whole. One statement: the inside branch sits behind an uncorrelated NOT EXISTS, which
    PostgreSQL evaluates once, so a pasted complete reference never pays for the trigram scan (whose
    cost grows with the trigrams the term shares with every row, "psp", "ord", "000").

    The inside branch is `column ILIKE pattern`, the form a pg_trgm GIN index on the plain column
    serves (Django's icontains compares UPPER(column::text), which that index does not). The
    subquery is written out: composed from querysets (a union, an Exists), it cost the page more
    Python time to build and compile than PostgreSQL spends running it."""
    if spec.how != "contains":
        return Q(**{column: spec.value})
    quote = connection.ops.quote_name
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    col = quote(model._meta.get_field(column).column)
    sql = (
        f"SELECT {pk} FROM {table} WHERE {col} = %s"  # noqa: S608 (names from the model, values as parameters)
        f" UNION ALL SELECT {pk} FROM {table} WHERE {col} ILIKE %s"
        f" AND NOT EXISTS (SELECT 1 FROM {table} WHERE {col} = %s)"
    )
    value = str(spec.value)
    return Q(pk__in=RawSQL(sql, (value, contains_pattern(value), value)))  # noqa: S611 (values as parameters)


def _payment_intents(spec: LookupSpec, user) -> QuerySet:
    from payments.models import PaymentIntent

    qs = PaymentIntent.objects.select_related("merchant")
    if spec.how == "id":
        return qs.filter(public_id=spec.value)
    if spec.how == "amount":
        return qs.filter(currency=spec.value.currency, amount_minor=spec.value.amount_minor)
    if spec.how == "customer_payments":
        channel, hashes = spec.value
        return qs.filter(customer__in=_customers_by_hash(channel, hashes).values("pk"))
    return qs.filter(_text_match(PaymentIntent, "business_id", spec))


def _customers_by_hash(channel: str, hashes) -> QuerySet:
    from payments.models import Customer

    if channel == "email":
        return Customer.objects.filter(email_hash=hashes)
    return Customer.objects.filter(phone_hash__in=list(hashes))


def _payment_attempts(spec: LookupSpec, user) -> QuerySet:
    from payments.models import PaymentAttempt

    qs = PaymentAttempt.objects.select_related("payment_intent__merchant")
    if spec.how == "id":
        return qs.filter(public_id=spec.value)
    return qs.filter(_text_match(PaymentAttempt, "provider_reference", spec))


def _refunds(spec: LookupSpec, user) -> QuerySet:
    from payments.models import Refund

    qs = Refund.objects.select_related("payment_intent__merchant")
    if spec.how == "id":
        return qs.filter(public_id=spec.value)
    if spec.how == "amount":
        return qs.filter(currency=spec.value.currency, amount_minor=spec.value.amount_minor)
    return qs.filter(_text_match(Refund, "provider_refund_reference", spec))


def _payouts(spec: LookupSpec, user) -> QuerySet:
    from payments.models import Payout

    qs = Payout.objects.select_related("merchant")
    if spec.how == "id":
        return qs.filter(public_id=spec.value)
    if spec.how == "amount":
        return qs.filter(currency=spec.value.currency, amount_minor=spec.value.amount_minor)
    return qs.filter(_text_match(Payout, "provider_payout_reference", spec))


def _journals(spec: LookupSpec, user) -> QuerySet:
    from ledger.models import LedgerJournal

    return LedgerJournal.objects.filter(public_id=spec.value).annotate(
        debit_total=Sum("entries__amount_minor", filter=Q(entries__direction="DEBIT")),
        currency_count=Count("entries__currency", distinct=True),
        one_currency=Min("entries__currency"),
    )


def _cases(spec: LookupSpec, user) -> QuerySet:
    from cases.selectors import visible_cases

    return visible_cases(user).filter(case_number=spec.value)


def _action_requests(spec: LookupSpec, user) -> QuerySet:
    from approvals.models import ActionRequest

    return ActionRequest.objects.filter(public_id=spec.value)


def _provider_events(spec: LookupSpec, user) -> QuerySet:
    from payments.models import PaymentAttempt, ProviderEventNormalized, ProviderEventRaw, Refund

    # The object it is about: as its newest mapping says, else as its body names it.
    latest_ref = (
        ProviderEventNormalized.objects.filter(raw_event=OuterRef("pk")).order_by("-pk").values("our_reference")[:1]
    )
    qs = ProviderEventRaw.objects.defer("body", "headers").annotate(
        about=Coalesce(Subquery(latest_ref), NullIf(F("our_reference"), Value("")))
    )
    payment_of = [
        model.objects.filter(public_id=OuterRef("about")).values("payment_intent__public_id")[:1]
        for model in (PaymentAttempt, Refund)
    ]
    qs = qs.annotate(intent_public_id=Coalesce(*(Subquery(q) for q in payment_of)))
    if spec.how == "id":
        return qs.filter(public_id=spec.value)
    return qs.filter(provider_reference=spec.value)


def _breaks(spec: LookupSpec, user) -> QuerySet:
    from reconciliation.models import ReconciliationBreak

    return ReconciliationBreak.objects.select_related("source").filter(public_id=spec.value)


def _merchants(spec: LookupSpec, user) -> QuerySet:
    from payments.models import Merchant

    if spec.how == "id":
        return Merchant.objects.filter(public_id=spec.value)
    return Merchant.objects.filter(_text_match(Merchant, "name", spec))


def _customers(spec: LookupSpec, user) -> QuerySet:
    from payments.models import Customer

    qs = Customer.objects.select_related("merchant")
    if spec.how == "id":
        return qs.filter(public_id=spec.value)
    return qs.filter(pk__in=_customers_by_hash(spec.how, spec.value).values("pk"))


def _statement_lines(spec: LookupSpec, user) -> QuerySet:
    from reconciliation.models import ReconciliationBreak, ReconciliationItem, ReconciliationSource

    latest_break = ReconciliationBreak.objects.filter(item=OuterRef("pk")).order_by("-pk").values("public_id")[:1]
    # Served by recon_item_source_reference (source, reference): one index descent per source.
    return (
        ReconciliationItem.objects.select_related("source")
        .filter(source__in=ReconciliationSource.objects.values("pk"), reference=spec.value)
        .annotate(break_public_id=Subquery(latest_break))
    )


_QUERIES: dict[str, Callable[[LookupSpec, object], QuerySet]] = {
    "payment_intent": _payment_intents, "payment_attempt": _payment_attempts, "refund": _refunds,
    "payout": _payouts, "ledger_journal": _journals, "case": _cases, "action_request": _action_requests,
    "provider_event": _provider_events, "reconciliation_break": _breaks, "merchant": _merchants,
    "customer": _customers, "statement_line": _statement_lines,
}  # fmt: skip


# --- rows per kind ----------------------------------------------------------------------------------


def _merchant_label(merchant) -> str:
    return f"{merchant.public_id} · {merchant.name}" if merchant is not None else ""


def _payment_url(intent_public_id: str) -> str:
    return _link("payments:payment_detail", intent_public_id)


def _intent_row(obj, visibility: Visibility) -> ResultRow:
    return ResultRow(
        kind="payment_intent", public_id=obj.public_id, title=f"{obj.business_type} {obj.business_id}",
        status=obj.status, amount_minor=obj.amount_minor, currency=obj.currency,
        merchant=_merchant_label(obj.merchant), created_at=obj.created_at, url=_payment_url(obj.public_id),
        detail=obj.description,
    )  # fmt: skip


def _attempt_row(obj, visibility: Visibility) -> ResultRow:
    intent = obj.payment_intent
    method = obj.get_method_type_display()
    if obj.card_last4:
        method = f"{method} {obj.card_brand} •••• {obj.card_last4}".replace("  ", " ")
    reference = visibility.provider_reference(obj.provider_reference)
    return ResultRow(
        kind="payment_attempt", public_id=obj.public_id,
        title=f"Attempt {obj.attempt_no} of {intent.public_id} · {method} at {obj.provider_code}",
        status=obj.status, amount_minor=obj.amount_minor, currency=obj.currency,
        merchant=_merchant_label(intent.merchant), created_at=obj.created_at, url=_payment_url(intent.public_id),
        detail=f"provider reference {reference}" if reference else "",
    )  # fmt: skip


def _refund_row(obj, visibility: Visibility) -> ResultRow:
    intent = obj.payment_intent
    reference = visibility.provider_reference(obj.provider_refund_reference)
    return ResultRow(
        kind="refund", public_id=obj.public_id, title=f"Refund of {intent.public_id} · {obj.reason_code}",
        status=obj.status, amount_minor=obj.amount_minor, currency=obj.currency,
        merchant=_merchant_label(intent.merchant), created_at=obj.created_at, url=_payment_url(intent.public_id),
        detail=f"provider reference {reference}" if reference else "",
    )  # fmt: skip


def _payout_row(obj, visibility: Visibility) -> ResultRow:
    reference = visibility.provider_reference(obj.provider_payout_reference)
    return ResultRow(
        kind="payout", public_id=obj.public_id, title=f"Payout at {obj.provider_code}", status=obj.status,
        amount_minor=obj.amount_minor, currency=obj.currency, merchant=_merchant_label(obj.merchant),
        created_at=obj.created_at, url=_link("payments:merchant_detail", obj.merchant.public_id),
        detail=f"provider reference {reference}" if reference else "",
    )  # fmt: skip


def _journal_row(obj, visibility: Visibility) -> ResultRow:
    single = obj.currency_count == 1 and obj.debit_total is not None
    return ResultRow(
        kind="ledger_journal", public_id=obj.public_id, title=f"{obj.journal_type} · {obj.description}".strip(" ·"),
        status="POSTED" if not obj.reverses_id else "REVERSAL",
        amount_minor=obj.debit_total if single else None, currency=obj.one_currency if single else "",
        created_at=obj.posted_at, url=_link("ledger:journal_detail", obj.public_id),
        detail=f"source {obj.source_type} {obj.source_id} · accounting date {obj.accounting_date.isoformat()}",
    )  # fmt: skip


def _case_row(obj, visibility: Visibility) -> ResultRow:
    return ResultRow(
        kind="case", public_id=obj.case_number, title=obj.title, status=obj.status, merchant=obj.merchant_ref,
        created_at=obj.created_at, url=_link("cases:workbench", obj.case_number),
        detail=f"{obj.get_case_type_display()} · {obj.severity} · {obj.owner_team}",
    )  # fmt: skip


def _request_row(obj, visibility: Visibility) -> ResultRow:
    return ResultRow(
        kind="action_request", public_id=obj.public_id, title=f"{obj.action_type} · {obj.target_label}",
        status=obj.status, amount_minor=obj.amount_minor, currency=obj.currency if obj.amount_minor else "",
        merchant=obj.merchant_ref, created_at=obj.created_at, url=_link("approvals:request_detail", obj.public_id),
        detail=f"proposed by {obj.maker}",
    )  # fmt: skip


def _event_row(obj, visibility: Visibility) -> ResultRow:
    event_id = visibility.provider_reference(obj.provider_event_id)
    detail = [f"signature {obj.signature_verdict}"]
    if obj.provider_reference:
        detail.insert(0, f"about {visibility.provider_reference(obj.provider_reference)}")
    if obj.failure_code:
        detail.append(obj.failure_code)
    if obj.intent_public_id:
        detail.append(f"payment {obj.intent_public_id}")
    return ResultRow(
        kind="provider_event", public_id=obj.public_id, title=f"{obj.provider_code} event {event_id}".strip(),
        status=obj.processing_status, created_at=obj.received_at, url=_payment_url(obj.intent_public_id or ""),
        detail=" · ".join(detail),
    )  # fmt: skip


def _break_row(obj, visibility: Visibility) -> ResultRow:
    return ResultRow(
        kind="reconciliation_break", public_id=obj.public_id, title=f"{obj.break_type} at {obj.source.code}",
        status=obj.status, amount_minor=obj.amount_minor, currency=obj.currency, created_at=obj.opened_at,
        url=_link("reconciliation:break_detail", obj.public_id),
        detail=f"business date {obj.business_date.isoformat()} · {obj.owner_team}",
    )  # fmt: skip


def _merchant_row(obj, visibility: Visibility) -> ResultRow:
    return ResultRow(
        kind="merchant", public_id=obj.public_id, title=obj.name, status=obj.status,
        merchant=f"{obj.region} · {obj.default_currency} · risk {obj.risk_tier}", created_at=obj.created_at,
        url=_link("payments:merchant_detail", obj.public_id),
    )  # fmt: skip


def _customer_row(obj, visibility: Visibility) -> ResultRow:
    # Only the stored masked forms exist; a user without personal data never reaches this row
    # (the customer kind needs payments.view_customer), and even then sees them masked.
    shown = visibility.personal_data
    return ResultRow(
        kind="customer", public_id=obj.public_id, title=f"Customer {obj.reference}",
        merchant=_merchant_label(obj.merchant), created_at=obj.created_at,
        url=_link("payments:merchant_detail", obj.merchant.public_id),
        masked_email=obj.email_masked if shown else "", masked_phone=obj.phone_masked if shown else "",
    )  # fmt: skip


def _statement_line_row(obj, visibility: Visibility) -> ResultRow:
    where = f"line {obj.line_no}" if obj.line_no is not None else obj.internal_type
    return ResultRow(
        kind="statement_line", public_id=obj.break_public_id or obj.internal_id or "",
        title=f"{obj.get_side_display()} {obj.kind} at {obj.source.code} ({where})".replace("  ", " "),
        amount_minor=obj.amount_minor, currency=obj.currency, created_at=obj.value_date,
        url=_link("reconciliation:break_detail", obj.break_public_id or ""), detail=f"bank reference {obj.reference}",
    )  # fmt: skip


_ROWS: dict[str, Callable[[object, Visibility], ResultRow]] = {
    "payment_intent": _intent_row, "payment_attempt": _attempt_row, "refund": _refund_row, "payout": _payout_row,
    "ledger_journal": _journal_row, "case": _case_row, "action_request": _request_row,
    "provider_event": _event_row, "reconciliation_break": _break_row, "merchant": _merchant_row,
    "customer": _customer_row, "statement_line": _statement_line_row,
}  # fmt: skip
