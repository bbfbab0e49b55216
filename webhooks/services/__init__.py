"""Writes of the webhooks app, one module per job: `subscriptions` (what administrators manage),
`outbox` (what each subscription is owed, from the other apps' signals), `sending` (claim, POST, log,
back-off, disable), `retention` (the outbox and log purged with the raw events)."""
