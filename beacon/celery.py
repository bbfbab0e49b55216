"""The Celery app `beacon` (`celery -A beacon worker -B`).

Without a broker (the embedded default), its tasks run in the web process's background threads
(`beacon.in_process_tasks`): `BeaconTask.apply_async` hands them there instead of to a queue.
"""
import os

from celery import Celery, Task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beacon.settings")


class BeaconTask(Task):
    def apply_async(self, args=None, kwargs=None, task_id=None, **options):
        from beacon.in_process_tasks import in_process_task_submit, in_process_tasks_enabled

        if in_process_tasks_enabled(self.app):
            # A broker's options (queue, ...) mean nothing here, but a countdown still delays the task.
            countdown = options.get("countdown")
            return self.AsyncResult(in_process_task_submit(self, args, kwargs, task_id, countdown=countdown))
        return super().apply_async(args, kwargs, task_id=task_id, **options)


app = Celery("beacon", task_cls=BeaconTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
