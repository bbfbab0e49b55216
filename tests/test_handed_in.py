"""Functions handed down to lower apps at start-up are there, and a missing one fails loudly."""
import pytest

from audiences.selectors import segment_choices as audiences_segment_choices
from audiences.selectors import segment_conditions as audiences_segment_conditions
from beacon.handed_in import HandedIn
from deliveries.services import analysis_queuer, segment_choices, segment_conditions, send_batch_queuer
from deliveries.tasks import delivery_analysis_queue, delivery_send_batch_queue
from profiles.services.erasure import profile_eraser
from profiles.services.imports import list_import_queuer
from profiles.tasks import list_import_queue
from tracking.services import profile_erase


def test_every_app_hands_its_functions_in_when_django_starts():
    assert send_batch_queuer.get() is delivery_send_batch_queue
    assert analysis_queuer.get() is delivery_analysis_queue
    assert list_import_queuer.get() is list_import_queue
    assert profile_eraser.get() is profile_erase
    assert segment_conditions.get() is audiences_segment_conditions
    assert segment_choices.get() is audiences_segment_choices


def test_asking_for_a_function_never_handed_in_names_who_should_hand_it_in():
    with pytest.raises(RuntimeError, match="No import queuer: profiles.apps hands it in"):
        HandedIn("import queuer", handed_in_by="profiles.apps").get()
