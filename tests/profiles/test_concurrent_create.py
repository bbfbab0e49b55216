"""Twenty requests creating (or renaming to) the same profile email or list name at once: one wins, the
others are told why with a 400, none is a 500 (the database's unique constraint decides the race that
the check before it cannot)."""
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from profiles.models import List, Profile
from tests.factories import ListFactory, UserFactory

PARALLEL = 20
EMAIL_TAKEN = "A profile with this email already exists."
NAME_TAKEN = "A list with this name already exists."


def _all_at_once(user, requests: list[tuple[str, str, dict]]) -> list[tuple[int, object]]:
    """Each (method, url, body) sent by its own thread, on its own database connection, all released
    together; what each was answered (an exception escaping the view counts as the 500 it would be)."""
    barrier = threading.Barrier(len(requests))
    answers: list = [None] * len(requests)

    def send(index: int) -> None:
        method, url, body = requests[index]
        client = APIClient()
        client.force_authenticate(user)
        barrier.wait()
        try:
            response = getattr(client, method)(url, body, format="json")
            answers[index] = (response.status_code, response.json())
        except Exception as exc:
            answers[index] = (500, repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _one_won_the_rest_refused(answers: list, won: int, field: str, message: str) -> None:
    assert sorted(status for status, _ in answers) == [won] + [400] * (PARALLEL - 1), answers
    for status, body in answers:
        if status == 400:
            assert body["fields"] == {field: [message]}, body


@pytest.fixture
def administrator(transactional_db):
    return UserFactory()


def test_parallel_creates_of_one_email_make_one_profile(administrator):
    answers = _all_at_once(administrator, [("post", "/api/profiles/", {"email": f"Same@Example.{'com' if i % 2 else 'COM'}"}) for i in range(PARALLEL)])
    _one_won_the_rest_refused(answers, 201, "email", EMAIL_TAKEN)
    assert Profile.objects.count() == 1


def test_parallel_email_changes_to_one_address_leave_one_owner(administrator):
    profiles = [Profile.objects.create(email=f"person{index}@example.com") for index in range(PARALLEL)]
    answers = _all_at_once(administrator, [("patch", f"/api/profiles/{p.pk}/", {"email": "taken@example.com"}) for p in profiles])
    _one_won_the_rest_refused(answers, 200, "email", EMAIL_TAKEN)
    assert Profile.objects.filter(email="taken@example.com").count() == 1


def test_parallel_creates_of_one_list_name_make_one_list(administrator):
    answers = _all_at_once(administrator, [("post", "/api/lists/", {"name": "Weekly"})] * PARALLEL)
    _one_won_the_rest_refused(answers, 201, "name", NAME_TAKEN)
    assert List.objects.count() == 1


def test_parallel_renames_to_one_list_name_leave_one(administrator):
    lists = [ListFactory() for _ in range(PARALLEL)]
    answers = _all_at_once(administrator, [("patch", f"/api/lists/{list_obj.pk}/", {"name": "Weekly"}) for list_obj in lists])
    _one_won_the_rest_refused(answers, 200, "name", NAME_TAKEN)
    assert List.objects.filter(name="Weekly").count() == 1
