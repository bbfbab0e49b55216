"""Tracking's pages and endpoints, one module per job: `endpoints` (click, open pixel, web tag and
pixel), `recipient_pages` (mirror, unsubscribe, web opt-out), `profile_tracking` (a profile's Tracking
tab), `erasure` (the pages that erase a person), and `base`, what the public handlers share."""
