"""The maker-checker engine: submit, approve (and execute), reject, cancel.

Every path (screen, admin action, command, task) calls these; the four-eyes rule, the approver
role and the limits are checked here, not in the callers. Every submit, decision, execution,
refusal and failure is an audit event; a refusal is audited in its own transaction and changes
nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction

from approvals.models import ActionRequest, ApprovalMode, ApprovalPolicy, RequestStatus
from approvals.registry import ActionSpec, action_spec
from approvals.rules import checker_refusal, limit_for
from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import Actor, system_actor
from backoffice.errors import (
    DomainError,
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    PermissionMissing,
    PolicyDenied,
    StaleTarget,
    ValidationFailed,
)
from backoffice.ids import new_public_id
from backoffice.masking import find_card_numbers
from backoffice.roles import roles_holding

TARGET = "action_request"
POLICY_ACTOR = system_actor("approval_policy")


def _json(value) -> dict:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _user(actor: Actor):
    if actor.is_system or actor.user_id is None:
        return None
    return get_user_model().objects.prefetch_related("groups").get(pk=actor.user_id)


def _audit(request: ActionRequest, event_type: str, *, actor: Actor, now: dt.datetime, result=AuditResult.SUCCEEDED,
           error: DomainError | None = None, before=None, after=None, reason_text: str = "") -> None:  # fmt: skip
    audit_record(
        event_type=event_type, result=result, actor=actor, action_type=request.action_type, target_type=TARGET,
        target_id=request.public_id, case_ref=request.case_ref, approval_ref=request.public_id,
        reason_code=request.reason_code, reason_text=reason_text, before=before, after=after, now=now,
        error_code=error.code if error else "", error_message=error.message if error else "",
    )  # fmt: skip


def _refused(what: str, action_type: str, target_id: str, exc: DomainError, *, actor: Actor, now: dt.datetime) -> None:
    audit_record(
        event_type=f"approvals.{what}_refused", result=AuditResult.REFUSED, actor=actor, action_type=action_type,
        target_type=TARGET, target_id=str(target_id)[:128], approval_ref=str(target_id)[:64]
        if str(target_id).startswith("act_") else "", error_code=exc.code, error_message=exc.message, now=now,
    )  # fmt: skip


def _policy(action_type: str) -> ApprovalPolicy:
    policy = ApprovalPolicy.objects.filter(action_type=action_type).first()
    if policy is None:
        raise PolicyDenied(f"no approval policy is set for {action_type}; nothing can be proposed")
    return policy


def needs_approval(policy: ApprovalPolicy, amount_minor: int | None, currency: str) -> bool:
    if policy.mode == ApprovalMode.NEVER:
        return False
    if policy.mode == ApprovalMode.ABOVE_AMOUNT and amount_minor is not None:
        threshold = policy.threshold_minor.get(currency)
        return threshold is None or amount_minor > int(threshold)
    return True


def _check_policy(spec: ActionSpec, policy: ApprovalPolicy, *, payload: dict, target, reason_code: str,
                  case_ref: str, maker_roles) -> None:  # fmt: skip
    """What a request must meet when proposed and again when it executes."""
    if policy.allowed_reason_codes and reason_code not in policy.allowed_reason_codes:
        raise PolicyDenied(
            f"reason code {reason_code!r} is not allowed for {spec.title}; use one of "
            + ", ".join(policy.allowed_reason_codes)
        )
    if policy.case_required or policy.evidence_required:
        from cases.models import OpsCase

        case = OpsCase.objects.filter(case_number=case_ref).first() if case_ref else None
        if case is None:
            raise PolicyDenied(f"{spec.title} needs a case: give the number of an open case")
        if not case.is_open:
            raise PolicyDenied(f"{case.case_number} is {case.get_status_display().lower()}; reopen it first")
        if policy.evidence_required and not case.evidence.exists():
            raise PolicyDenied(f"{spec.title} needs evidence attached to {case.case_number} first")
    if target.amount_minor is not None and maker_roles is not None:
        limit = limit_for(policy.maker_limits_minor, maker_roles, target.currency)
        if policy.maker_limits_minor and (limit is None or target.amount_minor > limit):
            raise PolicyDenied(
                f"{target.amount_minor} {target.currency} (minor units) is above what your role may propose"
                + (f" ({limit})" if limit is not None else " (no limit set for your role in this currency)")
            )


def request_submit(
    *, action_type: str, payload: dict, reason_code: str, reason_text: str, actor: Actor, now: dt.datetime,
    idempotency_key: str, case_ref: str = "", ticket_id: str = "",
) -> ActionRequest:  # fmt: skip
    """Propose a change. Checks the maker's permission and limit, the policy's reason codes, case and
    evidence requirements, validates and previews, and writes the request and its audit event. When
    the policy needs no approval for it, it executes at once (still recorded as a request). The same
    key with the same payload returns the first request; at most one open request per target."""
    try:
        spec = action_spec(action_type)
        user = _user(actor)
        if user is None and not actor.is_system:
            raise PermissionMissing("proposing a change needs a signed-in user")
        if user is not None and not user.has_perm(spec.propose_permission):
            holders = ", ".join(roles_holding(spec.propose_permission)) or "no role"
            raise PermissionMissing(
                f"proposing {spec.title} needs the permission {spec.propose_permission}, which these roles hold: "
                f"{holders}"
            )
        reason_text = (reason_text or "").strip()
        if not reason_code or not reason_text:
            raise ValidationFailed("a change needs a reason code and an explanation")
        if find_card_numbers(reason_text) or find_card_numbers(ticket_id or ""):
            raise ValidationFailed("the reason contains what looks like a full card number; use the last four digits")
        if not idempotency_key or len(idempotency_key) > 64:
            raise ValidationFailed("a change needs an idempotency key of at most 64 characters")
        # The submission as sent, so a retry is recognised before anything is checked again: the
        # target or the case may have moved on since (the request executed, the case was resolved)
        # and the answer to a retry is still the first request.
        request_hash = hashlib.sha256(
            json.dumps([payload, reason_code, reason_text, case_ref, ticket_id], sort_keys=True,
                       cls=DjangoJSONEncoder).encode()
        ).hexdigest()  # fmt: skip
        earlier = _replayed(action_type, idempotency_key, request_hash, actor)
        if earlier is not None:
            return earlier
        normalized = spec.validate(dict(payload), actor)
        target = spec.target(normalized)
        policy = _policy(action_type)
        _check_policy(spec, policy, payload=normalized, target=target, reason_code=reason_code,
                      case_ref=case_ref.strip(), maker_roles=actor.roles if user is not None else None)  # fmt: skip
        with transaction.atomic():
            approval = needs_approval(policy, target.amount_minor, target.currency)
            request = ActionRequest(
                public_id=new_public_id("act"), action_type=action_type, target_type=target.target_type,
                target_id=target.target_id, target_label=target.label[:200], target_version=target.version,
                merchant_ref=target.merchant_ref, customer_ref=target.customer_ref,
                subject_name=target.subject_name[:200], payload=_json(normalized),
                preview=_json({**spec.preview(normalized, now), "needs_approval": approval,
                               "approver_roles": list(policy.approver_roles)}),
                amount_minor=target.amount_minor, currency=target.currency, reason_code=reason_code,
                reason_text=reason_text, ticket_id=(ticket_id or "").strip()[:64], case_ref=case_ref.strip(),
                idempotency_key=idempotency_key, request_hash=request_hash, risk_level=policy.risk_level,
                needs_approval=approval, allowed_checker_roles=list(policy.approver_roles), maker=actor.label,
                maker_user_id=actor.user_id, created_at=now,
            )  # fmt: skip
            try:
                with transaction.atomic():
                    request.save(force_insert=True)
            except IntegrityError as exc:
                # A concurrent submit with this key committed first (whichever index PostgreSQL
                # checked first): the retry's answer is that request, or a conflict.
                earlier = _replayed(action_type, idempotency_key, request_hash, actor, any_maker=True)
                if earlier is not None:
                    return earlier
                if "approvals_one_open_request_per_target" in str(exc):
                    pending = ActionRequest.objects.filter(
                        target_type=target.target_type, target_id=target.target_id,
                        status__in=[RequestStatus.REQUESTED, RequestStatus.APPROVED, RequestStatus.EXECUTING],
                    ).first()  # fmt: skip
                    raise PolicyDenied(
                        f"{target.label} already has a change waiting: "
                        f"{pending.public_id if pending else 'another request'} "
                        f"({pending.get_status_display().lower() if pending else 'pending'}); "
                        "decide or withdraw it first"
                    ) from exc
                raise
            submitted = {"payload": request.payload, "preview": request.preview, "needs_approval": approval}

            def record_submission(request=request):
                if request.case_ref:
                    from cases.services import case_link_record

                    case_link_record(case_number=request.case_ref, object_type=TARGET, object_id=request.public_id,
                                     relation_type="RELATES_TO", actor=actor, now=now)  # fmt: skip
                _audit(request, "approvals.request_submitted", actor=actor, now=now, reason_text=reason_text,
                       after=submitted)  # fmt: skip

            _lock_case(request.case_ref)
            if approval:
                record_submission()
            else:
                request.approve()
                request.checker, request.decided_at = POLICY_ACTOR.label, now
                request.decision_reason = "policy: no approval needed"
                _save(request, ["status", "checker", "decided_at", "decision_reason"])
                request = _execute(request, spec, actor=actor, now=now, records_first=[record_submission])
            return request
    except DomainError as exc:
        _refused("submit", action_type, case_ref or action_type, exc, actor=actor, now=now)
        raise


def _replayed(
    action_type: str, idempotency_key: str, request_hash: str, actor: Actor, *, any_maker: bool = False
) -> ActionRequest | None:
    """The request this key already made, when this is a retry of it (same maker, same submission);
    IdempotencyConflict when the key was used for something else. The first look is among the
    maker's own requests (the maker index keeps it cheap); after a key collision, among everyone's."""
    found = ActionRequest.objects.filter(action_type=action_type, idempotency_key=idempotency_key)
    if not any_maker:
        found = found.filter(maker_user_id=actor.user_id, maker=actor.label)
    existing = found.first()
    if existing is None:
        return None
    if existing.request_hash != request_hash or existing.maker != actor.label:
        raise IdempotencyConflict(f"this idempotency key was used for {existing.public_id} with other values")
    return existing


def _save(request: ActionRequest, fields: list[str]) -> None:
    request.version += 1
    request.save(update_fields=sorted({*fields, "version"}))


def _lock(public_id: str) -> ActionRequest:
    request = ActionRequest.objects.select_for_update().filter(public_id=public_id).first()
    if request is None:
        raise NotFound(f"no action request {public_id}")
    return request


def _execute(
    request: ActionRequest, spec: ActionSpec, *, actor: Actor, now: dt.datetime, records_first=()
) -> ActionRequest:
    """Run an approved request. The domain's effect and SUCCEEDED commit together; a domain
    refusal rolls the effect back to a savepoint and records FAILED with its error; a target that
    changed since the request records FAILED with STALE_TARGET and runs nothing.

    Lock order: the caller holds the request row and the case row; the domain effect locks its own
    rows (balances) and only then is anything audited (the audit chain lock is taken last, as every
    poster takes it), so the caller's own audit records come in as `records_first`, written after
    the effect and before the outcome."""
    try:
        current = spec.target(request.payload)
        if current.version != request.target_version:
            raise StaleTarget(
                f"{request.target_label} changed since the request (was {request.target_version}, now "
                f"{current.version}); propose the change again"
            )
        with transaction.atomic():
            request.start_execution()
            _save(request, ["status"])
            result = spec.execute(request, actor, now)
            request.succeed()
            request.result, request.executed_at = _json(result), now
            _save(request, ["status", "result", "executed_at"])
            for record in records_first:
                record()
            _audit(request, "approvals.request_executed", actor=actor, now=now, after={"result": request.result})
            _link_results(request, spec, result, actor=actor, now=now)
        return request
    except DomainError as exc:
        fresh = ActionRequest.objects.get(pk=request.pk)  # the savepoint rolled EXECUTING back: APPROVED
        fresh.fail()
        fresh.error_code, fresh.error_message, fresh.executed_at = exc.code, exc.message, now
        _save(fresh, ["status", "error_code", "error_message", "executed_at"])
        for record in records_first:
            record()
        _audit(fresh, "approvals.request_failed", actor=actor, now=now, result=AuditResult.FAILED, error=exc)
        return fresh


def _link_results(request: ActionRequest, spec: ActionSpec, result: dict, *, actor: Actor, now: dt.datetime) -> None:
    if not request.case_ref:
        return
    from cases.services import case_link_record

    for object_type in spec.linkable_types:
        for object_id in result.get(object_type, []) if isinstance(result.get(object_type), list) else (
            [result[object_type]] if result.get(object_type) else []
        ):  # fmt: skip
            case_link_record(case_number=request.case_ref, object_type=object_type, object_id=str(object_id),
                             relation_type="RELATES_TO", actor=actor, now=now)  # fmt: skip


def _require_checker(request: ActionRequest, spec: ActionSpec, actor: Actor, user, *, check_limit: bool) -> None:
    refusal = checker_refusal(
        request=request, spec=spec, policy=ApprovalPolicy.objects.filter(action_type=request.action_type).first(),
        actor=actor, user=user, check_limit=check_limit,
    )  # fmt: skip
    if refusal is not None:
        raise refusal


def request_approve(*, public_id: str, actor: Actor, now: dt.datetime, reason_text: str = "") -> ActionRequest:
    """Approve and execute a pending request (see _execute). Refused: the maker deciding their own
    request, a checker without the approver role or permission or above their limit, a request no
    longer pending. The policy and target are checked again before anything runs."""
    try:
        with transaction.atomic():
            request = _lock(public_id)
            _lock_case(request.case_ref)  # lock order: request, case, the domain's rows, audit chain
            spec = action_spec(request.action_type)
            user = _user(actor)
            _require_checker(request, spec, actor, user, check_limit=False)
            if request.status != RequestStatus.REQUESTED:
                raise IllegalTransition(
                    f"{request.public_id} is no longer pending: it is {request.get_status_display().lower()}"
                    + (f" ({request.checker})" if request.checker else "")
                )
            _require_checker(request, spec, actor, user, check_limit=True)
            policy = _policy(request.action_type)
            before = {"status": request.status}
            request.approve()
            request.checker, request.checker_user_id = actor.label, actor.user_id
            request.decided_at, request.decision_reason = now, (reason_text or "").strip()
            _save(request, ["status", "checker", "checker_user", "decided_at", "decision_reason"])

            def record_approval():
                _audit(request, "approvals.request_approved", actor=actor, now=now, before=before,
                       after={"status": RequestStatus.APPROVED}, reason_text=request.decision_reason)  # fmt: skip

            try:
                _check_policy(
                    spec, policy, payload=request.payload, target=spec.target(request.payload),
                    reason_code=request.reason_code, case_ref=request.case_ref, maker_roles=_maker_roles(request),
                )  # fmt: skip
            except PolicyDenied as exc:
                request.fail()
                request.error_code, request.error_message, request.executed_at = "POLICY_NOT_MET", exc.message, now
                _save(request, ["status", "error_code", "error_message", "executed_at"])
                record_approval()
                _audit(request, "approvals.request_failed", actor=actor, now=now, result=AuditResult.FAILED, error=exc)
                return request
            return _execute(request, spec, actor=actor, now=now, records_first=[record_approval])
    except DomainError as exc:
        _refused("approve", "", public_id, exc, actor=actor, now=now)
        raise


def _lock_case(case_ref: str) -> None:
    """Lock the request's case row before the domain's rows: every command that touches a case
    takes its row first (cases.services do), so no two commands wait on each other in a circle."""
    if case_ref:
        from cases.models import OpsCase

        list(OpsCase.objects.select_for_update().filter(case_number=case_ref).values_list("pk", flat=True))


def _maker_roles(request: ActionRequest):
    if request.maker_user_id is None:
        return None
    from backoffice.roles import user_role_names

    return user_role_names(get_user_model().objects.get(pk=request.maker_user_id))


def request_reject(*, public_id: str, actor: Actor, now: dt.datetime, reason_text: str) -> ActionRequest:
    """Reject a pending request (a reason is required). Same checker rules as approval."""
    try:
        with transaction.atomic():
            request = _lock(public_id)
            spec = action_spec(request.action_type)
            _require_checker(request, spec, actor, _user(actor), check_limit=False)
            reason = (reason_text or "").strip()
            if not reason:
                raise ValidationFailed("a rejection needs a reason")
            if request.status != RequestStatus.REQUESTED:
                raise IllegalTransition(
                    f"{request.public_id} is no longer pending: it is {request.get_status_display().lower()}"
                )
            request.reject()
            request.checker, request.checker_user_id, request.decided_at = actor.label, actor.user_id, now
            request.decision_reason = reason
            _save(request, ["status", "checker", "checker_user", "decided_at", "decision_reason"])
            _audit(request, "approvals.request_rejected", actor=actor, now=now, reason_text=reason,
                   after={"status": request.status})  # fmt: skip
            return request
    except DomainError as exc:
        _refused("reject", "", public_id, exc, actor=actor, now=now)
        raise


def request_cancel(*, public_id: str, actor: Actor, now: dt.datetime, reason_text: str = "") -> ActionRequest:
    """The maker withdraws their own pending request."""
    try:
        with transaction.atomic():
            request = _lock(public_id)
            if actor.user_id is None or actor.user_id != request.maker_user_id:
                raise PermissionMissing(f"only the maker ({request.maker}) may withdraw {request.public_id}")
            if request.status != RequestStatus.REQUESTED:
                raise IllegalTransition(
                    f"{request.public_id} is no longer pending: it is {request.get_status_display().lower()}"
                )
            request.cancel()
            request.decided_at, request.decision_reason = now, (reason_text or "withdrawn by the maker").strip()
            _save(request, ["status", "decided_at", "decision_reason"])
            _audit(request, "approvals.request_cancelled", actor=actor, now=now, reason_text=request.decision_reason)
            return request
    except DomainError as exc:
        _refused("cancel", "", public_id, exc, actor=actor, now=now)
        raise
