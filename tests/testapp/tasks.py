"""Task functions and a task backend for the tasks-framework hop causes (Django 6.0+)."""

from django.tasks import task
from django.tasks.backends.immediate import ImmediateBackend


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
