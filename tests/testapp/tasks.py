"""Task functions and a task backend for the tasks-framework hop causes (Django 6.0+)."""

from django.tasks import task
from django.tasks.backends.dummy import DummyBackend
from django.tasks.backends.immediate import ImmediateBackend
from django.tasks.base import TaskResult, TaskResultStatus
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.crypto import get_random_string


class ResultKeepingBackend(ImmediateBackend):
    """ImmediateBackend that keeps its results and reads them back with a *sync*
    ``get_result``, as stored-result backends do: ``aget_result`` is then Django's
    default, a ``sync_to_async`` of it."""

    supports_get_result = True

    def __init__(self, alias, params):
        super().__init__(alias, params)
        self.results = {}

    def enqueue(self, task, args, kwargs):
        result = super().enqueue(task, args, kwargs)
        self.results[result.id] = result
        return result

    def get_result(self, result_id):
        return self.results[result_id]


@task
def double(number):
    return number * 2


@task
async def async_double(number):
    return number * 2


class NativeBackend(DummyBackend):
    """A native ``aenqueue`` as django-tasks-db's ``DatabaseBackend`` has: the task stored
    with the async ORM, then ``task_enqueued`` sent with ``asend()``."""

    async def aenqueue(self, task, args, kwargs):
        from tests.testapp.models import Item

        self.validate_task(task)
        await Item.objects.acreate(name=task.name)
        return await self._asend_enqueued(task, args, kwargs)

    async def _asend_enqueued(self, task, args, kwargs):
        result = TaskResult(
            task=task,
            id=get_random_string(32),
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        await task_enqueued.asend(type(self), task_result=result)
        return result


class NativeInMemoryBackend(NativeBackend):
    """A native ``aenqueue`` whose storing needs no thread (kept in memory here)."""

    async def aenqueue(self, task, args, kwargs):
        self.validate_task(task)
        return await self._asend_enqueued(task, args, kwargs)
