"""Signals with a sync receiver (costs a hop when sent from async code) and an async one."""

import logging

from django.core.signals import request_finished, request_started
from django.dispatch import Signal, receiver

logger = logging.getLogger(__name__)

order_placed = Signal()
order_placed_async = Signal()

requests_seen = {"started": 0, "finished": 0}


@receiver(request_started)
def count_started(sender, **kwargs):
    """A sync receiver on request_started, like many projects have (no extra hop:
    Django's own sync receivers already cost the request_started hop)."""
    requests_seen["started"] += 1


@receiver(request_finished)
def count_finished(sender, **kwargs):
    requests_seen["finished"] += 1


@receiver(order_placed)
def email_receipt(sender, order_id, **kwargs):
    """Sync: Signal.asend() runs it through sync_to_async, one hop per send."""
    logger.debug("receipt for order %s", order_id)


@receiver(order_placed_async)
async def email_receipt_async(sender, order_id, **kwargs):
    """The fix: an async receiver, awaited on the loop, no hop."""
    logger.debug("receipt for order %s", order_id)
