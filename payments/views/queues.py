from __future__ import annotations

urlpatterns: list = []


def register_screens() -> None:
    return None
