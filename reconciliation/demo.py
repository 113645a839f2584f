"""Demo reconciliation for `manage.py demo_seed`: the files the outside world would send about the
demo payments, imported and reconciled, so the reconciliation queue has work in it on first run.

- The simulated provider's merchant account (PROVIDER_ACCOUNT) sends a settlement report in the
  Adyen Settlement Detail Report layout, written from the ledger's succeeded captures and refunds at
  that provider, with deliberate breaks: two lines a little off (matched within tolerance, with the
  difference), one well off (AMOUNT_MISMATCH), one with another fee (FEE_MISMATCH), a line written
  twice (DUPLICATE), a sale we never made (UNMATCHED_EXTERNAL) and three captures missing from the
  report (UNMATCHED_INTERNAL).
- One operating bank account per payout currency sends an MT940 statement, written from the
  ledger's sent and returned payouts in that currency, plus the bank's monthly charge, which nothing
  internal explains (UNMATCHED_EXTERNAL).

Every write goes through the reconciliation services: source_create, statement_receive and
statement_import, expected_items_refresh, reconciliation_run (which opens the breaks and their
RECONCILIATION_BREAK cases). The files are written from stored data only (ledger journals and
payment rows in id order, no wall-clock time), so the same database gives the same bytes.

Idempotent: a source is created only when missing, a file only when its source has none, and a
source whose file is imported and which has a succeeded run is left alone, so a second seed
changes nothing (it does not even write a statement again, which would duplicate every line if the
payments had moved meanwhile). A seed interrupted half-way resumes where it stopped.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from backoffice.actors import Actor
from backoffice.clock import business_date, business_timezone
from backoffice.money import currency_exponent
from ledger.models import LedgerJournal
from payments.demo import PROVIDER_ACCOUNT
from payments.models import MethodType, PaymentAttempt, Payout, Refund
from payments.providers.simulator import PROVIDER_CODE
from reconciliation.models import (
    BreakStatus,
    FileStatus,
    ItemSide,
    MatchState,
    MatchStatus,
    ReconciliationBreak,
    ReconciliationItem,
    ReconciliationMatch,
    ReconciliationRule,
    ReconciliationRun,
    ReconciliationSource,
    RuleKind,
    RunStatus,
    SourceKind,
    StatementFile,
)
from reconciliation.services import (
    expected_items_refresh,
    reconciliation_run,
    source_create,
    statement_import,
    statement_receive,
)

PROVIDER_SOURCE = "sim-acct-demo-main"
SETTLEMENT_REPORT = "settlement_detail_report_batch_1.csv"
SETTLEMENT_BATCH = "1"


@dataclass(frozen=True)
class BankAccount:
    code: str
    name: str
    currency: str
    account_number: str  # 10-12 digits: never card-number-like
    bic: str  # 8 characters
    opening_major: int  # the statement's opening balance, in major units
    charge_major: int  # the bank's monthly account charge, in major units


BANK_ACCOUNTS = (
    BankAccount("bca-idr-operating", "BCA IDR operating account", "IDR", "8880012026", "CENAIDJA", 2_500_000_000,
                25_000),
    BankAccount("chase-usd-operating", "JPMorgan Chase USD operating account", "USD", "000987654321", "CHASUS33",
                250_000, 15),
    BankAccount("bdo-php-operating", "BDO PHP operating account", "PHP", "005550012345", "BNORPHMM", 25_000_000,
                500),
)  # fmt: skip

# What becomes of a capture in the provider's report, spread over the captures in this order.
ROLES = ("near", "beyond", "fee", "duplicate", "missing", "near", "missing", "missing")


@dataclass(frozen=True)
class Statement:
    filename: str
    data: bytes
    since: dt.date  # the period whose expected movements the file is reconciled against
    until: dt.date


# --- the seed ------------------------------------------------------------------------------------------


def reconciliation_demo_seed(*, actor: Actor, now: dt.datetime) -> str:
    codes = [PROVIDER_SOURCE, *(account.code for account in BANK_ACCOUNTS)]
    if _in_place(codes):
        return f"already in place: {_summary(codes)}"
    provider = _source(
        code=PROVIDER_SOURCE, name=f"Simulated provider, merchant account {PROVIDER_ACCOUNT}",
        kind=SourceKind.PROVIDER_ACCOUNT, parser="adyen_settlement_detail", account_identifier=PROVIDER_ACCOUNT,
        provider_code=PROVIDER_CODE, actor=actor, now=now,
    )  # fmt: skip
    _reconcile(provider, lambda: _settlement_report(now), actor=actor, now=now)
    for account in BANK_ACCOUNTS:
        bank = _source(
            code=account.code, name=account.name, kind=SourceKind.BANK_ACCOUNT, parser="mt940",
            currency=account.currency, account_identifier=account.account_number, actor=actor, now=now,
        )  # fmt: skip
        _reconcile(bank, lambda account=account: _bank_statement(account, now), actor=actor, now=now)
    return _summary(codes)


def _in_place(codes: list[str]) -> bool:
    """Every demo source exists with an imported file and a succeeded run."""
    sources = ReconciliationSource.objects.filter(code__in=codes)
    return (
        sources.count() == len(codes)
        and StatementFile.objects.filter(source__in=sources, status=FileStatus.IMPORTED)
        .values("source").distinct().count() == len(codes)
        and ReconciliationRun.objects.filter(source__in=sources, status=RunStatus.SUCCEEDED)
        .values("source").distinct().count() == len(codes)
    )  # fmt: skip


def _source(*, code: str, actor: Actor, now: dt.datetime, **details) -> ReconciliationSource:
    # Only when missing: a demo source someone has since reconfigured is theirs, not a conflict.
    existing = ReconciliationSource.objects.filter(code=code).first()
    return existing or source_create(code=code, actor=actor, now=now, **details)


def _reconcile(source: ReconciliationSource, build: Callable[[], Statement], *, actor: Actor, now: dt.datetime) -> None:
    """Receive and import the source's demo file (unless it has a file), then refresh its expected
    movements and run the matching (unless it has an imported file and a succeeded run)."""
    file = StatementFile.objects.filter(source=source).order_by("id").first()
    ran = ReconciliationRun.objects.filter(source=source, status=RunStatus.SUCCEEDED).exists()
    if file is not None and file.status == FileStatus.IMPORTED and ran:
        return
    statement = build()
    if file is None:
        file, _ = statement_receive(source=source, filename=statement.filename, data=statement.data, actor=actor,
                                    now=now)  # fmt: skip
    if file.status != FileStatus.IMPORTED:
        file = statement_import(file_id=file.public_id, actor=actor, now_fn=lambda: now)
    if file.status != FileStatus.IMPORTED:
        raise RuntimeError(
            f"the demo file {file.filename} of {source.code} was not imported ({file.status}): "
            f"{file.error_location}: {file.error_message}"
        )
    expected_items_refresh(source=source, since=statement.since, until=statement.until, actor=actor, now=now)
    reconciliation_run(source=source, actor=actor, now_fn=lambda: now)


def _summary(codes: list[str]) -> str:
    sources = ReconciliationSource.objects.filter(code__in=codes)
    files = StatementFile.objects.filter(source__in=sources)
    lines = sum(files.values_list("line_count", flat=True))
    internal = ReconciliationItem.objects.filter(source__in=sources, side=ItemSide.INTERNAL).count()
    matches = ReconciliationMatch.objects.filter(source__in=sources, state=MatchState.ACTIVE)
    matched = matches.filter(result=MatchStatus.MATCHED)
    within = matched.exclude(amount_delta_minor=0).count()
    breaks = ReconciliationBreak.objects.filter(source__in=sources, status=BreakStatus.OPEN)
    by_type = Counter(breaks.values_list("break_type", flat=True))
    types = ", ".join(f"{by_type[t]} {t.lower().replace('_', ' ')}" for t in sorted(by_type)) or "none"
    cases = len(set(breaks.exclude(case_ref="").values_list("case_ref", flat=True)))
    return (
        f"{sources.count()} sources, {files.count()} statement files ({lines} lines), {internal} expected movements, "
        f"{matches.count()} matches ({matched.count()} matched, {within} of them within tolerance), "
        f"{breaks.count()} open breaks ({types}) in {cases} cases"
    )


# --- reading what the ledger recorded ------------------------------------------------------------------


@dataclass(frozen=True)
class _Booked:
    """A journal expected_items_refresh reads: the object it was posted for, its date and time."""

    source_id: str
    accounting_date: dt.date
    posted_at: dt.datetime
    journal_pk: int


def _journals(journal_type: str, source_type: str) -> list[_Booked]:
    # The journals expected_items_refresh reads: of this type, for this kind of object, not reversed.
    rows = (
        LedgerJournal.objects.filter(journal_type=journal_type, source_type=source_type, reversed_by__isnull=True)
        .order_by("id")
        .values_list("source_id", "accounting_date", "posted_at", "id")
    )
    return [_Booked(*row) for row in rows]


def _period(dates: list[dt.date], now: dt.datetime) -> tuple[dt.date, dt.date]:
    return (min(dates), max(dates)) if dates else (business_date(now), business_date(now))


def _major(amount_minor: int, currency: str, *, separator: str = ".") -> str:
    """A non-negative amount in major units as statements write it: "1234.50" (MT940: "1234,50")."""
    exponent = currency_exponent(currency)
    whole, fraction = divmod(amount_minor, 10**exponent)
    return f"{whole}{separator}{fraction:0{exponent}d}" if exponent else f"{whole}{separator}"


# --- the provider's settlement report ------------------------------------------------------------------

ADYEN_COLUMNS = (
    "Company Account", "Merchant Account", "Psp Reference", "Merchant Reference", "Payment Method", "Creation Date",
    "TimeZone", "Type", "Modification Reference", "Gross Currency", "Gross Debit (GC)", "Gross Credit (GC)",
    "Exchange Rate", "Net Currency", "Net Debit (NC)", "Net Credit (NC)", "Commission (NC)", "Markup (NC)",
    "Scheme Fees (NC)", "Interchange (NC)", "Payment Method Variant", "Modification Merchant Reference",
    "Batch Number", "Reserved4", "Reserved5", "Reserved6", "Reserved7", "Reserved8", "Reserved9", "Reserved10",
)  # fmt: skip
_METHODS = {"VISA": "visa", "MASTERCARD": "mc", "AMEX": "amex", "JCB": "jcb"}


@dataclass(frozen=True)
class _Capture:
    booked: _Booked
    attempt: PaymentAttempt


def _settlement_report(now: dt.datetime) -> Statement:
    """The provider's report of the captures and refunds the ledger recorded at PROVIDER_CODE, with
    the deliberate breaks (module docstring)."""
    booked = _journals("CAPTURE_SUCCEEDED", "payment_attempt")
    attempts = PaymentAttempt.objects.filter(public_id__in=[b.source_id for b in booked], provider_code=PROVIDER_CODE)
    by_id = {a.public_id: a for a in attempts}
    captures = [_Capture(b, by_id[b.source_id]) for b in booked if b.source_id in by_id]
    booked_refunds = _journals("REFUND_SUCCEEDED", "refund")
    refund_rows = Refund.objects.filter(public_id__in=[b.source_id for b in booked_refunds],
                                        provider_code=PROVIDER_CODE).select_related("payment_attempt")  # fmt: skip
    refunds_by_id = {r.public_id: r for r in refund_rows}
    refunds = [(b, refunds_by_id[b.source_id]) for b in booked_refunds if b.source_id in refunds_by_id]
    roles = _roles(captures, refunded={r.payment_attempt.public_id for _, r in refunds})
    absolute, bps = _tolerance()

    rows: list[tuple[tuple, dict[str, str]]] = []  # (sort key, row)
    nears = 0
    for n, capture in enumerate(captures):
        role = roles.get(n, "")
        if role == "missing":
            continue
        attempt, gross, fee = capture.attempt, capture.attempt.amount_minor, capture.attempt.fee_minor
        allowed = max(absolute, gross * bps // 10_000)
        if role == "near":  # short by half the tolerance, then over by a third of it
            gross += -(allowed // 2) if nears == 0 else allowed // 3
            nears += 1
        elif role == "beyond":
            gross += -3 * allowed if gross > 6 * allowed else 3 * allowed
        elif role == "fee":
            fee += max(100, fee // 5)
        row = _settled(capture.booked, attempt.provider_reference, attempt.public_id, attempt, gross, fee)
        rows.append(((capture.booked.posted_at, capture.booked.journal_pk, 0), row))
        if role == "duplicate":
            rows.append(((capture.booked.posted_at, capture.booked.journal_pk, 1), dict(row)))
    for booked_refund, refund in refunds:
        attempt = refund.payment_attempt
        amount = _major(refund.amount_minor, refund.currency)
        row = _row(booked_refund, attempt.provider_reference, attempt.public_id, attempt, "Refunded",
                   refund.currency, **{"Modification Reference": refund.provider_refund_reference,
                                       "Modification Merchant Reference": refund.public_id,
                                       "Gross Debit (GC)": amount, "Net Debit (NC)": amount})  # fmt: skip
        rows.append(((booked_refund.posted_at, booked_refund.journal_pk, 0), row))
    if captures:
        # A sale the platform never made (an old point-of-sale integration still live at the provider):
        # its amount ends in 37, which no demo payment's does, so nothing can pair it by amount.
        model = captures[len(captures) // 2]
        digest = hashlib.sha256(f"unknown:{model.attempt.provider_reference}".encode()).hexdigest()
        gross = model.attempt.amount_minor - model.attempt.amount_minor % 100 + 37
        row = _settled(model.booked, f"sim_pay_{digest[:24]}", f"LEGACY-POS-{digest[24:30].upper()}", model.attempt,
                       gross, gross * 29 // 1000)  # fmt: skip
        rows.append(((model.booked.posted_at, model.booked.journal_pk, 2), row))
    rows.sort(key=lambda pair: pair[0])

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ADYEN_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(row for _, row in rows)
    dates = [c.booked.accounting_date for c in captures] + [b.accounting_date for b, _ in refunds]
    since, until = _period(dates, now)
    return Statement(filename=SETTLEMENT_REPORT, data=out.getvalue().encode("utf-8"), since=since, until=until)


def _roles(captures: list[_Capture], *, refunded: set[str]) -> dict[int, str]:
    """Capture position -> its deliberate break, the roles spread evenly over the captures. A missing
    capture is one without a refund in the report and with an amount other than the duplicated
    line's (a free line and a free capture of one amount may be paired by the date-window rule)."""
    count = min(len(ROLES), len(captures))
    roles: dict[int, str] = {}
    avoid: set[tuple[str, int]] = set()  # (currency, amount) of the duplicated line
    for k, role in enumerate(ROLES[:count]):
        start = (2 * k + 1) * len(captures) // (2 * count)
        for n in [*range(start, len(captures)), *range(start)]:
            attempt = captures[n].attempt
            amount = (attempt.currency, attempt.amount_minor)
            if n in roles or (role == "missing" and (attempt.public_id in refunded or amount in avoid)):
                continue
            roles[n] = role
            if role == "duplicate":
                avoid.add(amount)
            break
    return roles


