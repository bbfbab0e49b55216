"""Writes of the webhooks app, one module per job: `subscriptions` (what administrators manage),
`outbox` (what each subscription is owed, from the other apps' signals), `sending` (claim, POST, log,
back-off, disable)."""
