"""What deliveries tells higher apps (webhooks, reports) without importing them."""
from django.dispatch import Signal

# Sent after the commit that recorded them, with `returns`: the `deliveries.services.returns.ReturnedFailure`s
# that changed something (a bounce, whether the relay refused the message or it came back later, or a new
# complaint); a replay sends nothing.
messages_returned = Signal()
# Sent once committed, with `delivery_id`, when a delivery has sent to its last recipient.
delivery_finished = Signal()
