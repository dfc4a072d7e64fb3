"""How a signal's hops are named: the module that defines the signal, found among the
modules that hold it (``hopwatch._django_causes._signal_name``).

A project's signal is defined in its app's ``signals`` module and imported by others
(views, a script run as ``__main__``, a management command), each holding it under
the same name; modules are searched in the order they were imported, and a
``signals`` module's name wins over one found before it.
"""

from __future__ import annotations

import asyncio
import sys
import types

from django.test import AsyncClient, override_settings

from hopwatch._django_causes import signal_cause
from tests.helpers import capture, package_on_path, sites

HW = "hopwatch.middleware.HopwatchMiddleware"

SHOP = {
    "signals": "from django.dispatch import Signal\n\norder_placed = Signal()\n",
    "views": (
        "from django.http import HttpResponse\n\n"
        "from shop.signals import order_placed\n\n\n"
        "def on_order(sender, **kwargs):  # sync: asend() runs it through sync_to_async\n"
        "    pass\n\n\n"
        "order_placed.connect(on_order)\n\n\n"
        "async def place(request):\n"
        "    await order_placed.asend(sender=None)\n"
        '    return HttpResponse("placed")\n'
    ),
    "urls": (
        "from django.urls import path\n\n"
        "from shop.views import place\n\n"
        'urlpatterns = [path("place/", place)]\n'
    ),
}

#: A script that holds the signal under its own name at its top level.
SCRIPT = "from shop.signals import order_placed  # noqa: F401\n"


def run_as_a_script(name: str, source: str) -> None:
    """``source`` run as Python runs a script's ``__main__``: its module in
    ``sys.modules`` before its code runs, and never moved (an import moves the module
    it made after those it imported)."""
    script = types.ModuleType(name)
    sys.modules[name] = script
    exec(compile(source, f"{name}.py", "exec"), script.__dict__)


def test_a_signal_held_by_a_module_imported_earlier_is_named_by_its_signals_module(tmp_path):
    """A script holds the app's signal, found before ``shop.signals``: the hop is still
    ``shop.signals.order_placed`` (not the first holder's name, ``place_orders.order_placed``;
    ``__main__.order_placed`` for a real script), in the request's line and in the cause."""
    with package_on_path(tmp_path, "shop", SHOP):
        try:
            run_as_a_script("place_orders", SCRIPT)
            modules = list(sys.modules)
            # the script is found first, as __main__ would be
            assert modules.index("place_orders") < modules.index("shop.signals")

            async def place() -> int:
                return (await AsyncClient().get("/place/")).status_code

            urls = override_settings(ROOT_URLCONF="shop.urls", MIDDLEWARE=[HW])
            with urls, capture() as records:
                assert asyncio.run(place()) == 200
            (record,) = records
            assert {site: n for site, n in sites(record).items() if site[0] == "signal"} == {
                ("signal", "request_started"): 1,
                ("signal", "shop.signals.order_placed"): 1,
            }
            cause = signal_cause(sys.modules["shop.signals"].order_placed)
            assert cause is not None
            assert (cause.kind, cause.site) == ("signal", "shop.signals.order_placed")
        finally:
            sys.modules.pop("place_orders", None)
