"""The default matching rules, as data, in the order they are tried.

Seeded by migration 0003 (create what is missing, never overwrite a rule someone versioned). A
rule's behaviour is its kind plus its parameters; changing either is a new version, so every
match keeps the exact rule that made it.

- exact-reference: same reference, currency and amount (net for provider lines with a fee).
- reference-tolerance: same reference and currency, amount within the larger of an absolute
  tolerance and a share of the amount (basis points).
- fee-aware: a provider line whose gross equals the internal capture, explained by its fee line.
- amount-date-window: no usable reference; same amount and currency within a few days, only when
  exactly one candidate exists on each side (never a guess between two).
- batch-many-to-one: one batched external line (a settlement or payout batch) against the
  internal movements carrying its batch reference, summing exactly.
"""

# code, version, position, kind, params, description
DEFAULT_RULES = [
    ("exact-reference", 1, 10, "EXACT_REFERENCE", {}, "Same reference, currency and amount"),
    ("reference-tolerance", 1, 20, "REFERENCE_TOLERANCE", {"tolerance_minor": 100, "tolerance_bps": 50},
     "Same reference and currency; amount within 1.00 or 0.5%"),
    ("fee-aware", 1, 30, "FEE_AWARE", {"fee_tolerance_minor": 0},
     "Gross equals the capture; the fee line explains the net"),
    ("amount-date-window", 1, 40, "AMOUNT_DATE_WINDOW", {"window_days": 2},
     "Same amount and currency within 2 days, one candidate on each side"),
    ("batch-many-to-one", 1, 50, "BATCH_MANY_TO_ONE", {}, "A batched line against the movements of its batch"),
]  # fmt: skip


def ensure_rules(apps, now) -> None:
    Rule = apps.get_model("reconciliation", "ReconciliationRule")
    for code, version, position, kind, params, description in DEFAULT_RULES:
        Rule.objects.get_or_create(
            code=code, version=version,
            defaults={"position": position, "kind": kind, "params": params, "description": description,
                      "active": True, "created_at": now},
        )  # fmt: skip
