from audiences.rules import rule_validate
from audiences.selectors import rule_profiles


def matching(rule) -> set[int]:
    """The ids of the profiles a rule matches, through the validator and the one SQL query."""
    return set(rule_profiles(rule=rule_validate(rule)).values_list("pk", flat=True))


# A user of each role (tests.accounts.conftest).
from tests.accounts.conftest import role_user  # noqa: E402,F401
