"""What deliveries tells higher apps (webhooks, reports) without importing them."""
from django.dispatch import Signal

# Sent after the commit that recorded them, with `returns`: the `deliveries.services.returns.ReturnedFailure`s
# that changed something (a sent message failed later, or a new complaint); a replay sends nothing.
messages_returned = Signal()
