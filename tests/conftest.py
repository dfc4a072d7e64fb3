import json
import logging

import pytest

from hopwatch import _errors


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
