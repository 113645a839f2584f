from tests.factories.users import UserFactory, user_with_role

__all__ = ["UserFactory", "user_with_role"]
