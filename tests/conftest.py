import pytest

from hopwatch import _errors


@pytest.fixture(autouse=True)
def _no_internal_errors():
    """Every test also proves hopwatch raised no internal error."""
    before = _errors.total()
    yield
    assert _errors.total() == before, "hopwatch reported an internal error (see the log)"
