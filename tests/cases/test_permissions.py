"""Who may see and work one case in payment_ops' queue (invariant 9). Every refusal changes nothing
and is audited as case.command_refused; outsiders learn nothing (NotFound)."""

import pytest

from audit.models import AuditResult
from backoffice.errors import IllegalTransition, NotFound, PermissionMissing, PolicyDenied, ValidationFailed
from cases import permissions, registry
from cases.models import OpsCaseGroupObjectPermission, OpsCaseUserObjectPermission
from cases.registry import LinkableType, LinkedObjectView
from cases.selectors import case_for_user, visible_cases
from cases.services import case_assign, case_take, case_transition, finding_add, link_add, note_add
from tests.factories.cases import (
    actor_for,
    assigned_case,
    at,
    case_state,
    fetch,
    last_refusal,
    open_case,
    refusals,
    rolled_back,
    team_user,
    team_users,
    transition,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def linkable(monkeypatch):
    """A linkable object type known to the registry for the length of a test."""
    monkeypatch.setitem(
        registry._TYPES,
        "test_payment",
        LinkableType("test_payment", "Payment", lambda ids: {i: LinkedObjectView(label=i) for i in ids if i != "nope"}),
    )


ROLES = {
    "alice": "payment_ops",  # the assignee
    "bob": "payment_ops",  # same team, not assigned
    "fiona": "finance_ops",  # another team
    "audrey": "auditor",
    "manny": "finance_manager",
}


class People(dict):
    """The cast, each user made on first mention (most tests need two or three of them)."""

    def __missing__(self, name):
        self[name] = team_user(ROLES[name], name)
        return self[name]


@pytest.fixture
def people(db):
    return People()


# Every command a worker can send, as (action audited, call(case_number, actor, user ids)).
COMMANDS = {
    "note": ("CASE_NOTE", lambda n, a, ids: note_add(case_number=n, note_type="COMMENT", body="Called the bank",
                                                     actor=a, now=at(5))),
    "finding": ("CASE_FINDING", lambda n, a, ids: finding_add(case_number=n, finding_type="ROOT_CAUSE",
                                                              source="operator", conclusion="Timeout", actor=a,
                                                              now=at(5))),
    "link": ("CASE_LINK", lambda n, a, ids: link_add(case_number=n, object_type="test_payment", object_id="pi_9",
                                                     relation_type="AFFECTS", actor=a, now=at(5))),
    "transition": ("CASE_START", lambda n, a, ids: case_transition(case_number=n, transition="start", actor=a,
                                                                   now=at(5))),
    "resolve": ("CASE_RESOLVE", lambda n, a, ids: transition(n, "resolve", a, at(5))),
    "cancel": ("CASE_CANCEL", lambda n, a, ids: transition(n, "cancel", a, at(5))),
    "take": ("CASE_ASSIGN", lambda n, a, ids: case_take(case_number=n, actor=a, now=at(5))),
    "reassign": ("CASE_ASSIGN", lambda n, a, ids: case_assign(case_number=n, assignee_id=ids["bob"], actor=a,
                                                              now=at(5))),
    "unassign": ("CASE_ASSIGN", lambda n, a, ids: case_assign(case_number=n, assignee_id=None, actor=a, now=at(5))),
    "route": ("CASE_ASSIGN", lambda n, a, ids: case_assign(case_number=n, assignee_id=None, team="finance_ops",
                                                           actor=a, now=at(5))),
}  # fmt: skip


def ids_of(people):
    return {"bob": people["bob"].pk}


def assert_refused(case_number, before, command, user, error):
    """The command, sent by `user`, is refused with `error`, changes nothing and is audited."""
    action, call = COMMANDS[command]
    refused_before = refusals(case_number).count()
    with pytest.raises(error) as raised:
        call(case_number, actor_for(user), {"bob": before["bob_id"]})
    assert type(raised.value) is error
    state = case_state(case_number)
    assert state == before["state"]
    assert refusals(case_number).count() == refused_before + 1
    refusal = last_refusal(case_number)
    assert (refusal.result, refusal.action_type, refusal.error_code, refusal.actor_user_id) == (
        AuditResult.REFUSED,
        action,
        error.code,
        user.pk,
    )
    return raised.value


def grants(case):
    return {
        "users": sorted(
            OpsCaseUserObjectPermission.objects.filter(content_object=case).values_list(
                "user__username", "permission__codename"
            )
        ),
        "groups": sorted(
            OpsCaseGroupObjectPermission.objects.filter(content_object=case).values_list(
                "group__name", "permission__codename"
            )
        ),
    }


class TestAssignee:
    @pytest.mark.parametrize("command", ["note", "finding", "link", "transition"])
    def test_the_assignee_views_and_works(self, people, command):
        case = assigned_case(people["alice"])
        assert case_for_user(user=people["alice"], case_number=case.case_number).pk == case.pk
        assert list(visible_cases(people["alice"]).values_list("pk", flat=True)) == [case.pk]
        _, call = COMMANDS[command]
        call(case.case_number, actor_for(people["alice"]), ids_of(people))
        assert fetch(case.case_number).version == case.version + 1

    def test_the_assignee_hands_the_case_to_a_team_mate(self, people):
        alice, bob = people["alice"], people["bob"]
        case = assigned_case(alice)
        case_assign(case_number=case.case_number, assignee_id=bob.pk, actor=actor_for(alice), now=at(5),
                    reason_text="Going on leave")  # fmt: skip
        case = fetch(case.case_number)
        assert case.owner_user_id == bob.pk
        assert grants(case) == {
            "users": [("bob", "change_opscase"), ("bob", "view_opscase")],
            "groups": [("payment_ops", "view_opscase")],
        }

    def test_the_assignee_cannot_hand_the_case_to_another_team_member(self, people):
        alice = people["alice"]
        case = assigned_case(alice)
        before = {"state": case_state(case.case_number), "bob_id": people["fiona"].pk}
        error = assert_refused(case.case_number, before, "reassign", alice, ValidationFailed)
        assert error.message == "the assignee must be an active member of Payment operations"


class TestTeamMate:
    def test_sees_and_takes_an_unassigned_case(self, people):
        bob = people["bob"]
        case = open_case()
        assert case_for_user(user=bob, case_number=case.case_number).pk == case.pk
        assert grants(case) == {"users": [], "groups": [("payment_ops", "view_opscase")]}
        taken = case_take(case_number=case.case_number, actor=actor_for(bob), now=at(1))
        assert taken.owner_user_id == bob.pk
        assert grants(taken) == {
            "users": [("bob", "change_opscase"), ("bob", "view_opscase")],
            "groups": [("payment_ops", "view_opscase")],
        }

    def test_assigns_an_unassigned_case_to_a_team_mate(self, people):
        case = open_case()
        case_assign(case_number=case.case_number, assignee_id=people["alice"].pk, actor=actor_for(people["bob"]),
                    now=at(1))  # fmt: skip
        assert fetch(case.case_number).owner_user_id == people["alice"].pk

    def test_cannot_work_or_take_someone_elses_case(self, people, subtests):
        case = assigned_case(people["alice"])
        assert case_for_user(user=people["bob"], case_number=case.case_number).pk == case.pk
        before = {"state": case_state(case.case_number), "bob_id": people["bob"].pk}
        for command, error in [
            ("note", PermissionMissing),
            ("finding", PermissionMissing),
            ("link", PermissionMissing),
            ("transition", PermissionMissing),
            ("resolve", PermissionMissing),
            ("cancel", PermissionMissing),
            ("take", PolicyDenied),
            ("reassign", PolicyDenied),
            ("unassign", PolicyDenied),
            ("route", PolicyDenied),
        ]:
            with subtests.test(command=command), rolled_back():
                refused = assert_refused(case.case_number, before, command, people["bob"], error)
                if command in ("take", "reassign"):  # bob asking for the case himself
                    assert refused.message == f"{case.case_number} was already taken by alice"
                elif error is PolicyDenied:
                    assert refused.message == f"only the assignee (alice) may reassign {case.case_number}"

    @pytest.mark.parametrize("command", ["note", "finding", "link", "transition"])
    def test_cannot_work_an_unassigned_case_before_taking_it(self, people, command):
        case = open_case()
        before = {"state": case_state(case.case_number), "bob_id": people["bob"].pk}
        refused = assert_refused(case.case_number, before, command, people["bob"], PermissionMissing)
        assert "assigned to nobody (take it from the queue first)" in refused.message


class TestOtherTeam:
    @pytest.mark.parametrize("assigned", [True, False])
    def test_gets_not_found_for_every_command(self, people, assigned, subtests):
        case = assigned_case(people["alice"]) if assigned else open_case()
        before = {"state": case_state(case.case_number), "bob_id": people["bob"].pk}
        fiona = people["fiona"]  # made before the attempts, which are rolled back
        for command in COMMANDS:
            with subtests.test(command=command), rolled_back():
                refused = assert_refused(case.case_number, before, command, fiona, NotFound)
                assert refused.message == f"no case {case.case_number}"

    def test_only_the_owner_team_sees_an_unassigned_case(self, people):
        case = open_case()
        seen = {team: case_for_user(user=user, case_number=case.case_number) is not None
                for team, user in team_users().items()}  # fmt: skip
        assert seen == {"support_ops": False, "payment_ops": True, "finance_ops": False, "risk_ops": False,
                        "compliance_ops": False, "sre": False}  # fmt: skip

    def test_does_not_see_the_case(self, people):
        case = assigned_case(people["alice"])
        assert case_for_user(user=people["fiona"], case_number=case.case_number) is None
        assert not visible_cases(people["fiona"]).filter(pk=case.pk).exists()
        assert permissions.can_view(people["fiona"], case) is False


class TestReaders:
    @pytest.mark.parametrize("reader", ["audrey", "manny"])
    def test_see_every_case(self, people, reader):
        mine, queued = assigned_case(people["alice"]), open_case(case_type="RECONCILIATION_BREAK")
        user = people[reader]
        assert case_for_user(user=user, case_number=mine.case_number).pk == mine.pk
        assert sorted(visible_cases(user).values_list("pk", flat=True)) == sorted([mine.pk, queued.pk])
        assert permissions.can_work(user, mine) is False

    @pytest.mark.parametrize("reader", ["audrey", "manny"])
    def test_every_command_is_refused(self, people, reader, subtests):
        case = assigned_case(people["alice"])
        before = {"state": case_state(case.case_number), "bob_id": people["bob"].pk}
        user = people[reader]  # made before the attempts, which are rolled back
        for command, (action, _) in COMMANDS.items():
            with subtests.test(command=command), rolled_back():
                expected = PolicyDenied if action == "CASE_ASSIGN" else PermissionMissing
                assert_refused(case.case_number, before, command, user, expected)

    @pytest.mark.parametrize("reader", ["audrey", "manny"])
    def test_cannot_take_an_unassigned_case(self, people, reader):
        case = open_case()
        before = {"state": case_state(case.case_number), "bob_id": people["bob"].pk}
        refused = assert_refused(case.case_number, before, "take", people[reader], PolicyDenied)
        assert refused.message == f"only members of Payment operations may assign {case.case_number}"


class TestReassignmentAndRouting:
    def test_the_previous_assignee_loses_change_rights(self, people):
        alice, bob = people["alice"], people["bob"]
        case = assigned_case(alice)
        case_assign(case_number=case.case_number, assignee_id=bob.pk, actor=actor_for(alice), now=at(5))
        case = fetch(case.case_number)
        assert OpsCaseUserObjectPermission.objects.filter(content_object=case, user=alice).count() == 0
        assert permissions.can_work(alice, case) is False and permissions.can_work(bob, case) is True
        # alice still sees it through her team, but may no longer work it
        assert case_for_user(user=alice, case_number=case.case_number).pk == case.pk
        before = {"state": case_state(case.case_number), "bob_id": bob.pk}
        for command in ("note", "transition"):
            refused = assert_refused(case.case_number, before, command, alice, PermissionMissing)
            assert refused.message.endswith(f"{case.case_number} is assigned to bob")
        assert_refused(case.case_number, before, "reassign", alice, PolicyDenied)
        # and bob works it
        note_add(case_number=case.case_number, note_type="HANDOVER", body="Took over", actor=actor_for(bob),
                 now=at(6))  # fmt: skip

    def test_the_assignee_returns_the_case_to_the_queue(self, people):
        alice = people["alice"]
        case = assigned_case(alice)
        case_assign(case_number=case.case_number, assignee_id=None, actor=actor_for(alice), now=at(5))
        case = fetch(case.case_number)
        assert case.owner_user_id is None
        assert grants(case) == {"users": [], "groups": [("payment_ops", "view_opscase")]}
        assert case_take(case_number=case.case_number, actor=actor_for(people["bob"]), now=at(6)).owner_user_id == (
            people["bob"].pk
        )

    def test_routing_moves_the_view_grant_to_the_new_team(self, people):
        alice, bob, fiona = people["alice"], people["bob"], people["fiona"]
        case = assigned_case(alice)
        routed = case_assign(case_number=case.case_number, assignee_id=None, team="finance_ops",
                             actor=actor_for(alice), now=at(5), reason_text="A reconciliation break")  # fmt: skip
        assert (routed.owner_team, routed.owner_user_id) == ("finance_ops", None)
        assert grants(routed) == {"users": [], "groups": [("finance_ops", "view_opscase")]}
        # the old team, and the old assignee, no longer see it: NotFound, audited, nothing changed
        for user in (alice, bob):
            assert case_for_user(user=user, case_number=case.case_number) is None
            assert not visible_cases(user).filter(pk=case.pk).exists()
        before = {"state": case_state(case.case_number), "bob_id": bob.pk}
        assert_refused(case.case_number, before, "note", alice, NotFound)
        assert_refused(case.case_number, before, "take", bob, NotFound)
        # the new team sees it and takes it
        assert case_for_user(user=fiona, case_number=case.case_number).pk == case.pk
        taken = case_take(case_number=case.case_number, actor=actor_for(fiona), now=at(6))
        assert grants(taken) == {
            "users": [("fiona", "change_opscase"), ("fiona", "view_opscase")],
            "groups": [("finance_ops", "view_opscase")],
        }

    def test_routing_with_an_assignee_in_the_new_team(self, people):
        case = assigned_case(people["alice"])
        case_assign(case_number=case.case_number, assignee_id=people["fiona"].pk, team="finance_ops",
                    actor=actor_for(people["alice"]), now=at(5))  # fmt: skip
        case = fetch(case.case_number)
        assert grants(case) == {
            "users": [("fiona", "change_opscase"), ("fiona", "view_opscase")],
            "groups": [("finance_ops", "view_opscase")],
        }

    def test_assigning_again_to_the_same_person_is_one_command(self, people):
        case = assigned_case(people["alice"])
        state = case_state(case.case_number)
        case_assign(case_number=case.case_number, assignee_id=people["alice"].pk, actor=actor_for(people["alice"]),
                    now=at(5))  # fmt: skip
        assert case_state(case.case_number) == state

    def test_a_done_case_cannot_be_reassigned(self, people):
        alice = people["alice"]
        case = assigned_case(alice)
        transition(case.case_number, "resolve", actor_for(alice), at(1))
        before = {"state": case_state(case.case_number), "bob_id": people["bob"].pk}
        assert_refused(case.case_number, before, "reassign", alice, IllegalTransition)

    def test_unknown_team_is_refused(self, people):
        case = assigned_case(people["alice"])
        state = case_state(case.case_number)
        with pytest.raises(ValidationFailed, match="unknown team 'marketing'"):
            case_assign(case_number=case.case_number, assignee_id=None, team="marketing",
                        actor=actor_for(people["alice"]), now=at(5))  # fmt: skip
        assert case_state(case.case_number) == state
        assert last_refusal(case.case_number).error_code == "VALIDATION_FAILED"

    def test_an_inactive_team_member_cannot_be_assigned(self, people):
        bob = people["bob"]
        bob.is_active = False
        bob.save(update_fields=["is_active"])
        case = assigned_case(people["alice"])
        before = {"state": case_state(case.case_number), "bob_id": bob.pk}
        assert_refused(case.case_number, before, "reassign", people["alice"], ValidationFailed)


def test_a_system_actor_cannot_take_a_case_and_the_refusal_is_audited():
    from tests.factories.cases import SYSTEM

    case = open_case()
    state = case_state(case.case_number)
    with pytest.raises(ValidationFailed, match="only a person can take a case"):
        case_take(case_number=case.case_number, actor=SYSTEM, now=at(1))
    assert case_state(case.case_number) == state
    refusal = last_refusal(case.case_number)
    assert (refusal.action_type, refusal.error_code, refusal.actor) == (
        "CASE_ASSIGN",
        "VALIDATION_FAILED",
        "system:case_tests",
    )
