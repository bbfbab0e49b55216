"""Asynchronous bounces and complaints: pure functions, no database; `mailbox` reads the bounce mailbox.

Public interface:

- `verp.verp_address(message_id)`: the envelope sender of a message, `bounces+<token>@domain` built on
  BEACON_BOUNCE_ADDRESS (the send path uses it when the setting is set);
  `verp.verp_message_id(address)`: the message id such an address carries, None when forged or foreign.
- `parse.parse_bounce(raw_bytes, envelope_recipient="")` -> `parse.BounceReport`: `kind` (bounce,
  complaint, auto_reply, not_a_bounce), `recipients` (per failed address: `address`, enhanced
  `status`, `diagnostic`, `action`, `failure_type`, `failure_reason`), and the keys to find the Message:
  `verp_message_id` (trust it: it is signed) and `original_message_id` (the returned message's
  Message-ID, for bounces that dropped the VERP address). Never raises.
- `classify.classify(status_class, enhanced_status, text)` -> (failure type, reason), from the table
  `classify.RULES` (docs/bounces.md), which the send-time errors (`deliveries.smtp_errors`) share.

- `mailbox.mailbox_open(url)`: a reader of BEACON_BOUNCE_MAILBOX (maildir, IMAP or POP3 over TLS),
  giving (key, raw bytes) and removing a key when told to.

Matching a report to its Message, recording it and quarantining are the callers' job
(`deliveries.services.bounce_intake`).
"""