def _tolerance() -> tuple[int, int]:
    """(tolerance_minor, tolerance_bps) of the reference-tolerance rule the run will apply."""
    rule = ReconciliationRule.objects.filter(kind=RuleKind.REFERENCE_TOLERANCE, active=True, source__isnull=True)
    rule = rule.order_by("position", "id").first()
    params = rule.params if rule is not None else {}
    return int(params.get("tolerance_minor", 100)), int(params.get("tolerance_bps", 50))


def _settled(booked: _Booked, psp: str, merchant_ref: str, attempt: PaymentAttempt, gross: int, fee: int) -> dict:
    currency = attempt.currency
    net = gross - fee
    # The fee as the provider itemises it (interchange ++): the parser adds the parts up again.
    interchange, scheme = fee * 6 // 10, fee // 10
    fees = {"Interchange (NC)": interchange, "Scheme Fees (NC)": scheme, "Markup (NC)": fee - interchange - scheme}
    return _row(
        booked, psp, merchant_ref, attempt, "Settled", currency,
        **{"Gross Credit (GC)": _major(gross, currency),
           ("Net Credit (NC)" if net >= 0 else "Net Debit (NC)"): _major(abs(net), currency),
           **{column: _major(part, currency) for column, part in fees.items() if fee}},
    )  # fmt: skip


