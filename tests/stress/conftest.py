import pytest

from hopwatch._recorder import current_scope
from tests.stress.harness import prepare_database


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    """The example site's database (migrated, 20 products), made once per test session."""
    return prepare_database(tmp_path_factory.mktemp("stress-site"))


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
