"""The one domain rule, in Python and in both SQL forms, on the addresses where rules could differ."""
import pytest
from django.db import connection

from profiles.emails import email_domain, email_domain_expression, email_domain_sql
from profiles.models import Profile
from tests.factories import ProfileFactory

ADDRESSES = {
    "ann@Example.COM": "example.com",
    '"a@b"@example.org': "example.org",
    "no-at-sign": "",
    "trailing@": "",
    "ünï@bücher.de": "bücher.de",
}


@pytest.mark.parametrize(("address", "domain"), ADDRESSES.items())
def test_email_domain_is_after_the_last_at_lower_cased(address, domain):
    assert email_domain(address) == domain


def test_email_domain_is_cut_to_the_longest_domain():
    assert email_domain("x@" + "d" * 300) == "d" * 255


@pytest.mark.django_db
def test_sql_forms_agree_with_python():
    profiles = [ProfileFactory(email=address) for address in ADDRESSES]
    table = Profile._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {email_domain_sql('email')} FROM {table}")
        by_sql = dict(cursor.fetchall())
    by_expression = dict(Profile.objects.annotate(d=email_domain_expression("email")).values_list("id", "d"))
    for profile in profiles:
        assert by_sql[profile.pk] == by_expression[profile.pk] == email_domain(profile.email), profile.email