def _row(booked: _Booked, psp: str, merchant_ref: str, attempt: PaymentAttempt, kind: str, currency: str,
         **amounts: str) -> dict[str, str]:  # fmt: skip
    local = booked.posted_at.astimezone(business_timezone())
    method = _METHODS.get(attempt.card_brand, "card") if attempt.method_type == MethodType.CARD else "banktransfer"
    return {
        "Company Account": "BackofficeDemo", "Merchant Account": PROVIDER_ACCOUNT, "Psp Reference": psp,
        "Merchant Reference": merchant_ref, "Payment Method": method, "Creation Date": f"{local:%Y-%m-%d %H:%M:%S}",
        "TimeZone": local.tzname() or "", "Type": kind, "Gross Currency": currency, "Exchange Rate": "1",
        "Net Currency": currency, "Payment Method Variant": method, "Batch Number": SETTLEMENT_BATCH, **amounts,
    }  # fmt: skip


# --- the bank statements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BankLine:
    value_date: dt.date
    amount_minor: int  # signed: money in is positive
    code: str  # the SWIFT transaction type
    bank_reference: str  # at most 16 characters
    details: str  # the :86: text


def _bank_statement(account: BankAccount, now: dt.datetime) -> Statement:
    """The account's MT940 statement: the payouts the ledger sent in its currency (and those that came
    back), then the bank's monthly charge on the last day."""
    sent = _journals("PAYOUT_SENT", "payout")
    returned = _journals("PAYOUT_RETURNED", "payout")
    payouts = Payout.objects.filter(public_id__in=[b.source_id for b in sent + returned], currency=account.currency)
    by_id = {p.public_id: p for p in payouts.select_related("beneficiary")}
    moves = sorted(
        [(b, -1) for b in sent if b.source_id in by_id] + [(b, 1) for b in returned if b.source_id in by_id],
        key=lambda move: (move[0].accounting_date, move[0].journal_pk),
    )
    dates = [b.accounting_date for b, _ in moves]
    if not dates:  # no payout in this currency: the statement covers the provider's period
        dates = [b.accounting_date for b in _journals("CAPTURE_SUCCEEDED", "payment_attempt")]
    since, until = _period(dates, now)
    lines = []
    for n, (booked, sign) in enumerate(moves, start=1):
        payout = by_id[booked.source_id]
        reference = payout.provider_payout_reference or payout.public_id
        what = "PAYOUT" if sign < 0 else "RETURNED PAYOUT"
        # "/" separates :86: sub-fields and ":" opens a tag on a wrapped line: neither belongs in a name.
        holder = payout.beneficiary.account_holder.replace("/", " ").replace(":", " ")
        lines.append(_BankLine(
            value_date=booked.accounting_date, amount_minor=sign * payout.amount_minor,
            code="NTRF" if sign < 0 else "NRTI", bank_reference=f"PO{booked.accounting_date:%y%m%d}{n:05d}",
            details=f"/EREF/{reference}//NAME/{holder}//REMI/USTD//{what} "
                    f"{payout.public_id}/",
        ))  # fmt: skip
    lines.append(_BankLine(
        value_date=until, amount_minor=-account.charge_major * 10 ** currency_exponent(account.currency),
        code="NCHG", bank_reference=f"CHG{until:%y%m%d}00001", details="/REMI/USTD//MONTHLY ACCOUNT MAINTENANCE FEE/",
    ))  # fmt: skip
    opening = account.opening_major * 10 ** currency_exponent(account.currency)
    data = _mt940(account, lines, opening=opening, since=since, until=until)
    return Statement(filename=f"{account.code}-{until:%Y%m%d}.940", data=data, since=since, until=until)


