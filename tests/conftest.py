import json
import logging

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from hopwatch import _errors
from hopwatch._recorder import current_scope
from tests.browser import browser_paths, driver  # noqa: F401 (the browser tests' fixtures)
from tests.report.conftest import implementation  # noqa: F401 (the report scanner: C or Python)

# Property tests: no timed assertions (hypothesis' default 200 ms deadline per
# example and its too_slow health check fail a test on a loaded machine, not on
# a wrong answer), and the same examples on every run, so CI never fails by
# chance. A test's own @settings still override these.
hypothesis_settings.register_profile(
    "hopwatch", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("hopwatch")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "internal_errors: the test provokes hopwatch internal errors on purpose"
    )


@pytest.fixture(autouse=True)
def _no_internal_errors(request):
    """Every test also proves hopwatch raised no internal error (unless marked)."""
    before = _errors.total()
    yield
    if request.node.get_closest_marker("internal_errors") is None:
        assert _errors.total() == before, "hopwatch reported an internal error (see the log)"
    else:
        _errors.reset_for_tests()


@pytest.fixture(autouse=True)
def _no_request_scope_left_behind():
    """Each test leaves the main context as it found it: no request scope set.

    A scope left set would make later tests attribute hops to a closed request.
    """
    yield
    left = current_scope.get()
    if left is not None:
        current_scope.set(None)  # do not let it spill into the next test
        pytest.fail(f"the test left hopwatch's request scope set: {left!r}")


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def log_lines():
    """The hopwatch.request lines logged during the test, parsed."""
    handler = _ListHandler()
    logger = logging.getLogger("hopwatch")
    logger.addHandler(handler)

    class Lines(list):
        @property
        def raw(self) -> list[str]:
            return [m for m in handler.messages if m.startswith('{"event":"hopwatch.request"')]

        def parsed(self) -> list[dict]:
            return [json.loads(m) for m in self.raw]

    try:
        yield Lines()
    finally:
        logger.removeHandler(handler)
