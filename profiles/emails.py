"""The one rule for an email address's domain, in Python and in SQL.

The domain is what follows the *last* ``@``: a quoted local part may itself hold an ``@``
(``"a@b"@example.com``), a domain never does. It is lower-cased and cut to ``MAX_DOMAIN_LENGTH``;
an address without ``@`` has the empty domain. The SQL forms give the same answer on PostgreSQL and
SQLite, so rollups computed in the database and values computed in Python always agree.
"""
from django.db.models import Case, CharField, F, Func, IntegerField, Value, When
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce, Length, Lower, Replace, Substr
from django.db.models.lookups import Exact

MAX_DOMAIN_LENGTH = 255


def email_domain(email: str) -> str:
    """The lower-cased domain of `email` ('' when it has no '@')."""
    local, at, domain = email.rpartition("@")
    return domain[:MAX_DOMAIN_LENGTH].lower() if at else ""


def _sql_last_at(column: str) -> str:
    # rtrim() with every character of the address but '@' strips back to the last '@'; both
    # PostgreSQL and SQLite have rtrim(text, characters) and replace().
    return f"length(rtrim({column}, replace({column}, '@', '')))"


def email_domain_sql(column: str) -> str:
    """A SQL expression of `column`'s domain, as `email_domain` computes it ('' for NULL)."""
    position = _sql_last_at(column)
    return (
        f"COALESCE(lower(CASE WHEN {position} = 0 THEN '' "
        f"ELSE substr({column}, {position} + 1, {MAX_DOMAIN_LENGTH}) END), '')"
    )


class _RTrimCharacters(Func):
    function = "RTRIM"
    arity = 2
    output_field = CharField()


def email_domain_expression(field: str | Combinable) -> Coalesce:
    """A query expression of the field's domain, as `email_domain` computes it."""
    column = F(field) if isinstance(field, str) else field
    last_at = Length(_RTrimCharacters(column, Replace(column, Value("@"), Value(""))), output_field=IntegerField())
    return Coalesce(
        Case(
            When(Exact(last_at, 0), then=Value("")),
            default=Lower(Substr(column, last_at + 1, MAX_DOMAIN_LENGTH)),
            output_field=CharField(),
        ),
        Value(""),
        output_field=CharField(),
    )