def _balance(mark_date: dt.date, amount_minor: int, currency: str) -> str:
    mark = "C" if amount_minor >= 0 else "D"
    return f"{mark}{mark_date:%y%m%d}{currency}{_major(abs(amount_minor), currency, separator=',')}"


def _wrapped(tag: str, text: str, width: int = 65) -> list[str]:
    """A tag's content as SWIFT writes it: lines of at most `width` characters."""
    content = f":{tag}:{text}"
    return [content[i : i + width] for i in range(0, len(content), width)]


def _mt940(account: BankAccount, lines: list[_BankLine], *, opening: int, since: dt.date, until: dt.date) -> bytes:
    currency = account.currency
    out = [
        f"{{1:F01{account.bic}AXXX0000000000}}", f"{{2:I940{account.bic}XXXN}}", "{4:",
        f":20:STMT{until:%y%m%d}{currency}", f":25:{account.account_number}", ":28C:00001/001",
        f":60F:{_balance(since, opening, currency)}",
    ]  # fmt: skip
    closing = opening
    for line in lines:
        mark = "C" if line.amount_minor > 0 else "D"
        amount = _major(abs(line.amount_minor), currency, separator=",")
        out.append(f":61:{line.value_date:%y%m%d%m%d}{mark}{amount}{line.code}NONREF//{line.bank_reference}")
        out.extend(_wrapped("86", line.details))
        closing += line.amount_minor
    out += [f":62F:{_balance(until, closing, currency)}", f":64:{_balance(until, closing, currency)}", "-}"]
    return ("\r\n".join(out) + "\r\n").encode("utf-8")
