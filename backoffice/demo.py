"""Demo data: users for every role now; later issues add their domain data here, in order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from backoffice.actors import system_actor
from backoffice.services.users import user_provision

# Demo only. Documented in the README; `demo_seed` refuses to run in production.
DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 (published demo password)


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    full_name: str


DEMO_USERS = (
    DemoUser("support", "support_ops", "Sam Support"),
    DemoUser("payops", "payment_ops", "Pat Payments"),
    DemoUser("finops", "finance_ops", "Fran Finance"),
    DemoUser("finmanager", "finance_manager", "Morgan Manager"),
    DemoUser("risk", "risk_ops", "Riley Risk"),
    DemoUser("compliance", "compliance_ops", "Casey Compliance"),
    DemoUser("sre", "sre", "Sasha Reliability"),
    DemoUser("auditor", "auditor", "Avery Auditor"),
)


# Domain apps add their demo data here from AppConfig.ready (the kernel imports no domain app).
# Each seeder is called as seeder(actor=..., now=...) -> a one-line summary, and must be idempotent.
DEMO_SEEDERS: list[tuple[str, Callable[..., str]]] = []


def register_demo_seeder(name: str, seeder: Callable[..., str]) -> None:
    if all(existing != name for existing, _ in DEMO_SEEDERS):
        DEMO_SEEDERS.append((name, seeder))


def demo_seed(*, now: dt.datetime, out=None) -> list[tuple[DemoUser, bool]]:
    actor = system_actor("demo_seed")
    results = []
    for demo in DEMO_USERS:
        _, created = user_provision(
            username=demo.username, role=demo.role, password=DEMO_PASSWORD, full_name=demo.full_name,
            actor=actor, now=now,
        )  # fmt: skip
        results.append((demo, created))
    for name, seeder in DEMO_SEEDERS:
        summary = seeder(actor=actor, now=now)
        if out is not None:
            out.write(f"{name}: {summary}\n")
    return results
