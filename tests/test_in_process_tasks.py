"""The embedded default (no broker) runs Celery tasks in the web process's background threads: the request
that queues a task answers at once, and the page shows the task's progress."""
import threading

import pytest

from beacon.celery import app as celery_app
from beacon.in_process_tasks import in_process_tasks_wait
from deliveries import tasks as delivery_tasks
from deliveries.models import Delivery, DeliveryStatus, Message
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory

HTML = '<p>Hi</p><a href="https://shop.example.com/">Shop</a> <a href="{{ unsubscribe_url }}">Unsubscribe</a>'


@pytest.fixture
def in_background(settings, monkeypatch):
    """The embedded default's dispatch, not the tests' eager one."""
    settings.BEACON_TASKS_IN_PROCESS = True
    monkeypatch.setattr(celery_app.conf, "task_always_eager", False)
    yield
    assert in_process_tasks_wait(timeout=60)


@pytest.mark.django_db(transaction=True)
def test_an_analysis_runs_in_the_background_while_the_request_answers(in_background, api_client, monkeypatch):
    delivery = DeliveryFactory(html=HTML, text="", lists=[ListFactory(members=ProfileFactory.create_batch(3))])
    started, release = threading.Event(), threading.Event()
    requests = []
    real_run = delivery_tasks.services.delivery_analysis_run

    def held_run(**kwargs):
        requests.append(threading.current_thread().name)
        started.set()
        # Held until the request has answered: a task run inside the request would wait here for ever.
        assert release.wait(timeout=30)
        return real_run(**kwargs)

    monkeypatch.setattr(delivery_tasks.services, "delivery_analysis_run", held_run)

    response = api_client.post(f"/api/deliveries/{delivery.pk}/analyze/")

    assert response.status_code == 202 and response.json()["status"] == "analyzing"
    assert started.wait(timeout=30)
    assert requests[0].startswith("beacon-task")
    release.set()
    assert in_process_tasks_wait(timeout=60)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.to_deliver) == (DeliveryStatus.READY, 3)
    assert Message.objects.filter(delivery=delivery).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_failing_task_in_the_background_leaves_the_process_running(in_background):
    delivery = DeliveryFactory(html="<p>{{ profile.first_name|bogus }}</p>", text="")
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.ANALYZING)

    delivery_tasks.delivery_analyze_task.delay(delivery.pk, None)

    assert in_process_tasks_wait(timeout=60)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DRAFT and "bogus" in delivery.analysis_error


def test_tasks_run_where_they_are_queued_when_eager(settings):
    settings.BEACON_TASKS_IN_PROCESS = True
    ran_in = []

    @celery_app.task(name="tests.where_am_i")
    def where_am_i():
        ran_in.append(threading.current_thread())

    where_am_i.delay()

    assert ran_in == [threading.current_thread()]


@pytest.mark.django_db(transaction=True)
def test_a_countdown_waits_in_a_timer_thread_not_in_a_worker(in_background, monkeypatch):
    """A throttled send batch is queued again with a countdown: here a timer holds it, then hands it over."""
    from beacon import in_process_tasks

    timers = []

    class HeldTimer:
        def __init__(self, interval, function, args):
            self.interval, self.function, self.args, self.daemon = interval, function, args, False
            timers.append(self)

        def start(self):
            pass

    ran = []
    monkeypatch.setattr(in_process_tasks.threading, "Timer", HeldTimer)
    monkeypatch.setattr(delivery_tasks.services, "deliveries_start_due", lambda: ran.append("ran") or 0)

    delivery_tasks.deliveries_start_scheduled_task.apply_async(countdown=42)

    assert in_process_tasks_wait(timeout=60)
    assert ran == [] and [(timer.interval, timer.daemon) for timer in timers] == [(42, True)]
    timers[0].function(*timers[0].args)
    assert in_process_tasks_wait(timeout=60)
    assert ran == ["ran"]
