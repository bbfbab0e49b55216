"""Writes on deliveries, one module per job:

- `lifecycle`: the status machine (`ALLOWED_TRANSITIONS`), edition, and send / pause / resume / cancel;
- `scheduling`: schedule / unschedule, and the scheduler that starts due deliveries exactly once;
- `throttling`: the send rate limits (a delivery's `max_per_hour`, `BEACON_DOMAIN_RATES`) as shared token buckets;
- `audience`: who a delivery's audience is (its lists, and its segments through a resolver handed in);
- `analysis`: target analysis (links found, delivery log built), in the background with its progress;
- `rendering`: a delivery's content prepared once per send and rendered per message (and the mirror page);
- `mime`: a rendered message as the email handed to the backend;
- `sending`: the batch pipeline, at most once per recipient;
- `checks`: the checks before sending (Campaign's typology rules), run at analysis;
- `proofs`: proof sends;
- `tracked_urls`: edits of a delivery's links;
- `counters`: a delivery's counters rebuilt from its delivery log (for a recompute);
- `backdating`: demo data, a delivery as if sent some time ago;
- `privacy`: an erased person's messages made anonymous;
- `returns`: what comes back after sending (a later bounce, a complaint), from the bounce mailbox or an ESP;
- `bounce_intake`: the bounce mailbox read: each message kept (`ReturnedMail`), matched, recorded, removed.

Callers use the names below (`from deliveries import services`); the underscored helpers the modules
share stay inside the package.
"""
from deliveries.services.analysis import delivery_analysis_request, delivery_analysis_run, delivery_analyze
from deliveries.services.audience import MAX_SEGMENTS, audience_profiles, segment_choices, segment_conditions
from deliveries.services.backdating import delivery_backdate
from deliveries.services.bounce_intake import (
    BounceFetch,
    MailboxBusy,
    bounce_mailbox_fetch,
    returned_mail_intake,
    returned_unmatched_keep,
)
from deliveries.services.checks import Check, checks_errors, delivery_checks
from deliveries.services.counters import delivery_counters_recount
from deliveries.services.lifecycle import (
    ANALYSIS_LEASE,
    EDITABLE_STATUSES,
    MAX_CONTENT_CHARACTERS,
    analysis_queuer,
    deliveries_analysis_recover,
    delivery_cancel,
    delivery_create,
    delivery_delete,
    delivery_pause,
    delivery_resume,
    delivery_save,
    delivery_send,
    delivery_update,
    delivery_validate,
    send_batch_queuer,
)
from deliveries.services.scheduling import MAX_SCHEDULE_AHEAD, deliveries_start_due, delivery_schedule, delivery_unschedule
from deliveries.services.privacy import erased_address, profile_messages_anonymize
from deliveries.services.proofs import MAX_ID, delivery_proof
from deliveries.services.rendering import delivery_preview_render, message_render, send_content
from deliveries.services.returns import ReturnedFailure, ReturnsRecorded, returns_record
from deliveries.services.sending import CLAIM_LEASE, SEND_FLUSH_SIZE, BatchOutcome, RelayUnavailable, delivery_send_batch
from deliveries.services.throttling import RateLimitsUnavailable
from deliveries.services.tracked_urls import CONTENT_LINK_MODES, tracked_url_update, tracked_urls_update

__all__ = [
    "ANALYSIS_LEASE",
    "BounceFetch",
    "MailboxBusy",
    "bounce_mailbox_fetch",
    "returned_mail_intake",
    "returned_unmatched_keep",
    "CLAIM_LEASE",
    "CONTENT_LINK_MODES",
    "EDITABLE_STATUSES",
    "MAX_CONTENT_CHARACTERS",
    "MAX_ID",
    "BatchOutcome",
    "MAX_SEGMENTS",
    "Check",
    "SEND_FLUSH_SIZE",
    "RateLimitsUnavailable",
    "RelayUnavailable",
    "ReturnedFailure",
    "ReturnsRecorded",
    "analysis_queuer",
    "audience_profiles",
    "deliveries_analysis_recover",
    "deliveries_start_due",
    "delivery_schedule",
    "delivery_unschedule",
    "MAX_SCHEDULE_AHEAD",
    "delivery_analysis_request",
    "delivery_analysis_run",
    "delivery_analyze",
    "delivery_backdate",
    "checks_errors",
    "delivery_cancel",
    "delivery_checks",
    "delivery_counters_recount",
    "delivery_create",
    "delivery_delete",
    "delivery_pause",
    "delivery_preview_render",
    "delivery_proof",
    "delivery_resume",
    "delivery_save",
    "delivery_send",
    "delivery_send_batch",
    "delivery_update",
    "delivery_validate",
    "erased_address",
    "profile_messages_anonymize",
    "message_render",
    "send_batch_queuer",
    "segment_choices",
    "segment_conditions",
    "send_content",
    "returns_record",
    "tracked_url_update",
    "tracked_urls_update",
]
