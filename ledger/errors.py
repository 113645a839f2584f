"""Ledger refusals, each with a stable code."""

from backoffice.errors import ConcurrencyConflict, DomainError, PolicyDenied, ValidationFailed


class UnbalancedJournal(ValidationFailed):
    code = "UNBALANCED_JOURNAL"
    default_message = "Debits and credits differ."


class AccountNotOpen(PolicyDenied):
    code = "ACCOUNT_NOT_OPEN"
    default_message = "The account is frozen or closed."


class InsufficientFunds(PolicyDenied):
    code = "INSUFFICIENT_FUNDS"
    default_message = "The posting would take a non-negative account below zero."


class AlreadyReversed(DomainError):
    code = "ALREADY_REVERSED"
    default_message = "This journal has already been reversed."


class UnknownPostingRule(ValidationFailed):
    code = "UNKNOWN_POSTING_RULE"
    default_message = "No active posting rule has that code."


class LedgerBusy(ConcurrencyConflict):
    code = "LEDGER_BUSY"
    default_message = "The ledger could not post after repeated lock conflicts; try again."
