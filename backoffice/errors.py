"""Typed domain errors with stable codes.

Screens show `message`, audit records `code`, APIs return `code`. A service raises these instead
of returning flags, so every refusal path is explicit and testable.
"""

from __future__ import annotations


class DomainError(Exception):
    code = "DOMAIN_ERROR"
    default_message = "The operation was refused."

    def __init__(self, message: str | None = None, **details):
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ValidationFailed(DomainError):
    code = "VALIDATION_FAILED"
    default_message = "The request is not valid."


class PolicyDenied(DomainError):
    code = "POLICY_DENIED"
    default_message = "Policy does not allow this action."


class PermissionMissing(PolicyDenied):
    code = "PERMISSION_DENIED"
    default_message = "You do not have the permission this action needs."


class IllegalTransition(DomainError):
    code = "ILLEGAL_TRANSITION"
    default_message = "That change of state is not allowed from the current state."


class StaleTarget(DomainError):
    code = "STALE_TARGET"
    default_message = "The object changed since it was read; reload and try again."


class IdempotencyConflict(DomainError):
    code = "IDEMPOTENCY_CONFLICT"
    default_message = "This idempotency key was already used for a different request."


class NotFound(DomainError):
    code = "NOT_FOUND"
    default_message = "No such object."


class SelfApprovalRefused(PolicyDenied):
    code = "SELF_APPROVAL"
    default_message = "A maker cannot decide their own request."


class ConcurrencyConflict(DomainError):
    code = "CONCURRENCY_CONFLICT"
    default_message = "Another change to the same object is in progress; try again."
