"""What deliveries announce to the apps above it, which it must not import (docs/architecture.md)."""
from django.dispatch import Signal

# Sent once committed, with `delivery_id`, when a delivery has sent to its last recipient (webhooks).
delivery_finished = Signal()
