"""Consolidation of tracking events into rollups.

One set-based merge (`merge.apply_event_batch`, SQL portable between PostgreSQL and SQLite, whose differences
live in `sql`) folds a set of events into the rollups: additive counters are added, per-message, per-link and
per-person rows keep first times, and a first time appearing or moving to an earlier bucket moves the distinct
counters (see `reporting.models`). Two callers, which must agree number for number (a test checks it):

- `pointer.events_consolidate` (every minute) merges the events committed since a stored pointer, in bounded
  batches, plus late commits found in the gaps it tracks;
- `recompute.delivery_recompute` deletes one delivery's rollups and merges all its events as one batch.

Both hold the consolidation lock (a row lock on `ConsolidationState`), so they never interleave.
"""
