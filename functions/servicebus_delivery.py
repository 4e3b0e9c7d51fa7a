"""The one path every Service Bus delivery takes, whichever binding received it.

Both trigger modules (:mod:`functions.servicebus_explicit` and :mod:`functions.servicebus_queues`)
import from here and never from each other, so loading one binding does not load the other.
Heavy imports stay inside :func:`handle_delivery`: indexing the functions must not load the
handlers or the Azure SDKs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.names import QueueName

if TYPE_CHECKING:
    from shared.adapters.servicebus_settlement import ReceivedDelivery, Settlement, Settler
    from shared.bootstrap import Container

__all__ = ["PLAN_FUNCTION", "VM_TASKS_FUNCTION", "handle_delivery"]

# The function names are the same for both bindings: the host knows each trigger by its name.
PLAN_FUNCTION = "plan_servicebus_queue"
VM_TASKS_FUNCTION = "vm_tasks_servicebus_queue"


def handle_delivery(
    queue: QueueName,
    delivery: ReceivedDelivery,
    settler_for: Callable[[Container], Settler],
) -> Settlement:
    """Dispatch one delivery to the handlers and settle it; shared by both bindings."""
    from shared.adapters.servicebus_settlement import SettlementPolicy, process_delivery
    from shared.bootstrap import get_container
    from shared.handlers import handle_message
    from shared.usecases.task_runner import Delivery

    container = get_container()
    policy = SettlementPolicy(retry=container.retry_policy)

    def handle(received: ReceivedDelivery) -> None:
        info = policy.attempt_info(received)  # is_last agrees with the settlement decision
        attempt = Delivery(count=info.count, max_count=info.max_count)
        # Invalid bodies are raised, not parked here: the settlement dead-letters (or parks) them.
        handle_message(queue, received.body, container, attempt, raise_invalid=True)

    return process_delivery(queue, delivery, handle, settler=settler_for(container), policy=policy)
