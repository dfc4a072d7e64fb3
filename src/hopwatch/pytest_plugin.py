"""pytest plugin (entry point ``pytest11``): fixtures for hop budgets. See hopwatch.testing.

Loaded in every pytest run of every project that installs hopwatch, so at import
time it imports only the ``hopwatch`` package itself (its ``__init__``, which loads
neither Django, asgiref nor structlog and patches nothing), and it changes nothing
unless a fixture is used (or ``--hopwatch-update-budgets`` is given):

* ``hops``: :class:`hopwatch.testing.HopsFixture`; ``with hops() as counted:``,
  ``with hops.at_most(2):``, ``with hops.exactly(2):``.
* ``hop_budget``: ``with hop_budget():`` compares the block's hops with this
  test's entry in the budget file next to the test module
  (``test_views.py`` -> ``test_views.hops.json``).

As each test starts, the plugin tells :mod:`hopwatch.testing`, if something
imported it, so that a block named after a test is refused only when the
same run of the test uses that name twice.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hopwatch.testing import HopBudget, HopsFixture

_UPDATE_OPTION = "--hopwatch-update-budgets"
# The update mode before --hopwatch-update-budgets set it, to restore at the end
# (an in-process pytester run must not leave it set for the outer session).
_previous_mode = pytest.StashKey["str | None"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hopwatch", "hopwatch hop budgets")
    group.addoption(
        _UPDATE_OPTION,
        action="store_true",
        default=False,
        dest="hopwatch_update_budgets",
        help="rewrite the hop budget files (*.hops.json) with the hops the tests make now"
        " (the same as HOPWATCH_UPDATE_BUDGETS=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("hopwatch_update_budgets", default=False):
        from hopwatch import testing

        config.stash[_previous_mode] = testing._set_mode_override("all")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _previous_mode in config.stash:
        from hopwatch import testing

        testing._set_mode_override(config.stash[_previous_mode])
        del config.stash[_previous_mode]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test starts: the blocks named after it start afresh (a rerun of the same id too)."""
    testing = sys.modules.get("hopwatch.testing")  # not imported: no block has run
    if testing is not None:
        testing._new_test()


@pytest.fixture
def hops() -> HopsFixture:
    """Count and assert hops: ``with hops() as counted``, ``with hops.at_most(n)``."""
    from hopwatch.testing import HopsFixture

    return HopsFixture()


@pytest.fixture
def hop_budget(request: pytest.FixtureRequest) -> Callable[..., HopBudget]:
    """``with hop_budget():`` fails when the block makes more hops than recorded for this test.

    The entry is named after the test id without its file (``TestX::test_y[1]``);
    pass ``hop_budget("part")`` to keep several budgets in one test.
    """
    from hopwatch.testing import HopBudget, budget_path_for

    node_id: str = request.node.nodeid
    test_name = node_id.split("::", 1)[1] if "::" in node_id else node_id
    path = budget_path_for(request.node.path)
    used: set[str] = set()

    def make(name: str | None = None) -> HopBudget:
        __tracebackhide__ = True
        key = test_name if name is None else f"{test_name}::{name}"
        if key in used:
            raise ValueError(
                f"hop_budget({name!r}) is already used in this test; give each block its own name"
            )
        used.add(key)
        return HopBudget(key, path, str(request.node.path))

    return make
