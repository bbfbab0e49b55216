"""What tracking tells higher apps (webhooks) without importing them."""
from django.dispatch import Signal

# Sent inside the transaction of a person's erasure, with `profile_id` and `message_ids` (their
# messages): a receiver erases what its app holds on them there, so that the erasure is whole or not
# at all. Not robust: a receiver's failure rolls the erasure back.
profile_erasing = Signal()
