"""What an email service provider reports about the messages it sent for Beacon, through django-anymail.

One module per stage:

- `webhooks`: the URLs under `/anymail/` (anymail's own tracking views, for the providers in
  `PROVIDERS`), each behind a guard that refuses what anymail would answer with a 500 (a payload that
  is not JSON, too deep, holding NUL) and a provider left unsecured, and answers 503 when the event
  could not be recorded (the provider retries). The signature or basic auth is anymail's check.
- `events`: anymail's `tracking` signal received, and its event translated into `EspEvent`, Beacon's
  one shape of a provider's event; nothing after it knows which provider spoke.
- `record`: the service that applies an `EspEvent` to its message (`esp_event_record`).

A replayed webhook changes nothing: bounces and complaints count once per message
(`deliveries.services.returns`), an opt-out once per message, and an open or click is stored under an
event id derived from the provider's own id of the event (`ON CONFLICT (event_id) DO NOTHING`).
"""
