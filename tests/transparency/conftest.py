import pytest

from hopwatch._recorder import current_scope


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
